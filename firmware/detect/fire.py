"""Radiometric fire / hot-spot detector: absolute temperature, minimum area, persistence.

Works on any radiometric frame size (32x24 to 160x120 and up). A hot spot is confirmed once it has
been seen in ``persistence_frames`` consecutive frames, so single-frame glints and noise never
raise an alarm.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from firmware.config.site import FireDetection
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # u0, v0, u1, v1 inclusive pixel bounds
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_MATCH_MARGIN_PX = 2  # a flickering flame moves a little between frames


@dataclass(frozen=True)
class HotSpot:
    """A region at or above the fire threshold, followed across frames."""

    spot_id: int
    box: Box
    area_px: int
    max_temp_c: float
    first_t: float
    frames_seen: int
    confirmed: bool

    @property
    def bottom_centre(self) -> tuple[float, float]:
        """Where the spot meets the ground in the image: the reference point for zones."""
        u0, _, u1, v1 = self.box
        return ((u0 + u1 + 1) / 2.0, float(v1 + 1))


def _overlaps(a: Box, b: Box, margin: int) -> bool:
    return not (
        a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]
    )


class FireDetector:
    """Finds hot spots in radiometric frames and confirms those that persist."""

    def __init__(self, config: FireDetection) -> None:
        self.config = config
        self._spots: list[HotSpot] = []
        self._ids = itertools.count(1)

    def process(self, frame: ThermalFrame) -> list[HotSpot]:
        """Update the followed spots with one frame; return the confirmed ones seen in it."""
        temps = frame.celsius()
        mask = temps >= self.config.threshold_c
        if not mask.any():
            if self._spots:
                logger.debug("frame %d: hot spots gone", frame.index)
            self._spots = []
            return []
        labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        index = np.arange(1, count + 1)
        areas = ndimage.sum_labels(mask, labels, index)
        maxima = ndimage.maximum(temps, labels, index)
        slices = ndimage.find_objects(labels)
        previous, current = self._spots, []
        for area, tmax, sl in zip(areas, maxima, slices, strict=True):
            if sl is None or area < self.config.min_area_px:
                continue
            box = (sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
            match = next((p for p in previous if _overlaps(p.box, box, _MATCH_MARGIN_PX)), None)
            if match is None:
                spot = HotSpot(
                    next(self._ids),
                    box,
                    int(area),
                    float(tmax),
                    frame.t,
                    1,
                    self.config.persistence_frames <= 1,
                )
            else:
                previous.remove(match)  # one blob continues one spot
                seen = match.frames_seen + 1
                spot = replace(
                    match,
                    box=box,
                    area_px=int(area),
                    max_temp_c=float(tmax),
                    frames_seen=seen,
                    confirmed=seen >= self.config.persistence_frames,
                )
                if spot.confirmed and not match.confirmed:
                    logger.info(
                        "frame %d: hot spot %d confirmed after %d frames: box=%s "
                        "area=%dpx max=%.1fC",
                        frame.index,
                        spot.spot_id,
                        seen,
                        box,
                        spot.area_px,
                        spot.max_temp_c,
                    )
            current.append(spot)
        self._spots = current
        return [s for s in current if s.confirmed]
