"""Camera tamper (covered, blinded, turned, defocused) and thermal sensor faults.

Both work on radiometric frames (centi-kelvin) and raw counts alike, at any size (32x24 and up):
every measure is relative to a reference learned from the camera's own first seconds, so units and
offsets cancel. The reference follows slow changes (night falls, the asphalt cools) while the
camera is not tampered with. A tamper kind is reported once it has held for ``hold_s``, and cleared
once nothing has been seen for ``hold_s``.

- covered: the scene's contrast (2nd to 98th percentile) collapses to a fraction of the reference;
- blinded: a large fraction of the frame far hotter than anything in the reference, or saturated;
- turned: the coarse layout of the scene no longer correlates with the reference;
- defocused: the layout still matches but the fine detail (Laplacian variance) has gone.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from firmware.config.site import SensorWatchConfig, TamperDetection
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
TamperKind = Literal["covered", "blinded", "turned", "defocused"]
SensorFault = Literal["frozen", "out_of_range", "no_frames"]
GRID = (12, 16)  # rows, columns of the coarse layout compared against the reference
RAW_MAX = 16383  # 14-bit raw counts (Lepton 3 and similar)
MIN_C, MAX_C = -60.0, 1200.0  # radiometric values outside this are not a real scene


def _coarse(img: F64) -> F64:
    """Block means on a GRID layout (the frame cropped to a multiple of the grid)."""
    rows, cols = GRID
    bh, bw = max(img.shape[0] // rows, 1), max(img.shape[1] // cols, 1)
    if img.shape[0] < rows or img.shape[1] < cols:
        return img.copy()
    out: F64 = img[: bh * rows, : bw * cols].reshape(rows, bh, cols, bw).mean(axis=(1, 3))
    return out


def _correlation(a: F64, b: F64) -> float:
    sa, sb = float(a.std()), float(b.std())
    if sa < 1e-9 or sb < 1e-9:
        return 0.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


class _Reference:
    """What the untampered scene looks like: value range, contrast, layout and sharpness."""

    def __init__(self, lo: float, hi: float, contrast: float, layout: F64, sharpness: float):
        self.lo, self.hi = lo, hi
        self.contrast = contrast
        self.layout = layout
        self.sharpness = sharpness


class TamperDetector:
    """Says whether the thermal camera is covered, blinded, turned away or defocused."""

    def __init__(self, config: TamperDetection) -> None:
        self.config = config
        self.reference: _Reference | None = None
        self._learning: list[F64] = []
        self._learn_start: float | None = None
        self._candidate: TamperKind | None = None
        self._candidate_since = 0.0
        self._clear_since: float | None = None
        self._last_t: float | None = None
        self.state: TamperKind | None = None
        self.scores: dict[str, float] = {}  # the last frame's measures, for logs and diagnostics

    def process(self, frame: ThermalFrame) -> TamperKind | None:
        """Take one frame; return the confirmed tamper kind, or None."""
        if not self.config.enabled:
            return None
        img = frame.data.astype(np.float64)
        if self.reference is None:
            self._learn(img, frame.t)
            return None
        kind = self._classify(img, frame.data)
        self._hold(kind, frame.t)
        if self.state is None and kind is None:
            self._follow(img, frame.t)
        self._last_t = frame.t
        return self.state

    def _learn(self, img: F64, t: float) -> None:
        if self._learn_start is None:
            self._learn_start = t
        self._learning.append(img)
        if t - self._learn_start < self.config.learn_s:
            return
        mean: F64 = np.mean(self._learning, axis=0)
        lo, hi = (float(x) for x in np.percentile(mean, [1, 99]))
        clipped = np.clip(mean, lo, hi)
        contrast = float(np.median([self._contrast(f) for f in self._learning]))
        sharpness = float(np.median([self._sharpness(np.clip(f, lo, hi)) for f in self._learning]))
        self.reference = _Reference(lo, hi, contrast, _coarse(clipped), sharpness)
        self._learning = []
        self._last_t = t
        logger.info(
            "tamper reference learned over %.1f s: contrast %.4g, sharpness %.4g",
            t - self._learn_start,
            contrast,
            sharpness,
        )

    @staticmethod
    def _contrast(img: F64) -> float:
        lo, hi = np.percentile(img, [2, 98])
        return float(hi - lo)

    @staticmethod
    def _sharpness(img: F64) -> float:
        return float(ndimage.laplace(img).var())

    def _classify(self, img: F64, raw: npt.NDArray[np.uint16]) -> TamperKind | None:
        ref, cfg = self.reference, self.config
        assert ref is not None
        span = max(ref.hi - ref.lo, 1e-9)
        very_hot = float(np.mean(img >= ref.hi + 0.5 * span))
        top = int(raw.max())
        saturated = float(np.mean(raw >= top)) if top > ref.hi else 0.0
        contrast = self._contrast(img) / max(ref.contrast, 1e-9)
        clipped = np.clip(img, ref.lo, ref.hi)
        layout = _correlation(_coarse(clipped), ref.layout)
        sharpness = self._sharpness(clipped) / max(ref.sharpness, 1e-12)
        self.scores = {
            "hot_frac": max(very_hot, saturated),
            "contrast": contrast,
            "layout": layout,
            "sharpness": sharpness,
        }
        if max(very_hot, saturated) >= cfg.blinded_frac:
            return "blinded"
        if contrast < cfg.covered_contrast:
            return "covered"
        if layout < cfg.turned_corr:
            return "turned"
        if sharpness < cfg.defocus_ratio:
            return "defocused"
        return None

    def _hold(self, kind: TamperKind | None, t: float) -> None:
        hold = self.config.hold_s
        if kind is None:
            self._candidate = None
            if self.state is not None:
                self._clear_since = t if self._clear_since is None else self._clear_since
                if t - self._clear_since >= hold:
                    logger.info("camera tamper cleared (was %s)", self.state)
                    self.state = None
            return
        self._clear_since = None
        if kind != self._candidate:
            self._candidate, self._candidate_since = kind, t
        if kind != self.state and t - self._candidate_since >= hold:
            logger.warning("camera tamper: %s (%s)", kind, self._describe())
            self.state = kind

    def _describe(self) -> str:
        return ", ".join(f"{k}={v:.3g}" for k, v in self.scores.items())

    def _follow(self, img: F64, t: float) -> None:
        # The untampered scene drifts (dusk, weather): let the reference follow it slowly.
        ref = self.reference
        assert ref is not None
        dt = 0.0 if self._last_t is None else max(t - self._last_t, 0.0)
        a = min(dt / self.config.update_tau_s, 1.0)
        if a <= 0:
            return
        clipped = np.clip(img, ref.lo, ref.hi)
        ref.layout += a * (_coarse(clipped) - ref.layout)
        ref.contrast += a * (self._contrast(img) - ref.contrast)
        ref.sharpness += a * (self._sharpness(clipped) - ref.sharpness)


class SensorWatch:
    """Thermal sensor faults: no frames, a frozen image (longer than a flat-field pause), or
    values no real scene gives (radiometric beyond -60..1200 C, raw counts stuck at 0 or 16383)."""

    def __init__(self, config: SensorWatchConfig) -> None:
        self.config = config
        self._last: ThermalFrame | None = None
        self._same_since: float | None = None
        self._started: float | None = None

    def on_frame(self, frame: ThermalFrame) -> SensorFault | None:
        """Take one frame; return a fault it shows (frozen, out_of_range), or None."""
        last, self._last = self._last, frame
        if last is not None and np.array_equal(last.data, frame.data):
            if self._same_since is None:
                self._same_since = last.t
        else:
            self._same_since = None
        if self._same_since is not None and frame.t - self._same_since >= self.config.frozen_s:
            return "frozen"
        if self._out_of_range(frame) >= self.config.out_of_range_frac:
            return "out_of_range"
        return None

    @staticmethod
    def _out_of_range(frame: ThermalFrame) -> float:
        if frame.radiometric:
            temps = frame.celsius()
            return float(np.mean((temps < MIN_C) | (temps > MAX_C)))
        return float(np.mean((frame.data == 0) | (frame.data >= RAW_MAX)))

    def check(self, now: float) -> SensorFault | None:
        """Call periodically: "no_frames" when none has come for ``no_frames_s``."""
        if self._started is None:
            self._started = now
        last_t = self._last.t if self._last is not None else self._started
        if now - last_t >= self.config.no_frames_s:
            return "no_frames"
        return None
