"""Thermal motion: foreground blobs against a running background, in any units.

Works on radiometric (centi-kelvin) and raw-count frames alike: a pixel is foreground when it
differs from the background by more than ``sigma`` times the frame-to-frame noise and by more than
``min_contrast`` of the scene's value range; a global offset (a flat-field correction, raw-count
drift) is taken out first. Blobs of at least ``min_area_frac`` of the frame are followed by
overlap and reported once seen in ``persist_frames`` frames in a row. Whether motion matters at
night only is the rule's schedule, not this detector's business.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from firmware.config.site import MotionDetection
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
IntBox = tuple[int, int, int, int]  # u0, v0, u1, v1, ends exclusive
_EIGHT = np.ones((3, 3), dtype=bool)
_MATCH_MARGIN_PX = 2
_SLOW = 0.1  # foreground pixels join the background this much slower


@dataclass(frozen=True)
class MotionBlob:
    """A moving warm or cold region, followed across frames."""

    blob_id: int
    box: IntBox
    area_px: int
    hits: int  # consecutive frames it has been seen in

    @property
    def bottom_centre(self) -> tuple[float, float]:
        """Where the blob meets the ground in the image."""
        u0, _, u1, v1 = self.box
        return ((u0 + u1) / 2.0, float(v1))


def _near(a: IntBox, b: IntBox) -> bool:
    m = _MATCH_MARGIN_PX
    return not (a[2] + m <= b[0] or b[2] + m <= a[0] or a[3] + m <= b[1] or b[3] + m <= a[1])


class MotionDetector:
    """Running-average background subtraction with persistence."""

    def __init__(self, config: MotionDetection) -> None:
        self.config = config
        self._bg: F32 | None = None
        self._prev: F32 | None = None
        self._noise = 0.0
        self._last_t: float | None = None
        self._blobs: list[MotionBlob] = []
        self._ids = itertools.count(1)

    def process(self, frame: ThermalFrame) -> list[MotionBlob]:
        """Take one frame; return the blobs that have persisted."""
        if not self.config.enabled:
            return []
        img = frame.data.astype(np.float32)
        if self._bg is None or self._bg.shape != img.shape:
            self._bg, self._prev, self._last_t = img.copy(), img, frame.t
            return []
        assert self._prev is not None
        step = img - self._prev
        if step.any():  # a repeated frame (flat-field pause) says nothing about noise
            mad = float(np.median(np.abs(step - np.median(step))))
            sigma = 1.4826 * mad / math.sqrt(2.0)
            self._noise = sigma if self._noise == 0 else 0.9 * self._noise + 0.1 * sigma
        diff = img - self._bg
        diff -= np.float32(np.median(diff))
        lo, hi = np.percentile(self._bg, [1, 99])
        threshold = max(self.config.sigma * self._noise, self.config.min_contrast * (hi - lo))
        mask = np.abs(diff) > max(threshold, 1e-6)
        blobs = self._blobs_of(mask)
        self._learn(img, mask, frame.t)
        self._prev = img
        return [b for b in blobs if b.hits >= self.config.persist_frames]

    def _blobs_of(self, mask: npt.NDArray[np.bool_]) -> list[MotionBlob]:
        min_area = max(2, math.ceil(self.config.min_area_frac * mask.size))
        labels, count = ndimage.label(mask, structure=_EIGHT)
        current: list[MotionBlob] = []
        previous = list(self._blobs)
        if count:
            areas = ndimage.sum_labels(mask, labels, np.arange(1, count + 1))
            for area, sl in zip(areas, ndimage.find_objects(labels), strict=True):
                if sl is None or area < min_area:
                    continue
                box = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
                match = next((b for b in previous if _near(b.box, box)), None)
                if match is not None:
                    previous.remove(match)
                    current.append(MotionBlob(match.blob_id, box, int(area), match.hits + 1))
                else:
                    current.append(MotionBlob(next(self._ids), box, int(area), 1))
        self._blobs = current
        return current

    def _learn(self, img: F32, mask: npt.NDArray[np.bool_], t: float) -> None:
        assert self._bg is not None and self._last_t is not None
        dt = max(t - self._last_t, 0.0)
        self._last_t = t
        a = min(dt / self.config.learn_s, 1.0)
        rate = np.where(mask, np.float32(a * _SLOW), np.float32(a))
        self._bg += rate * (img - self._bg)
