"""Thermal sensor models: turn a scene temperature field (deg C) into what a sensor outputs.

A model resamples the scene to its resolution if needed, blurs it with its optics, adds
fixed-pattern and temporal noise, clips to its measurement range and quantises. Per-frame noise is
derived from (seed, t), never from call order, so a frame can be reproduced on its own.

Realism beyond noise: vignetting (corners read a little cold), and for the Leptons flat-field
correction (FFC): every ``ffc_period_s`` the shutter closes, the output freezes for
``ffc_freeze_s`` on the last frame before it, then resumes with a small seeded offset step. The
classes default to neither (older tests pin that); the ``sensor_for`` registry, which the
simulated camera uses, builds the realistic variants.

Sensors: ``lepton35`` (160x120, radiometric centi-kelvin), ``lepton3`` (160x120, raw 14-bit
counts, not radiometric: no ``to_c``), ``mlx90640`` (32x24, 55x35 deg, radiometric centi-kelvin).

Adding a sensor: subclass ``_RadiometricSensor`` (or ``_SensorPipeline`` for raw-count sensors)
and register a factory in ``_SENSORS``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy import ndimage

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]

KELVIN_OFFSET = 273.15
_MASK64 = (1 << 64) - 1
# Stream tags keep fixed-pattern and temporal noise independent of each other and of the world.
_TAG_FPN = 0x46504E
_TAG_TEMPORAL = 0x544E4F49
_TAG_FFC = 0x464643
_TAG_DRIFT = 0x44524654
_TAG_CHESS = 0x43485353


@runtime_checkable
class ThermalSensorModel(Protocol):
    """What the simulated thermal camera uses: a sensor turning scene deg C into its output."""

    width: int
    height: int
    fps: float
    radiometric: bool

    def capture(self, scene_c: npt.NDArray[Any], t: float) -> U16:
        """One frame (uint16, height x width) of the scene (deg C) at t seconds."""
        ...


def counts_to_c(raw: npt.NDArray[np.integer[Any]], resolution_k: float = 0.01) -> F32:
    """Decode radiometric (TLinear) counts to deg C; resolution_k is kelvin per count."""
    return (raw.astype(np.float32) * np.float32(resolution_k) - np.float32(KELVIN_OFFSET)).astype(
        np.float32
    )


def _frame_rng(seed: int, tag: int, t: float) -> np.random.Generator:
    """Random stream for one frame, a function of (seed, t) only."""
    return np.random.default_rng([seed & _MASK64, tag, round(t * 1000.0) & _MASK64])


def _resample(scene: F32, height: int, width: int) -> F32:
    """Resample a scene to (height, width): area-like when shrinking, bilinear when growing."""
    in_h, in_w = scene.shape
    fy, fx = in_h / height, in_w / width
    if fy > 1.0 or fx > 1.0:
        # Low-pass before decimating, like the detector integrating over a larger pixel.
        scene = ndimage.gaussian_filter(
            scene, sigma=(max(fy - 1.0, 0.0) * 0.5, max(fx - 1.0, 0.0) * 0.5), mode="nearest"
        )
    rows = (np.arange(height) + 0.5) * fy - 0.5
    cols = (np.arange(width) + 0.5) * fx - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    out: F32 = np.asarray(
        ndimage.map_coordinates(scene, grid, order=1, mode="nearest"), dtype=np.float32
    )
    return out


class _SensorPipeline:
    """Common pipeline: resample, blur, vignetting, noise, FFC; subclasses quantise the result."""

    radiometric: bool

    def __init__(
        self,
        *,
        seed: int,
        width: int,
        height: int,
        fps: float,
        range_c: tuple[float, float],
        resolution_k: float,
        noise_k: float,
        fpn_k: float,
        blur_sigma_px: float,
        vignette_k: float = 0.0,
        ffc_period_s: float | None = None,
        ffc_freeze_s: float = 0.5,
        ffc_step_k: float = 0.05,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"sensor size must be positive, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if noise_k < 0 or fpn_k < 0 or blur_sigma_px < 0:
            raise ValueError("noise and blur must not be negative")
        if vignette_k < 0 or ffc_freeze_s < 0 or ffc_step_k < 0:
            raise ValueError("vignette_k, ffc_freeze_s and ffc_step_k must not be negative")
        if ffc_period_s is not None and ffc_period_s <= ffc_freeze_s:
            raise ValueError(
                f"ffc_period_s ({ffc_period_s}) must be longer than ffc_freeze_s ({ffc_freeze_s})"
            )
        max_c = np.iinfo(np.uint16).max * resolution_k - KELVIN_OFFSET
        if range_c[1] > max_c + 1e-9:
            raise ValueError(
                f"range up to {range_c[1]} deg C does not fit uint16 at {resolution_k} K/count"
                f" (max {max_c:.2f} deg C)"
            )
        self.seed = int(seed)
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)
        self.range_c = (float(range_c[0]), float(range_c[1]))
        self.resolution_k = float(resolution_k)
        self.noise_k = float(noise_k)
        self.blur_sigma_px = float(blur_sigma_px)
        fpn_rng = np.random.default_rng([self.seed & _MASK64, _TAG_FPN])
        # Residual fixed pattern after flat-field correction: per pixel plus a little per column.
        per_pixel = fpn_rng.standard_normal((self.height, self.width))
        per_column = fpn_rng.standard_normal((1, self.width))
        self._fpn: F32 = (fpn_k * (0.9 * per_pixel + 0.45 * per_column)).astype(np.float32)
        if vignette_k > 0:
            # Optics collect less at the edge: quadratic in the radius, corners vignette_k colder.
            yy = (np.arange(self.height) + 0.5) / self.height * 2.0 - 1.0
            xx = (np.arange(self.width) + 0.5) / self.width * 2.0 - 1.0
            r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 2.0
            self._fpn -= (vignette_k * r2).astype(np.float32)
        self.vignette_k = float(vignette_k)
        self.ffc_period_s = None if ffc_period_s is None else float(ffc_period_s)
        self.ffc_freeze_s = float(ffc_freeze_s)
        self.ffc_step_k = float(ffc_step_k)
        self._held: tuple[int, U16] | None = None  # (FFC index, frame shown while it runs)
        self._last: U16 | None = None

    def ffc_at(self, t: float) -> tuple[int, float]:
        """Index and start time of the last flat-field correction at or before t (0: none yet)."""
        period = self.ffc_period_s
        if period is None or t < period:
            return 0, 0.0
        k = int(t // period)
        start = k * period + self._ffc_jitter(k)
        if t < start:
            k -= 1
            start = k * period + self._ffc_jitter(k) if k > 0 else 0.0
        return k, start

    def in_ffc(self, t: float) -> bool:
        """Whether the shutter is closed (output frozen) at t."""
        k, start = self.ffc_at(t)
        return k > 0 and t < start + self.ffc_freeze_s

    def _ffc_jitter(self, k: int) -> float:
        """Seeded lateness of the k-th FFC (the camera times it by temperature, not clock)."""
        assert self.ffc_period_s is not None
        rng = np.random.default_rng([self.seed & _MASK64, _TAG_FFC, k, 0])
        return float(rng.uniform(0.0, 0.05 * self.ffc_period_s))

    def _ffc_offset_k(self, k: int) -> float:
        """Offset left by the k-th FFC (none before the first)."""
        if k == 0 or self.ffc_step_k == 0:
            return 0.0
        rng = np.random.default_rng([self.seed & _MASK64, _TAG_FFC, k, 1])
        return float(rng.normal(0.0, self.ffc_step_k))

    def capture(self, scene_c: npt.NDArray[Any], t: float) -> U16:
        """One frame (uint16, height x width) of the scene (deg C) at t seconds."""
        k, _ = self.ffc_at(t)
        if self.in_ffc(t):
            # Shutter closed: repeat the frame shown when it closed.
            if self._held is None or self._held[0] != k:
                last = self._last if self._last is not None else self._render(scene_c, t, k - 1)
                self._held = (k, last.copy())
            return self._held[1].copy()
        counts = self._render(scene_c, t, k)
        self._last = counts
        return counts.copy()

    def _render(self, scene_c: npt.NDArray[Any], t: float, ffc_index: int) -> U16:
        """The frame at t after the given FFC."""
        img = self._temperature(scene_c, t)
        offset = self._ffc_offset_k(ffc_index)
        if offset:
            img += np.float32(offset)
        return self._quantise(img, t)

    def _quantise(self, img: F32, t: float) -> U16:
        """Detector temperatures (deg C) to output counts."""
        raise NotImplementedError

    def _view(self, scene: F32) -> F32:
        """The part of the scene this sensor sees (all of it unless its view is smaller)."""
        return scene

    def _temperature(self, scene_c: npt.NDArray[Any], t: float) -> F32:
        """Blurred, noisy detector temperatures in deg C (before FFC offset and quantising)."""
        scene = np.asarray(scene_c, dtype=np.float32)
        if scene.ndim != 2:
            raise ValueError(f"scene must be 2-D (height, width), got shape {scene.shape}")
        scene = self._view(scene)
        if scene.shape != (self.height, self.width):
            scene = _resample(scene, self.height, self.width)
        if self.blur_sigma_px > 0:
            img = np.asarray(
                ndimage.gaussian_filter(scene, self.blur_sigma_px, mode="nearest", truncate=3.0),
                dtype=np.float32,
            )
        else:
            img = scene.copy()
        rng = _frame_rng(self.seed, _TAG_TEMPORAL, t)
        noise = rng.standard_normal((self.height, self.width), dtype=np.float32)
        img += noise * np.float32(self.noise_k)
        img += self._fpn
        return img


class _RadiometricSensor(_SensorPipeline):
    """Radiometric sensors: clip to the measurement range and quantise to kelvin steps."""

    radiometric = True

    def _quantise(self, img: F32, t: float) -> U16:
        """Detector temperatures (deg C) to TLinear counts."""
        # The detector saturates at the ends of its range; the detector code must cope.
        np.clip(img, self.range_c[0], self.range_c[1], out=img)
        img += np.float32(KELVIN_OFFSET)
        img *= np.float32(1.0 / self.resolution_k)
        np.clip(img, 0.0, float(np.iinfo(np.uint16).max), out=img)  # float rounding at the top
        counts: U16 = np.rint(img).astype(np.uint16)
        return counts

    def to_c(self, raw: npt.NDArray[np.integer[Any]]) -> F32:
        """Decode this sensor's counts to deg C."""
        return counts_to_c(raw, self.resolution_k)


