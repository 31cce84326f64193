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

The measures are taken every ``EVAL_EVERY_S`` of frame time, not on every frame: a tamper must
hold for ``hold_s`` (3 s by default) anyway, so this adds at most ``EVAL_EVERY_S`` to the time to
raise or clear one, and the unit does not pay for them on every frame next to the object model.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from firmware.config.site import SensorWatchConfig, TamperDetection
from firmware.detect.base import same_pixels
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
U16 = npt.NDArray[np.uint16]
TamperKind = Literal["covered", "blinded", "turned", "defocused"]
SensorFault = Literal["frozen", "out_of_range", "no_frames"]
GRID = (12, 16)  # rows, columns of the coarse layout compared against the reference
RAW_MAX = 16383  # 14-bit raw counts (Lepton 3 and similar)
MIN_C, MAX_C = -60.0, 1200.0  # radiometric values outside this are not a real scene
EVAL_EVERY_S = 0.25  # tamper measures four times a second: well inside hold_s
_TIME_EPS = 1e-6  # frame times are sums of 1/fps: a whole number of frame periods counts in full


def _coarse(img: F64) -> F64:
    """Block means on a GRID layout (the frame cropped to a multiple of the grid)."""
    rows, cols = GRID
    bh, bw = max(img.shape[0] // rows, 1), max(img.shape[1] // cols, 1)
    if img.shape[0] < rows or img.shape[1] < cols:
        return img.copy()
    # Sums down each block's rows, then across its columns: a third of mean(axis=(1, 3))'s cost.
    band: F64 = img[: bh * rows, : bw * cols].reshape(rows, bh, cols * bw).sum(axis=1)
    out: F64 = band.reshape(rows, cols, bw).sum(axis=2) / (bh * bw)
    return out


def _correlation(a: F64, b: F64) -> float:
    sa, sb = float(a.std()), float(b.std())
    if sa < 1e-9 or sb < 1e-9:
        return 0.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def _percentiles(data: npt.NDArray[Any], lo_q: float, hi_q: float) -> tuple[float, float]:
    """Two percentiles of an image, linear interpolation as ``np.percentile`` gives them."""
    values = data.ravel()
    last = values.size - 1
    pos = (last * lo_q / 100.0, last * hi_q / 100.0)
    below = [min(int(p), last) for p in pos]
    ranks = sorted({i for b in below for i in (b, min(b + 1, last))})
    least = int(values.min()) if values.dtype == np.uint16 else 0
    if values.dtype == np.uint16 and int(values.max()) - least <= 4 * values.size:
        # Integers over a modest range: ranks from a histogram instead of a partition.
        counts = np.bincount(values - np.uint16(least)).cumsum()
        found = np.searchsorted(counts, [r + 1 for r in ranks]).tolist()
        at = {r: float(v + least) for r, v in zip(ranks, found, strict=True)}
    else:
        part = np.partition(values, ranks)
        at = {r: float(part[r]) for r in ranks}
    lo, hi = (
        at[b] + (at[min(b + 1, last)] - at[b]) * (p - b) for p, b in zip(pos, below, strict=True)
    )
    return lo, hi


def _laplace_var(img: F64) -> float:
    """``ndimage.laplace(img).var()`` (edges reflected), at about half its cost."""
    rows, cols = img.shape
    pad = np.empty((rows + 2, cols + 2), dtype=np.float64)
    pad[1:-1, 1:-1] = img
    # scipy's "reflect" mode: the neighbour beyond an edge pixel is that pixel itself.
    pad[0, 1:-1], pad[-1, 1:-1] = img[0], img[-1]
    pad[1:-1, 0], pad[1:-1, -1] = img[:, 0], img[:, -1]
    lap = pad[:-2, 1:-1] + pad[2:, 1:-1]
    lap += pad[1:-1, :-2]
    lap += pad[1:-1, 2:]
    lap -= 4.0 * img
    return float(lap.var())


@lru_cache(maxsize=1)
def _radiometric_range() -> tuple[int, int]:
    """The centi-kelvin values whose temperature (``ThermalFrame.celsius``) is within MIN_C to
    MAX_C, as a closed range: the conversion is monotonic."""
    values = np.arange(65536, dtype=np.uint16)
    temps = ThermalFrame(0, 0.0, values, True).celsius()
    inside = np.flatnonzero((temps >= MIN_C) & (temps <= MAX_C))
    lo, hi = int(inside[0]), int(inside[-1])
    if inside.size != hi - lo + 1:
        raise AssertionError("the radiometric conversion is not monotonic")
    return lo, hi


class _Reference:
    """What the untampered scene looks like: value range, contrast, layout and sharpness."""

    def __init__(self, lo: float, hi: float, contrast: float, layout: F64, sharpness: float):
        self.lo, self.hi = lo, hi
        self.contrast = contrast
        self.layout = layout
        self.sharpness = sharpness


class _Measures:
    """One frame's tamper measures, relative to the reference (and what following it needs)."""

    def __init__(self, hot_frac: float, contrast: float, layout: F64, sharpness: float) -> None:
        self.hot_frac = hot_frac
        self.contrast = contrast  # absolute, in the frame's units
        self.layout = layout  # coarse layout of the frame clipped to the reference's range
        self.sharpness = sharpness  # absolute


class TamperDetector:
    """Says whether the thermal camera is covered, blinded, turned away or defocused."""

    def __init__(self, config: TamperDetection) -> None:
        self.config = config
        self.reference: _Reference | None = None
        self._learning: list[U16] = []
        self._learn_start: float | None = None
        self._candidate: TamperKind | None = None
        self._candidate_since = 0.0
        self._clear_since: float | None = None
        self._last_t: float | None = None
        self.state: TamperKind | None = None
        self.scores: dict[str, float] = {}  # the last measures, for logs and diagnostics

    def process(self, frame: ThermalFrame) -> TamperKind | None:
        """Take one frame; return the confirmed tamper kind, or None."""
        if not self.config.enabled:
            return None
        if self.reference is None:
            self._learn(frame.data, frame.t)
            return None
        if self._last_t is not None and frame.t - self._last_t < EVAL_EVERY_S - _TIME_EPS:
            return self.state  # measured a moment ago: nothing can have held for hold_s since
        measures = self._measure(frame.data)
        kind = self._classify(measures)
        self._hold(kind, frame.t)
        if self.state is None and kind is None:
            self._follow(measures, frame.t)
        self._last_t = frame.t
        return self.state

    def _learn(self, data: U16, t: float) -> None:
        if self._learn_start is None:
            self._learn_start = t
        self._learning.append(data.copy())  # raw frames: a quarter of the memory of float64
        if t - self._learn_start < self.config.learn_s:
            return
        mean: F64 = np.mean(self._learning, axis=0, dtype=np.float64)
        lo, hi = (float(x) for x in np.percentile(mean, [1, 99]))
        clipped = np.clip(mean, lo, hi)
        contrast = float(np.median([self._contrast(f) for f in self._learning]))
        sharpness = float(
            np.median([_laplace_var(np.clip(f, lo, hi, dtype=np.float64)) for f in self._learning])
        )
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
    def _contrast(data: npt.NDArray[Any]) -> float:
        lo, hi = _percentiles(data, 2, 98)
        return hi - lo

    def _measure(self, raw: U16) -> _Measures:
        ref = self.reference
        assert ref is not None
        span = max(ref.hi - ref.lo, 1e-9)
        # Counted on the integers themselves: raw >= x is raw >= ceil(x) for integers.
        very_hot = np.count_nonzero(raw >= math.ceil(ref.hi + 0.5 * span)) / raw.size
        top = int(raw.max())
        saturated = np.count_nonzero(raw >= top) / raw.size if top > ref.hi else 0.0
        clipped = np.clip(raw, ref.lo, ref.hi, dtype=np.float64)
        return _Measures(
            max(very_hot, saturated), self._contrast(raw), _coarse(clipped), _laplace_var(clipped)
        )

    def _classify(self, m: _Measures) -> TamperKind | None:
        ref, cfg = self.reference, self.config
        assert ref is not None
        contrast = m.contrast / max(ref.contrast, 1e-9)
        layout = _correlation(m.layout, ref.layout)
        sharpness = m.sharpness / max(ref.sharpness, 1e-12)
        self.scores = {
            "hot_frac": m.hot_frac,
            "contrast": contrast,
            "layout": layout,
            "sharpness": sharpness,
        }
        if m.hot_frac >= cfg.blinded_frac:
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

    def _follow(self, m: _Measures, t: float) -> None:
        # The untampered scene drifts (dusk, weather): let the reference follow it slowly.
        ref = self.reference
        assert ref is not None
        dt = 0.0 if self._last_t is None else max(t - self._last_t, 0.0)
        a = min(dt / self.config.update_tau_s, 1.0)
        if a <= 0:
            return
        ref.layout += a * (m.layout - ref.layout)
        ref.contrast += a * (m.contrast - ref.contrast)
        ref.sharpness += a * (m.sharpness - ref.sharpness)


class SensorWatch:
    """Thermal sensor faults: no frames, a frozen image (longer than a flat-field pause), or
    values no real scene gives (radiometric beyond -60..1200 C, raw counts stuck at 0 or 16383)."""

    def __init__(self, config: SensorWatchConfig) -> None:
        self.config = config
        self._last: ThermalFrame | None = None
        self._same_since: float | None = None
        self._started: float | None = None
        self._read_at: float | None = None

    def on_frame(self, frame: ThermalFrame) -> SensorFault | None:
        """Take one frame; return a fault it shows (frozen, out_of_range), or None."""
        last, self._last = self._last, frame
        if last is not None and same_pixels(last.data, frame.data):
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
        data = frame.data
        lo, hi = _radiometric_range() if frame.radiometric else (1, RAW_MAX - 1)
        # Tested on the raw values (the same test): a real scene is all in range, at two passes.
        if int(data.min()) >= lo and int(data.max()) <= hi:
            return 0.0
        return float(np.count_nonzero((data < lo) | (data > hi))) / data.size

    def on_read(self, t: float) -> None:
        """The camera's read returned at ``t`` (a frame or an error): it is not hung."""
        self._read_at = t

    def check(self, now: float) -> SensorFault | None:
        """Call periodically: "no_frames" when none has come for ``no_frames_s``."""
        if self._started is None:
            self._started = now
        last_t = self._last.t if self._last is not None else self._started
        if self._read_at is not None:
            last_t = max(last_t, self._read_at)
        if now - last_t >= self.config.no_frames_s:
            return "no_frames"
        return None
