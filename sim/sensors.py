"""Thermal sensor models: turn a scene temperature field (deg C) into what a sensor outputs.

A model resamples the scene to its resolution if needed, blurs it with its optics, adds
fixed-pattern and temporal noise, clips to its measurement range and quantises. Per-frame noise is
derived from (seed, t), never from call order, so a frame can be reproduced on its own.

Adding a sensor: subclass ``_RadiometricSensor`` (or implement ``ThermalSensorModel`` directly for
raw-count sensors) and register a factory in ``_SENSORS``.
"""

from __future__ import annotations

import logging
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


class _RadiometricSensor:
    """Common pipeline of radiometric sensors: resample, blur, noise, clip, quantise to kelvin."""

    radiometric = True

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
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"sensor size must be positive, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if noise_k < 0 or fpn_k < 0 or blur_sigma_px < 0:
            raise ValueError("noise and blur must not be negative")
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

    def capture(self, scene_c: npt.NDArray[Any], t: float) -> U16:
        """One frame (uint16, height x width) of the scene (deg C) at t seconds."""
        scene = np.asarray(scene_c, dtype=np.float32)
        if scene.ndim != 2:
            raise ValueError(f"scene must be 2-D (height, width), got shape {scene.shape}")
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
        )


_SENSORS: dict[str, Callable[..., ThermalSensorModel]] = {
    "lepton35": Lepton35,
}


def sensor_for(name: str, seed: int, **kwargs: Any) -> ThermalSensorModel:
    """Build the sensor model called name (e.g. "lepton35") with the given seed and options."""
    factory = _SENSORS.get(name.strip().lower())
    if factory is None:
        raise ValueError(f"unknown sensor {name!r}; known sensors: {', '.join(sorted(_SENSORS))}")
    sensor = factory(seed=seed, **kwargs)
    logger.debug("sensor %s seed=%d %s", name, seed, kwargs)
    return sensor