class Lepton35(_RadiometricSensor):
    """FLIR Lepton 3.5: 160x120, radiometric TLinear output, NETD ~50 mK, 57 deg HFOV."""

    # Scene ranges of the two gain modes, deg C.
    GAIN_RANGES_C: ClassVar[dict[str, tuple[float, float]]] = {
        "high": (-10.0, 140.0),
        "low": (-10.0, 450.0),
    }

    def __init__(
        self,
        seed: int,
        width: int = 160,
        height: int = 120,
        fps: float = 9.0,
        gain: str = "high",
        noise_k: float = 0.05,
        resolution_k: float = 0.01,
        vignette_k: float = 0.0,
        ffc_period_s: float | None = None,
        ffc_freeze_s: float = 0.5,
        ffc_step_k: float = 0.05,
    ) -> None:
        if gain not in self.GAIN_RANGES_C:
            raise ValueError(f"unknown gain {gain!r}; known: {', '.join(self.GAIN_RANGES_C)}")
        if resolution_k not in (0.01, 0.1):
            raise ValueError(f"TLinear resolution must be 0.01 or 0.1 K, got {resolution_k}")
        self.gain = gain
        lo, hi = self.GAIN_RANGES_C[gain]
        # Centi-kelvin output (the default, which the firmware decodes) tops out at 65535 cK =
        # 382.2 deg C, so low gain saturates there, as on the real camera; its full range to
        # 450 deg C needs resolution_k=0.1 and a consumer that decodes with that resolution.
        hi = min(hi, np.iinfo(np.uint16).max * resolution_k - KELVIN_OFFSET)
        super().__init__(
            seed=seed,
            width=width,
            height=height,
            fps=fps,
            range_c=(lo, hi),
            resolution_k=resolution_k,
            noise_k=noise_k,
            fpn_k=0.02,
            blur_sigma_px=0.6,
            vignette_k=vignette_k,
            ffc_period_s=ffc_period_s,
            ffc_freeze_s=ffc_freeze_s,
            ffc_step_k=ffc_step_k,
        )


