"""What every detector hands on: detections in a frame's pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the frame, x1 > x0, y1 > y0
SensorName = Literal["thermal", "visible"]
ObjectClass = Literal["person", "vehicle", "animal"]


@dataclass(frozen=True)
class Detection:
    """One object found in one frame."""

    cls: str  # a polewatch class ("person", "vehicle", "animal") after label mapping
    score: float  # 0..1
    box: Box
    sensor: SensorName = "thermal"
    label: str | None = None  # the model's own label before mapping ("car", "dog"), if different
    lying: float | None = None  # persons: probability of a lying posture, from models that say

    @property
    def bottom_centre(self) -> tuple[float, float]:
        """Where the object touches the ground: what zone membership is decided by."""
        x0, _, x1, y1 = self.box
        return ((x0 + x1) / 2.0, y1)
