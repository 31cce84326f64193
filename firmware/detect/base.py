"""What every detector hands on: detections in a frame's pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cc3d
import numpy as np
import numpy.typing as npt

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


def same_pixels(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """Whether two images are equal, pixel for pixel (``np.array_equal``).

    Two frames of a live sensor differ nearly everywhere (noise): a sample of every 8th pixel each
    way tells them apart at a fraction of a full comparison; only equal samples compare it all.
    """
    if a is b:
        return True
    if a.shape != b.shape:
        return False
    return bool(np.array_equal(a[::8, ::8], b[::8, ::8]) and np.array_equal(a, b))


def label_8_connected(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.unsignedinteger[Any]]:
    """Labels 1..n of the 8-connected groups of ``mask`` (0 elsewhere), numbered in the order of
    their first pixel row by row, as ``scipy.ndimage.label`` numbers them.

    cc3d rather than scipy: importing ``scipy.ndimage`` costs the unit about 27 MB of memory.
    """
    # As 0/1 bytes: cc3d's binary-image path, which it takes for bool input, labels some
    # background pixels of 2-D images (3.27 to 4.1 at least); its labelling of values is right.
    labels: npt.NDArray[np.unsignedinteger[Any]] = cc3d.connected_components(
        mask.view(np.uint8), connectivity=8
    )
    return labels
