"""Camera calibration: a box in pixels as a size in metres, from how the camera is mounted.

A camera's mount height, its tilt below the horizontal and its horizontal field of view put
the ground plane in the image (a pinhole camera, square pixels, no roll, principal point at the
centre). A detection stands on the ground at its box's bottom centre; the distance to that
point along the optical axis turns the box's pixels into metres. Surveillance analytics that
classify by real size (Bosch IVA, Axis Object Analytics' perspective) calibrate the same way.

The check that uses it: an object the model calls a person whose larger side is shorter than
any person shows (sitting, lying or standing, from any angle) is relabelled an animal. A warm
blob the size of a hedgehog near a low camera looks like a distant person lying down to the
model; in metres it is a quarter of one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace

from firmware.config.site import CameraCalibration
from firmware.detect.base import Box, Detection

logger = logging.getLogger(__name__)

# The ground point must be this far below the horizon (as the tangent of the angle) to count: a
# box whose bottom is at the horizon would be kilometres away, its size meaningless.
_MIN_DEPRESSION = 1e-3


class GroundPlane:
    """The ground as one calibrated camera of width x height pixels sees it."""

    def __init__(self, calibration: CameraCalibration, width: int, height: int) -> None:
        self.calibration = calibration
        self.height = height
        self.focal_px = (width / 2.0) / math.tan(math.radians(calibration.hfov_deg) / 2.0)
        pitch = math.radians(calibration.pitch_deg)
        self._sin, self._cos = math.sin(pitch), math.cos(pitch)

    def depth_m(self, v: float) -> float | None:
        """Distance along the optical axis to the ground seen in pixel row v (without roll, the
        ground's depth depends on the row alone), or None when the row is at or above the
        horizon."""
        up = (self.height / 2.0 - v) / self.focal_px  # the ray's upward slope in camera terms
        falls = self._sin - up * self._cos  # metres down per metre along the optical axis
        if falls <= _MIN_DEPRESSION:
            return None
        return self.calibration.height_m / falls

    def extent_m(self, box: Box) -> float | None:
        """The larger side of an object's box in metres, measured where it stands (its bottom
        centre); None when that cannot be told: the box reaches the frame's bottom edge (its
        foot is out of view) or stands at or above the horizon."""
        x0, y0, x1, y1 = box
        if y1 >= self.height - 0.5:
            return None
        depth = self.depth_m(y1)
        if depth is None:
            return None
        return max(x1 - x0, y1 - y0) * depth / self.focal_px


class PersonSizeCheck:
    """Relabels as animals the persons too small to be one, in a calibrated camera's frames."""

    def __init__(self, plane: GroundPlane, min_m: float) -> None:
        self.plane = plane
        self.min_m = min_m

    def apply(self, detections: Sequence[Detection]) -> list[Detection]:
        """The detections, with each person under min_m in its larger side now an animal."""
        out: list[Detection] = []
        for det in detections:
            if det.cls == "person":
                size = self.plane.extent_m(det.box)
                if size is not None and size < self.min_m:
                    logger.debug("a %.2f m person at %s is too small: an animal", size, det.box)
                    det = replace(det, cls="animal", lying=None)
            out.append(det)
        return out


def size_check(
    calibration: CameraCalibration | None, min_m: float, width: int, height: int
) -> PersonSizeCheck | None:
    """The size check of a sensor's calibration, or None for an uncalibrated one."""
    if calibration is None:
        return None
    return PersonSizeCheck(GroundPlane(calibration, width, height), min_m)
