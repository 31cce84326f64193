"""Thermal motion: foreground blobs against a running background, in any units.

Works on radiometric (centi-kelvin) and raw-count frames alike: a pixel is foreground when it
differs from the background by more than ``sigma`` times the frame-to-frame noise and by more than
``min_contrast`` of the scene's value range; a global offset (a flat-field correction, raw-count
drift) is taken out first. Blobs of at least ``min_area_frac`` of the frame are followed by
overlap and reported once seen in ``persist_frames`` frames in a row. Whether motion matters at
night only is the rule's schedule, not this detector's business.

It runs next to the object model on every frame, so it is kept cheap: the noise and the global
offset are medians of a sample of every ``_SAMPLE_STEP``-th pixel each way, the value range of the
slowly changing background is measured once a second, and blobs are labelled inside the bounding
box of the foreground only.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import cc3d
import numpy as np
import numpy.typing as npt

from firmware.config.site import MotionDetection
from firmware.detect.base import label_8_connected, same_pixels
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
IntBox = tuple[int, int, int, int]  # u0, v0, u1, v1, ends exclusive
_MATCH_MARGIN_PX = 2
_SLOW = 0.1  # foreground pixels join the background this much slower
# Noise and offset from every 4th pixel each way (1200 of a Lepton's 19200): the medians of a
# scene's frame-to-frame steps and of its difference to the background come out the same to well
# within the threshold, at a fraction of the cost (the full medians cost more than all the rest).
# Frames smaller than 8 samples a side (the MLX90640's 32x24) use every pixel.
_SAMPLE_STEP = 4
# The background follows the scene with a time constant of ``learn_s`` (20 s by default): its
# value range (which scales the threshold) barely moves between refreshes this far apart.
_RANGE_EVERY_S = 1.0


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


def _median(values: F32) -> float:
    """The median of a 1-D float32 array, as ``np.median`` gives it (values is reordered)."""
    n = values.size
    k = n // 2
    if n % 2:
        values.partition(k)
        return float(values[k])
    values.partition((k - 1, k))
    return float((values[k - 1] + values[k]) / np.float32(2.0))


def _percentiles(values: F32, lo_q: float, hi_q: float) -> tuple[float, float]:
    """Two percentiles of a 1-D array, linear interpolation as ``np.percentile`` (reordered)."""
    last = values.size - 1
    pos = (last * lo_q / 100.0, last * hi_q / 100.0)
    below = [min(int(p), last) for p in pos]
    kth = sorted({i for b in below for i in (b, min(b + 1, last))})
    values.partition(kth)
    out = []
    for p, b in zip(pos, below, strict=True):
        a, c = float(values[b]), float(values[min(b + 1, last)])
        out.append(a + (c - a) * (p - b))
    return out[0], out[1]


class MotionDetector:
    """Running-average background subtraction with persistence."""

    def __init__(self, config: MotionDetection) -> None:
        self.config = config
        self._bg: F32 | None = None
        self._prev: F32 | None = None
        self._noise = 0.0
        self._last_t: float | None = None
        self._range: tuple[float, float] = (0.0, 0.0)  # background's 1st and 99th percentile
        self._range_t: float | None = None  # when it was last measured
        self._blobs: list[MotionBlob] = []
        self._box: tuple[slice, slice] | None = None  # the last frame's foreground bounding box
        self._ids = itertools.count(1)

    def process(self, frame: ThermalFrame) -> list[MotionBlob]:
        """Take one frame; return the blobs that have persisted."""
        if not self.config.enabled:
            return []
        img = frame.data.astype(np.float32)
        if self._bg is None or self._bg.shape != img.shape:
            self._bg, self._prev, self._last_t = img.copy(), img, frame.t
            self._range_t = None
            return []
        assert self._prev is not None
        step_px = _SAMPLE_STEP if min(img.shape) >= 8 * _SAMPLE_STEP else 1
        # A repeated frame (flat-field pause) says nothing about noise.
        if not same_pixels(img, self._prev):
            step = (img[::step_px, ::step_px] - self._prev[::step_px, ::step_px]).ravel()
            dev = np.abs(step - np.float32(_median(step)))
            sigma = 1.4826 * _median(dev) / math.sqrt(2.0)
            self._noise = sigma if self._noise == 0 else 0.9 * self._noise + 0.1 * sigma
        diff = img - self._bg
        diff -= np.float32(_median(diff[::step_px, ::step_px].flatten()))
        if self._range_t is None or frame.t - self._range_t >= _RANGE_EVERY_S:
            values = self._bg.flatten()  # a copy: partitioned in place
            self._range, self._range_t = _percentiles(values, 1, 99), frame.t
        lo, hi = self._range
        threshold = max(self.config.sigma * self._noise, self.config.min_contrast * (hi - lo))
        np.abs(diff, out=diff)
        mask = diff > max(threshold, 1e-6)
        blobs = self._blobs_of(mask)
        self._learn(img, mask, frame.t)
        self._prev = img
        return [b for b in blobs if b.hits >= self.config.persist_frames]

    def _blobs_of(self, mask: npt.NDArray[np.bool_]) -> list[MotionBlob]:
        min_area = max(2, math.ceil(self.config.min_area_frac * mask.size))
        current: list[MotionBlob] = []
        previous = list(self._blobs)
        self._box = None
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size:
            # Label inside the foreground's bounding box only: same blobs, same order.
            v0, v1 = int(rows[0]), int(rows[-1]) + 1
            cols = np.flatnonzero(mask[v0:v1].any(axis=0))
            u0 = int(cols[0])
            self._box = (slice(v0, v1), slice(u0, int(cols[-1]) + 1))
            crop = mask[self._box]
            stats = cc3d.statistics(label_8_connected(crop), no_slice_conversion=True)
            # Bounding boxes: row min, row max, column min, column max, all inclusive.
            for area, (r0, r1, c0, c1) in zip(
                stats["voxel_counts"][1:].tolist(),
                stats["bounding_boxes"][1:].tolist(),
                strict=True,
            ):
                if area < min_area:
                    continue
                box = (u0 + c0, v0 + r0, u0 + c1 + 1, v0 + r1 + 1)
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
        step = img - self._bg
        box = self._box
        if box is not None:
            # Foreground pixels (all inside the box) learn slower: their step, then the rest's.
            fg = mask[box]
            slow = step[box][fg] * np.float32(a * _SLOW)
            step *= np.float32(a)
            step[box][fg] = slow
        else:
            step *= np.float32(a)
        self._bg += step