class Lepton3(_SensorPipeline):
    """FLIR Lepton 3: 160x120, 9 Hz, NOT radiometric: raw 14-bit counts.

    Counts are ``~8000 + drift(t) + counts_per_k * (T - 20 deg C)``: the offset is seeded and
    unknown to the consumer, drifts slowly (the camera body warming and cooling) and steps at
    each FFC; the gain is seeded in 25-35 counts/K in high gain (about a quarter in low gain).
    There is no ``to_c``: counts cannot be turned into temperatures.
    """

    radiometric = False
    MAX_COUNT: ClassVar[int] = (1 << 14) - 1

    def __init__(
        self,
        seed: int,
        width: int = 160,
        height: int = 120,
        fps: float = 9.0,
        gain: str = "high",
        noise_k: float = 0.05,
        counts_per_k: float | None = None,
        drift_counts: float = 60.0,
        drift_period_s: float = 900.0,
        vignette_k: float = 0.0,
        ffc_period_s: float | None = None,
        ffc_freeze_s: float = 0.5,
        ffc_step_k: float = 0.05,
    ) -> None:
        if gain not in Lepton35.GAIN_RANGES_C:
            raise ValueError(f"unknown gain {gain!r}; known: {', '.join(Lepton35.GAIN_RANGES_C)}")
        if counts_per_k is not None and not 1.0 <= counts_per_k <= 200.0:
            raise ValueError(f"counts_per_k must be within 1-200, got {counts_per_k}")
        if drift_counts < 0 or drift_period_s <= 0:
            raise ValueError("drift_counts must not be negative and drift_period_s positive")
        super().__init__(
            seed=seed,
            width=width,
            height=height,
            fps=fps,
            range_c=Lepton35.GAIN_RANGES_C[gain],
            resolution_k=0.01,
            noise_k=noise_k,
            fpn_k=0.02,
            blur_sigma_px=0.6,
            vignette_k=vignette_k,
            ffc_period_s=ffc_period_s,
            ffc_freeze_s=ffc_freeze_s,
            ffc_step_k=ffc_step_k,
        )
        self.gain = gain
        rng = np.random.default_rng([self.seed & _MASK64, _TAG_DRIFT])
        high = float(rng.uniform(25.0, 35.0)) if counts_per_k is None else float(counts_per_k)
        self.counts_per_k = high if gain == "high" else high / 4.0
        self.base_counts = float(rng.uniform(7700.0, 8300.0))
        self.drift_counts = float(drift_counts)
        self.drift_period_s = float(drift_period_s)
        self._drift_phase = rng.uniform(0.0, 2.0 * math.pi, 2)

    def offset_counts(self, t: float) -> float:
        """The (unknown to consumers) count offset at t, before FFC steps."""
        w = 2.0 * math.pi * t / self.drift_period_s
        return self.base_counts + self.drift_counts * (
            0.8 * math.sin(w + self._drift_phase[0])
            + 0.2 * math.sin(3.1 * w + self._drift_phase[1])
        )

    def _quantise(self, img: F32, t: float) -> U16:
        """Detector temperatures (deg C) to raw 14-bit counts."""
        np.clip(img, self.range_c[0], self.range_c[1], out=img)
        img -= np.float32(20.0)
        img *= np.float32(self.counts_per_k)
        img += np.float32(self.offset_counts(t))
        np.clip(img, 0.0, float(self.MAX_COUNT), out=img)
        counts: U16 = np.rint(img).astype(np.uint16)
        return counts


