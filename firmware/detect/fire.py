"""Radiometric fire / hot-spot detector: absolute temperature, minimum area, persistence.

Works on any radiometric frame size (32x24 to 160x120 and up). A hot spot is confirmed once it has
been seen in ``persistence_frames`` frames with no gap longer than ``GAP_S``, so single-frame glints
and noise never raise an alarm, while a flickering flame stays one spot.
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
GAP_S = 1.0  # a spot unseen for longer than this is forgotten (and must persist anew)


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
    last_t: float = 0.0  # when it was last seen

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
        previous, current = self._spots, []
        if mask.any():
            # Fragments of one fire a pixel apart (flames, heated ground) are one hot spot.
            grouped = ndimage.binary_dilation(mask, structure=_EIGHT_CONNECTED)
            labels, count = ndimage.label(grouped, structure=_EIGHT_CONNECTED)
            core = np.where(mask, labels, 0)
            index = np.arange(1, count + 1)
            areas = ndimage.sum_labels(mask, labels, index)
            maxima = ndimage.maximum(temps, core, index)
            slices = ndimage.find_objects(core, max_label=count)
            for area, tmax, sl in zip(areas, maxima, slices, strict=True):
                if sl is None or area < self.config.min_area_px:
                    continue
                box = (sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
                match = next((p for p in previous if _overlaps(p.box, box, _MATCH_MARGIN_PX)), None)
                if match is not None:
                    previous.remove(match)  # one blob continues one spot
                current.append(self._seen(match, box, int(area), float(tmax), frame))
        # A spot not seen in this frame is followed for a few frames more: flames flicker.
        seen_now = list(current)
        current += [p for p in previous if frame.t - p.last_t <= GAP_S]
        self._spots = current
        return [s for s in seen_now if s.confirmed]

    def _seen(
        self, match: HotSpot | None, box: Box, area: int, tmax: float, frame: ThermalFrame
    ) -> HotSpot:
        need = self.config.persistence_frames
        if match is None:
            return HotSpot(next(self._ids), box, area, tmax, frame.t, 1, need <= 1, frame.t)
        seen = match.frames_seen + 1
        spot = replace(
            match,
            box=box,
            area_px=area,
            max_temp_c=tmax,
            frames_seen=seen,
            confirmed=seen >= need,
            last_t=frame.t,
        )
        if spot.confirmed and not match.confirmed:
            logger.info(
                "frame %d: hot spot %d confirmed after %d frames: box=%s area=%dpx max=%.1fC",
                frame.index,
                spot.spot_id,
                seen,
                box,
                area,
                tmax,
            )
        return spot
