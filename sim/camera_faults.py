"""Simulated camera faults: a covered, blinded, turned or defocused camera; frozen or unplugged.

A scenario lists them as ``[[camera_faults]]`` with a kind, ``at_s`` and an optional ``until_s``
(seconds after the scenario start; no ``until_s``: to the end). Optical faults act on the scene
before the sensor model sees it, so the sensor's own blur, noise and clipping still apply:

- ``cover``: something over the lens at ``temp_c`` (None: the scene's median), nearly uniform;
- ``blind``: a hot source (``temp_c``, default 500 C: the sensor saturates) filling most of it;
- ``turn``: the camera panned half a field of view and tilted up: a different part of the world;
- ``defocus``: a strong Gaussian blur (``sigma_frac`` of the image width).

``freeze`` repeats the last frame from before the fault; ``unplug`` gives no frames at all (each
read fails); ``hang`` blocks the read without an error while time passes (a Lepton whose VoSPI
stream lost sync), which only the unit's between-frames watch can see. A hang needs ``until_s``:
the stuck read would otherwise hold the simulated unit for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]
FaultKind = Literal["cover", "blind", "turn", "defocus", "freeze", "unplug", "hang"]
OPTICAL: tuple[FaultKind, ...] = ("cover", "blind", "turn", "defocus")


class CameraFault(BaseModel):
    """``[[camera_faults]]``: one fault of the thermal camera over a span of scenario time."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: FaultKind
    at_s: Annotated[float, Field(ge=0, le=1.0e6)]
    until_s: Annotated[float, Field(gt=0, le=1.0e6)] | None = None
    temp_c: Annotated[float, Field(ge=-60, le=1500)] | None = None  # cover / blind temperature
    sigma_frac: Annotated[float, Field(gt=0, le=1)] = 0.04  # defocus blur, of the image width

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.until_s is not None and self.until_s <= self.at_s:
            raise ValueError(f"until_s ({self.until_s}) must be after at_s ({self.at_s})")
        if self.kind == "hang" and self.until_s is None:
            raise ValueError("until_s: a hang fault needs an end")
        if self.temp_c is not None and self.kind not in ("cover", "blind"):
            raise ValueError(f"temp_c: only for cover and blind faults, not {self.kind}")
        if "sigma_frac" in self.model_fields_set and self.kind != "defocus":
            raise ValueError(f"sigma_frac: only for defocus faults, not {self.kind}")
        return self

    def active(self, t: float) -> bool:
        """Whether the fault is in effect ``t`` seconds after the scenario start."""
        return self.at_s <= t and (self.until_s is None or t < self.until_s)


def apply_to_scene(faults: Sequence[CameraFault], t: float, scene_c: F32) -> F32:
    """The scene (deg C) as the sensor sees it through the optical faults active at ``t``."""
    img = np.asarray(scene_c, dtype=np.float32)
    for fault in faults:
        if fault.kind in OPTICAL and fault.active(t):
            img = _optical(fault, img)
    return img


def _optical(fault: CameraFault, img: F32) -> F32:
    h, w = img.shape
    if fault.kind == "cover":
        temp = float(np.median(img)) if fault.temp_c is None else fault.temp_c
        # A hand or a bag is not perfectly uniform: a faint, smooth gradient across it.
        ramp = np.linspace(-0.2, 0.2, w, dtype=np.float32)[None, :]
        return np.broadcast_to(np.float32(temp) + ramp, (h, w)).astype(np.float32)
    if fault.kind == "blind":
        temp = 500.0 if fault.temp_c is None else fault.temp_c
        vs, us = np.mgrid[0:h, 0:w]
        # A hot source held near the lens: a disc covering most of the view.
        inside = (us - w * 0.5) ** 2 + (vs - h * 0.5) ** 2 <= (0.45 * w) ** 2
        out = img.copy()
        out[inside] = np.float32(temp)
        return out
    if fault.kind == "turn":
        # Panned by half the field of view and tilted up: the sky fills the top of the view.
        panned = np.roll(img, w // 2, axis=1)
        shift = h // 3
        out = np.empty_like(img)
        out[shift:] = panned[:-shift]
        out[:shift] = panned[:1]
        return out
    sigma = fault.sigma_frac * w
    return np.asarray(ndimage.gaussian_filter(img, sigma, mode="nearest"), dtype=np.float32)


class FaultPlayer:
    """Applies a scenario's camera faults around one camera's capture."""

    def __init__(self, faults: Sequence[CameraFault]) -> None:
        self.faults = list(faults)
        self._last: U16 | None = None  # the last frame before a freeze

    def unplugged(self, t: float) -> bool:
        """Whether the camera gives no frames at ``t``."""
        return any(f.kind == "unplug" and f.active(t) for f in self.faults)

    def hung(self, t: float) -> bool:
        """Whether a read at ``t`` blocks (no frame, no error)."""
        return any(f.kind == "hang" and f.active(t) for f in self.faults)

    def scene(self, t: float, scene_c: F32) -> F32:
        """The scene through the active optical faults."""
        return apply_to_scene(self.faults, t, scene_c)

    def frame(self, t: float, data: U16) -> U16:
        """The frame the camera hands out: a frozen one while a freeze is active."""
        if any(f.kind == "freeze" and f.active(t) for f in self.faults) and self._last is not None:
            return self._last.copy()
        self._last = data
        return data