class Mlx90640(_RadiometricSensor):
    """Melexis MLX90640 (BAB, 55x35 deg): 32x24, 4 Hz, radiometric centi-kelvin, NETD ~0.15 K.

    Its field of view is wider than tall (55x35 deg, non-square pixels): it sees the middle of
    a scene rendered with square pixels at ``scene_hfov_deg``; ``view_box`` is that part as
    fractions of the scene (x0, y0, x1, y1), to map ground-truth boxes into its image. Pixels
    are read in two interleaved chess-board sub-pages, which leaves a faint chequer pattern.
    """

    HFOV_DEG: ClassVar[float] = 55.0
    VFOV_DEG: ClassVar[float] = 35.0

    def __init__(
        self,
        seed: int,
        width: int = 32,
        height: int = 24,
        fps: float = 4.0,
        gain: str = "high",
        noise_k: float = 0.15,
        vignette_k: float = 0.0,
        chess_k: float = 0.08,
        scene_hfov_deg: float = 57.0,
    ) -> None:
        if gain not in ("high", "low"):
            raise ValueError(f"unknown gain {gain!r}; known: high, low (the MLX90640 has one)")
        if not 0.5 <= fps <= 64.0:
            raise ValueError(f"MLX90640 refresh rate must be within 0.5-64 Hz, got {fps}")
        if chess_k < 0:
            raise ValueError("chess_k must not be negative")
        if not 1.0 < scene_hfov_deg < 170.0:
            raise ValueError(f"scene_hfov_deg must be within 1-170, got {scene_hfov_deg}")
        super().__init__(
            seed=seed,
            width=width,
            height=height,
            fps=fps,
            range_c=(-40.0, 300.0),
            resolution_k=0.01,
            noise_k=noise_k,
            fpn_k=0.1,
            blur_sigma_px=0.5,
            vignette_k=vignette_k,
        )
        self.gain = gain
        self.chess_k = float(chess_k)
        self.scene_hfov_deg = float(scene_hfov_deg)
        self.hfov_deg, self.vfov_deg = self.HFOV_DEG, self.VFOV_DEG
        yy, xx = np.indices((self.height, self.width))
        self._chess: F32 = np.where((yy + xx) % 2 == 0, 1.0, -1.0).astype(np.float32)

    def view_box_for(self, scene_w: int, scene_h: int) -> tuple[float, float, float, float]:
        """The part of a scene (square pixels, scene_hfov_deg wide) this sensor sees."""
        tan_h = math.tan(math.radians(self.scene_hfov_deg) / 2.0)
        fx = min(math.tan(math.radians(self.hfov_deg) / 2.0) / tan_h, 1.0)
        fy = min(math.tan(math.radians(self.vfov_deg) / 2.0) / (tan_h * scene_h / scene_w), 1.0)
        return (0.5 - fx / 2, 0.5 - fy / 2, 0.5 + fx / 2, 0.5 + fy / 2)

    def _view(self, scene: F32) -> F32:
        """The middle of the scene, cut to 55x35 degrees."""
        h, w = scene.shape
        x0, y0, x1, y1 = self.view_box_for(w, h)
        # Resampling works on whole pixels; keep at least two rows and columns.
        c0, c1 = round(x0 * w), max(round(x1 * w), round(x0 * w) + 2)
        r0, r1 = round(y0 * h), max(round(y1 * h), round(y0 * h) + 2)
        return scene[r0:r1, c0:c1]

    def _temperature(self, scene_c: npt.NDArray[Any], t: float) -> F32:
        """Detector temperatures plus the chess-pattern sub-page offset of this frame."""
        img = super()._temperature(scene_c, t)
        if self.chess_k > 0:
            rng = _frame_rng(self.seed, _TAG_CHESS, t)
            img += self._chess * np.float32(self.chess_k * rng.standard_normal())
        return img


