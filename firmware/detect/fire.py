"""Radiometric fire / hot-spot detector: absolute temperature, area, growth, persistence.

Works on any radiometric frame size (32x24 to 160x120 and up). A hot spot is a region at or above
``threshold_c``, followed across frames; it is confirmed once it has been seen in
``persistence_frames`` frames with no gap longer than ``GAP_S`` (so single-frame glints and noise
never raise an alarm, while a flickering flame stays one spot) AND there is evidence of fire:

- it appeared abruptly: its peak is ``jump_k`` above the slow background at that place (ignition),
- or it is growing: area up by ``growth_frac`` or peak up by ``growth_k`` over ``growth_window_s``,
- or it is small and far above the threshold (``far_above_k``).

Known warm objects are held back: large spots (over ``large_area_frac`` of the frame: sun-heated
asphalt or roofs under a lowered threshold, an engine hood) must grow; spots that are cooling (a
just-parked car's engine) or that travel (both edges of the box moving the same way, or the spot
leaving where it was first seen: a car's engine or exhaust arriving) are never confirmed. A spot
touching the image's edge may be something hot driving into view: there only growth counts, and
only after ``ENTRY_S``. A confirmed spot stays confirmed while it is followed.

Most frames have no pixel at the threshold: those are tested on the raw values against the
threshold in raw units (the same test, bit for bit) and cost next to nothing. The slow background
(time constant ``background_tau_s``, a minute by default) is then brought up to date every
``BACKGROUND_EVERY_S`` instead of on every frame; with hot pixels in view it follows every frame.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections import deque
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cc3d
import numpy as np
import numpy.typing as npt

from firmware.config.site import FireDetection
from firmware.detect.base import label_8_connected
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # u0, v0, u1, v1 inclusive pixel bounds
_MATCH_MARGIN_PX = 2  # a flickering flame moves a little between frames
_BOX_SMOOTHING = 3  # boxes a travel test takes the median of: flames flicker
_MOVE_PX = 3  # both edges this far (or _MOVE_FRAC of the size) one way: it travels
_MOVE_FRAC = 0.25
ENTRY_S = 3.0  # a spot at the image's edge may be something hot driving in, for this long
GAP_S = 1.0  # a spot unseen for longer than this is forgotten (and must persist anew)
BACKGROUND_EVERY_S = 0.5  # with nothing hot in view: a small step next to background_tau_s
_TIME_EPS = 1e-6  # frame times are sums of 1/fps


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


@dataclass
class _Evidence:
    """What a followed spot has shown so far: where it started, how it changed."""

    first_box: Box
    appeared: bool  # it was far above the background where it showed up
    first_t: float = 0.0
    history: deque[tuple[float, int, float]] = field(default_factory=deque)  # t, area, tmax
    boxes: deque[Box] = field(default_factory=lambda: deque(maxlen=_BOX_SMOOTHING))
    start: Box | None = None  # the median of its first few boxes
    departed: bool = False


def _median(values: list[float]) -> float:
    # The same value as np.median (the middle one, or the mean of the middle two), for short lists
    # at a fraction of its cost.
    return float(statistics.median(values))


@lru_cache(maxsize=8)
def raw_threshold(threshold_c: float) -> int:
    """The smallest radiometric value (centi-kelvin) whose temperature is at ``threshold_c`` or
    above, as ``ThermalFrame.celsius`` computes it; 65536 when there is none.

    The conversion is monotonic, so ``data >= raw_threshold(c)`` is ``celsius() >= c`` exactly.
    """
    values = np.arange(65536, dtype=np.uint16)
    above = ThermalFrame(0, 0.0, values, True).celsius() >= threshold_c
    first = int(np.argmax(above)) if above.any() else 65536
    if not above[first:].all():
        raise AssertionError("the radiometric conversion is not monotonic")
    return first


def dilate_8_connected(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``mask`` grown by a pixel each way, diagonals included: a 3x3 binary dilation, nothing
    beyond the edges (``scipy.ndimage.binary_dilation`` with a 3x3 structure)."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    grown = rows.copy()
    grown[:, 1:] |= rows[:, :-1]
    grown[:, :-1] |= rows[:, 1:]
    return grown


def _median_box(boxes: deque[Box]) -> Box:
    u0, v0, u1, v1 = (sorted(b[i] for b in boxes)[len(boxes) // 2] for i in range(4))
    return (u0, v0, u1, v1)


def _travelled(start: Box, now: Box) -> bool:
    """Whether both edges of a box moved the same way: it travels (a fire only grows)."""
    for lo, hi, size in ((0, 2, now[2] - now[0] + 1), (1, 3, now[3] - now[1] + 1)):
        tol = max(_MOVE_PX, _MOVE_FRAC * size)
        d_lo, d_hi = now[lo] - start[lo], now[hi] - start[hi]
        if (d_lo > tol and d_hi > tol) or (d_lo < -tol and d_hi < -tol):
            return True
    return False


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
        self._evidence: dict[int, _Evidence] = {}
        self._background: npt.NDArray[np.float32] | None = None
        self._last_t: float | None = None  # when the background was last brought up to date
        self._hw: tuple[int, ...] = (0, 0)  # rows, columns of the frames
        self._raw_threshold = raw_threshold(config.threshold_c)

    def process(self, frame: ThermalFrame) -> list[HotSpot]:
        """Update the followed spots with one frame; return the confirmed ones seen in it."""
        temps: npt.NDArray[np.float32] | None = None
        if self._background is None or self._background.shape != frame.data.shape:
            temps = frame.celsius()
            self._background, self._last_t = temps.copy(), None
        self._hw = frame.data.shape
        previous, current = self._spots, []
        # temps >= threshold_c, tested on the raw values; most frames have no such pixel at all.
        if int(frame.data.max()) >= self._raw_threshold:
            mask = frame.data >= self._raw_threshold
            if temps is None:
                temps = frame.celsius()
            for box, area, tmax in self._blobs(mask, temps):
                if area < self.config.min_area_px:
                    continue
                match = next((p for p in previous if _overlaps(p.box, box, _MATCH_MARGIN_PX)), None)
                if match is not None:
                    previous.remove(match)  # one blob continues one spot
                current.append(self._seen(match, box, area, tmax, frame))
        # A spot not seen in this frame is followed for a few frames more: flames flicker.
        seen_now = list(current)
        current += [p for p in previous if frame.t - p.last_t <= GAP_S]
        self._spots = current
        if self._evidence:
            alive = {p.spot_id for p in current}
            self._evidence = {k: v for k, v in self._evidence.items() if k in alive}
        self._update_background(frame, temps)
        return [s for s in seen_now if s.confirmed]

    @staticmethod
    def _blobs(
        mask: npt.NDArray[np.bool_], temps: npt.NDArray[np.float32]
    ) -> list[tuple[Box, int, float]]:
        """Box, area and peak of each group of hot pixels, in the order of their first pixel."""
        # Only the hot pixels' bounding box (and a pixel around it) can be part of a group.
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
        v0, u0 = max(int(rows[0]) - 1, 0), max(int(cols[0]) - 1, 0)
        crop = (slice(v0, int(rows[-1]) + 2), slice(u0, int(cols[-1]) + 2))
        hot = mask[crop]
        # Fragments of one fire a pixel apart (flames, heated ground) are one hot spot.
        labels = label_8_connected(dilate_8_connected(hot))
        core = np.where(hot, labels, 0)
        stats = cc3d.statistics(core, no_slice_conversion=True)
        areas = stats["voxel_counts"][1:].tolist()
        where = np.flatnonzero(core)
        maxima = np.full(len(areas), -np.inf, dtype=np.float32)
        np.maximum.at(maxima, core.ravel()[where] - 1, temps[crop].ravel()[where])
        found = []
        # Bounding boxes: row min, row max, column min, column max, all inclusive.
        for area, tmax, (r0, r1, c0, c1) in zip(
            areas, maxima.tolist(), stats["bounding_boxes"][1:].tolist(), strict=True
        ):
            if area:
                found.append(((u0 + c0, v0 + r0, u0 + c1, v0 + r1), int(area), float(tmax)))
        return found

    def _update_background(
        self, frame: ThermalFrame, temps: npt.NDArray[np.float32] | None
    ) -> None:
        # A slow running average: what each place looked like before something hot showed up.
        # With nothing hot in view it is stepped every BACKGROUND_EVERY_S over the time since.
        assert self._background is not None
        dt = 0.0 if self._last_t is None else max(frame.t - self._last_t, 0.0)
        if temps is None and self._last_t is not None and dt < BACKGROUND_EVERY_S - _TIME_EPS:
            return
        self._last_t = frame.t
        if temps is None:
            temps = frame.celsius()
        alpha = np.float32(min(dt / self.config.background_tau_s, 1.0))
        self._background += alpha * (temps - self._background)

    def _evidence_for(self, spot_id: int, box: Box, tmax: float, t: float, new: bool) -> _Evidence:
        ev = self._evidence.get(spot_id)
        if ev is None or new:
            assert self._background is not None
            u0, v0, u1, v1 = box
            before = float(self._background[v0 : v1 + 1, u0 : u1 + 1].max())
            ev = _Evidence(box, tmax - before >= self.config.jump_k, t)
            self._evidence[spot_id] = ev
        return ev

    def _fire_like(self, ev: _Evidence, box: Box, area: int, tmax: float, t: float) -> bool:
        """Whether a persisting spot shows evidence of fire and is not a known warm object."""
        cfg = self.config
        if not _overlaps(ev.first_box, box, 0):
            ev.departed = True  # fires do not travel: a car's engine or exhaust arriving
        ev.boxes.append(box)
        if ev.start is None and len(ev.boxes) == _BOX_SMOOTHING:
            ev.start = _median_box(ev.boxes)
        elif ev.start is not None and _travelled(ev.start, _median_box(ev.boxes)):
            ev.departed = True  # driving, even before it has left its first box
        hist = ev.history
        hist.append((t, area, tmax))
        while hist and hist[0][0] < t - cfg.growth_window_s:
            hist.popleft()
        if ev.departed:
            return False
        growing = cooling = False
        span = hist[-1][0] - hist[0][0]
        if len(hist) >= 3 and span >= cfg.growth_window_s / 2:
            k = max(1, len(hist) // 3)
            areas = [float(h[1]) for h in hist]
            peaks = [h[2] for h in hist]
            a0, a1 = _median(areas[:k]), _median(areas[-k:])
            p0, p1 = _median(peaks[:k]), _median(peaks[-k:])
            area_growing = a1 >= a0 * (1.0 + cfg.growth_frac) and a1 - a0 >= 2.0
            growing = area_growing or p1 - p0 >= cfg.growth_k
            # Cooling: steadily lower, not a flame flickering (flames keep rising again).
            later = peaks[len(peaks) // 3 :]
            cooling = not area_growing and p1 <= p0 - cfg.cooling_k and max(later) < p0
        if cooling:
            return False
        if self._at_edge(box):
            # Something hot driving into view looks like a spot that appears and grows; only
            # growth after ENTRY_S counts (by then a car is in and travelling).
            return growing and t - ev.first_t >= ENTRY_S
        large = area > cfg.large_area_frac * self._hw[0] * self._hw[1]
        far_above = tmax >= cfg.threshold_c + cfg.far_above_k and not large
        return ev.appeared or growing or far_above

    def _at_edge(self, box: Box) -> bool:
        rows, cols = self._hw
        return box[0] <= 0 or box[1] <= 0 or box[2] >= cols - 1 or box[3] >= rows - 1

    def _seen(
        self, match: HotSpot | None, box: Box, area: int, tmax: float, frame: ThermalFrame
    ) -> HotSpot:
        need = self.config.persistence_frames
        if match is None:
            spot_id = next(self._ids)
            ev = self._evidence_for(spot_id, box, tmax, frame.t, new=True)
            fire_like = self._fire_like(ev, box, area, tmax, frame.t)
            return HotSpot(spot_id, box, area, tmax, frame.t, 1, need <= 1 and fire_like, frame.t)
        seen = match.frames_seen + 1
        ev = self._evidence_for(match.spot_id, box, tmax, frame.t, new=False)
        fire_like = self._fire_like(ev, box, area, tmax, frame.t)
        spot = replace(
            match,
            box=box,
            area_px=area,
            max_temp_c=tmax,
            frames_seen=seen,
            confirmed=match.confirmed or (seen >= need and fire_like),
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
