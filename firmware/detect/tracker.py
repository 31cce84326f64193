"""Multi-object tracker: detections of each frame -> tracks with stable ids and a lifecycle.

Association is a minimum-cost matching (scipy's Hungarian ``linear_sum_assignment``) per sensor,
on 1 - IoU against each track's predicted box; a detection that does not overlap may still join a
track whose centre is within ``max_centre_dist`` box diagonals (small, fast objects at 32x24).
A detection of another class than the track's costs more, so classes only mix when nothing else
fits. Lifecycle: tentative until ``confirm_hits`` hits, then confirmed; a confirmed track unseen
for ``max_missed_s`` is lost and deleted (a tentative one sooner). The class is the majority vote
of its detections; box and lying score are exponentially smoothed.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from firmware.config.site import TrackerConfig
from firmware.detect.base import Box, Detection

logger = logging.getLogger(__name__)

TrackState = Literal["tentative", "confirmed", "lost"]
_INFEASIBLE = 1.0e6
_CLASS_PENALTY = 0.5


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One object followed across frames."""

    track_id: int
    sensor: str
    box: Box  # smoothed
    first_t: float
    last_t: float
    hits: int = 1
    state: TrackState = "tentative"
    score: float = 0.0
    lying: float | None = None  # smoothed probability of a lying posture, if the model says
    votes: Counter[str] = field(default_factory=Counter)
    history: deque[tuple[float, float, float]] = field(default_factory=deque)  # t, u, v
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, pixels per second

    @property
    def cls(self) -> str:
        """The class most of its detections had."""
        return self.votes.most_common(1)[0][0]

    @property
    def bottom_centre(self) -> tuple[float, float]:
        """Where the object touches the ground (smoothed)."""
        x0, _, x1, y1 = self.box
        return ((x0 + x1) / 2.0, y1)

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    def int_box(self) -> tuple[int, int, int, int]:
        """The smoothed box rounded to whole pixels, as events carry it."""
        return (
            math.floor(self.box[0]),
            math.floor(self.box[1]),
            math.ceil(self.box[2]),
            math.ceil(self.box[3]),
        )

    def predicted(self, t: float) -> Box:
        """Where the box should be at ``t``, moving on at its velocity."""
        dt = t - self.last_t
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def displacement_since(self, t: float) -> float:
        """The farthest the bottom centre has been from where it is now, since ``t``."""
        u, v = self.bottom_centre
        return max(
            (math.hypot(hu - u, hv - v) for ht, hu, hv in self.history if ht >= t), default=0.0
        )


class Tracker:
    """Follows detections across frames; ``update`` returns the confirmed tracks."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.tracks: list[Track] = []
        self.deleted: list[int] = []  # ids of tracks dropped by the last update
        self._ids = itertools.count(1)

    def update(self, t: float, detections: list[Detection]) -> list[Track]:
        """Take one frame's detections at time ``t``; return the confirmed, live tracks."""
        self.deleted = []
        unmatched = list(range(len(detections)))
        for sensor in sorted({d.sensor for d in detections} | {tr.sensor for tr in self.tracks}):
            tracks = [tr for tr in self.tracks if tr.sensor == sensor]
            idx = [i for i in unmatched if detections[i].sensor == sensor]
            for ti, di in self._match(t, tracks, [detections[i] for i in idx]):
                self._hit(tracks[ti], detections[idx[di]], t)
                unmatched.remove(idx[di])
        for i in unmatched:
            self._start(detections[i], t)
        self._expire(t)
        return [tr for tr in self.tracks if tr.state == "confirmed"]

    def _match(self, t: float, tracks: list[Track], dets: list[Detection]) -> list[tuple[int, int]]:
        if not tracks or not dets:
            return []
        cost = np.full((len(tracks), len(dets)), _INFEASIBLE)
        for i, tr in enumerate(tracks):
            pred = tr.predicted(t)
            diag = math.hypot(pred[2] - pred[0], pred[3] - pred[1])
            pc = ((pred[0] + pred[2]) / 2, (pred[1] + pred[3]) / 2)
            for j, det in enumerate(dets):
                overlap = iou(pred, det.box)
                if overlap >= self.config.min_iou and overlap > 0:
                    c = 1.0 - overlap
                else:
                    dc = ((det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2)
                    dist = math.hypot(dc[0] - pc[0], dc[1] - pc[1]) / max(diag, 1e-6)
                    if dist > self.config.max_centre_dist:
                        continue
                    c = 1.0 + dist
                if det.cls != tr.cls:
                    c += _CLASS_PENALTY
                cost[i, j] = c
        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1e5]

    def _hit(self, tr: Track, det: Detection, t: float) -> None:
        a = self.config.smoothing
        old_centre = ((tr.box[0] + tr.box[2]) / 2, (tr.box[1] + tr.box[3]) / 2)
        pred = tr.predicted(t)
        tr.box = (
            pred[0] + a * (det.box[0] - pred[0]),
            pred[1] + a * (det.box[1] - pred[1]),
            pred[2] + a * (det.box[2] - pred[2]),
            pred[3] + a * (det.box[3] - pred[3]),
        )
        dt = t - tr.last_t
        if dt > 0:
            centre = ((tr.box[0] + tr.box[2]) / 2, (tr.box[1] + tr.box[3]) / 2)
            vx, vy = (centre[0] - old_centre[0]) / dt, (centre[1] - old_centre[1]) / dt
            tr.velocity = (
                tr.velocity[0] + a * (vx - tr.velocity[0]),
                tr.velocity[1] + a * (vy - tr.velocity[1]),
            )
        if det.lying is not None:
            tr.lying = det.lying if tr.lying is None else tr.lying + a * (det.lying - tr.lying)
        tr.votes[det.cls] += 1
        tr.score = max(tr.score, det.score)
        tr.hits += 1
        tr.last_t = t
        self._record(tr, t)
        if tr.state == "tentative" and tr.hits >= self.config.confirm_hits:
            tr.state = "confirmed"
            logger.debug("track %d (%s) confirmed at %s", tr.track_id, tr.cls, tr.int_box())

    def _start(self, det: Detection, t: float) -> None:
        tr = Track(next(self._ids), det.sensor, det.box, t, t, score=det.score, lying=det.lying)
        tr.votes[det.cls] += 1
        if self.config.confirm_hits <= 1:
            tr.state = "confirmed"
        self._record(tr, t)
        self.tracks.append(tr)

    def _record(self, tr: Track, t: float) -> None:
        tr.history.append((t, *tr.bottom_centre))
        while tr.history and tr.history[0][0] < t - self.config.history_s:
            tr.history.popleft()

    def _expire(self, t: float) -> None:
        keep = []
        for tr in self.tracks:
            limit = self.config.max_missed_s
            if tr.state == "tentative":
                limit /= 4  # unconfirmed: most likely noise
            if t - tr.last_t > limit:
                tr.state = "lost"
                self.deleted.append(tr.track_id)
                logger.debug("track %d (%s) lost", tr.track_id, tr.cls)
            else:
                keep.append(tr)
        self.tracks = keep