def _lepton35(seed: int, **kwargs: Any) -> Lepton35:
    """A Lepton 3.5 as the camera runs it: vignetting and an FFC about every 3 minutes."""
    kwargs.setdefault("vignette_k", 0.3)
    kwargs.setdefault("ffc_period_s", 180.0)
    return Lepton35(seed=seed, **kwargs)


def _lepton3(seed: int, **kwargs: Any) -> Lepton3:
    """A Lepton 3 as the camera runs it: vignetting and an FFC about every 3 minutes."""
    kwargs.setdefault("vignette_k", 0.3)
    kwargs.setdefault("ffc_period_s", 180.0)
    return Lepton3(seed=seed, **kwargs)


def _mlx90640(seed: int, **kwargs: Any) -> Mlx90640:
    """An MLX90640 with its strong vignetting (no shutter, so no FFC)."""
    kwargs.setdefault("vignette_k", 1.0)
    return Mlx90640(seed=seed, **kwargs)


_SENSORS: dict[str, Callable[..., ThermalSensorModel]] = {
    "lepton35": _lepton35,
    "lepton3": _lepton3,
    "mlx90640": _mlx90640,
}


def sensor_for(name: str, seed: int, **kwargs: Any) -> ThermalSensorModel:
    """Build the sensor model called name (e.g. "lepton35") with the given seed and options."""
    factory = _SENSORS.get(name.strip().lower())
    if factory is None:
        raise ValueError(f"unknown sensor {name!r}; known sensors: {', '.join(sorted(_SENSORS))}")
    sensor = factory(seed=seed, **kwargs)
    logger.debug("sensor %s seed=%d %s", name, seed, kwargs)
    return sensor
