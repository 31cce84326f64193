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
just-parked car's engine) or that have driven away from where they were first seen (a car's engine
or exhaust arriving) are never confirmed. A confirmed spot stays confirmed while it is followed.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
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


@dataclass
class _Evidence:
    """What a followed spot has shown so far: where it started, how it changed."""

    first_box: Box
    appeared: bool  # it was far above the background where it showed up
    history: deque[tuple[float, int, float]] = field(default_factory=deque)  # t, area, tmax
    departed: bool = False


def _median(values: list[float]) -> float:
    return float(np.median(values))


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
        self._last_t: float | None = None
        self._temps: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)

    def process(self, frame: ThermalFrame) -> list[HotSpot]:
        """Update the followed spots with one frame; return the confirmed ones seen in it."""
        temps = frame.celsius()
        if self._background is None or self._background.shape != temps.shape:
            self._background = temps.copy()
        self._temps = temps
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
        alive = {p.spot_id for p in current}
        self._evidence = {k: v for k, v in self._evidence.items() if k in alive}
        self._update_background(temps, frame.t)
        return [s for s in seen_now if s.confirmed]

    def _update_background(self, temps: npt.NDArray[np.float32], t: float) -> None:
        # A slow running average: what each place looked like before something hot showed up.
        assert self._background is not None
        dt = 0.0 if self._last_t is None else max(t - self._last_t, 0.0)
        self._last_t = t
        alpha = np.float32(min(dt / self.config.background_tau_s, 1.0))
        self._background += alpha * (temps - self._background)

    def _evidence_for(self, spot_id: int, box: Box, tmax: float, new: bool) -> _Evidence:
        ev = self._evidence.get(spot_id)
        if ev is None or new:
            assert self._background is not None
            u0, v0, u1, v1 = box
            before = float(self._background[v0 : v1 + 1, u0 : u1 + 1].max())
            ev = _Evidence(box, tmax - before >= self.config.jump_k)
            self._evidence[spot_id] = ev
        return ev

    def _fire_like(self, ev: _Evidence, box: Box, area: int, tmax: float, t: float) -> bool:
        """Whether a persisting spot shows evidence of fire and is not a known warm object."""
        cfg = self.config
        if not _overlaps(ev.first_box, box, 0):
            ev.departed = True  # fires do not travel: a car's engine or exhaust arriving
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
        large = area > cfg.large_area_frac * self._temps.size
        far_above = tmax >= cfg.threshold_c + cfg.far_above_k and not large
        return ev.appeared or growing or far_above

    def _seen(
        self, match: HotSpot | None, box: Box, area: int, tmax: float, frame: ThermalFrame
    ) -> HotSpot:
        need = self.config.persistence_frames
        if match is None:
            spot_id = next(self._ids)
            ev = self._evidence_for(spot_id, box, tmax, new=True)
            fire_like = self._fire_like(ev, box, area, tmax, frame.t)
            return HotSpot(spot_id, box, area, tmax, frame.t, 1, need <= 1 and fire_like, frame.t)
        seen = match.frames_seen + 1
        ev = self._evidence_for(match.spot_id, box, tmax, new=False)
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
