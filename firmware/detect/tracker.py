"""Multi-object tracker: detections of each frame -> tracks with stable ids and a lifecycle.

Association is a minimum-cost matching (Jonker-Volgenant, from ``lap``) per sensor,
on 1 - IoU against each track's predicted box; a detection that does not overlap may still join a
track whose centre is within ``max_centre_dist`` box diagonals (small, fast objects at 32x24).
A detection of another class than the track's costs more, so classes only mix when nothing else
fits, and it must be about the track's size (``_SWAP_SIZE``): a model unsure of one object gives
boxes alike, while a person stepping in front of a parked car the model no longer sees is another
object, and must not take over the car's track (and its "vehicle" votes). Lifecycle: tentative
until ``confirm_hits`` hits, then confirmed; a confirmed track unseen for ``max_missed_s`` is
lost and deleted (a tentative one sooner). The class is the majority vote of its detections; box
and lying score are exponentially smoothed.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

import lap
import numpy as np
import numpy.typing as npt

from firmware.config.site import TrackerConfig
from firmware.detect.base import Box, Detection

logger = logging.getLogger(__name__)

TrackState = Literal["tentative", "confirmed", "lost"]
_INFEASIBLE = 1.0e6
# Pairs costing this much or more stay unmatched. Matching one pair more saves about this much, far
# more than any set of feasible pairs (a few each) can cost: as many pairs as can be, then cheapest.
_COST_LIMIT = 1.0e5
_CLASS_PENALTY = 0.5
_SWAP_SIZE = 2.0  # another class's box joins only within this factor in width and in height


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _alike(width: float, height: float, box: Box) -> bool:
    """Whether box is within ``_SWAP_SIZE`` of width and height, each way."""
    w, h = box[2] - box[0], box[3] - box[1]
    return (
        width / _SWAP_SIZE <= w <= width * _SWAP_SIZE
        and height / _SWAP_SIZE <= h <= height * _SWAP_SIZE
    )


def assign(cost: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """The (row, column) pairs of a minimum-cost matching: as many pairs under ``_COST_LIMIT`` as
    there can be, the cheapest such set; the optimum of scipy's ``linear_sum_assignment``."""
    # lap rather than scipy.optimize, whose import costs the unit about 23 MB of memory. Given
    # only the infeasible entries, lapjv misses the optimum of some such matrices; with the cost
    # limit it finds linear_sum_assignment's (tests/firmware/test_label_assign.py).
    _, cols, _ = lap.lapjv(cost, extend_cost=True, cost_limit=_COST_LIMIT)
    return [(r, c) for r, c in enumerate(cols.tolist()) if c >= 0 and cost[r, c] < _COST_LIMIT]


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
        """The class most of its detections had (the first counted, on a tie)."""
        # Counter.most_common(1) without its heap: the first key with the highest count.
        votes = self.votes
        return max(votes, key=votes.__getitem__)

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
        farthest = 0.0
        # Newest first, stopping at ``t``: the history is in time order and spans history_s.
        for ht, hu, hv in reversed(self.history):
            if ht < t:
                break
            farthest = max(farthest, math.hypot(hu - u, hv - v))
        return farthest


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
            # Confirmed tracks choose first: a detection split in two (head and legs) must not
            # let a new track take over a person followed for a while.
            for confirmed in (True, False):
                tracks = [
                    tr
                    for tr in self.tracks
                    if tr.sensor == sensor and (tr.state == "confirmed") == confirmed
                ]
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
        return assign(self.costs(t, tracks, dets))

    def costs(
        self, t: float, tracks: list[Track], dets: list[Detection]
    ) -> npt.NDArray[np.float64]:
        """The cost of each (track, detection) pair: 1 - IoU where they overlap enough, else 1 +
        the centres' distance in box diagonals within ``max_centre_dist``, plus a penalty for
        another class; the better of the track's predicted and last box; ``_INFEASIBLE`` where
        the pair may not match."""
        # Every (track, reference box, detection) at once: this runs on every frame.
        # References: where it should be by its velocity, and where it was last seen (a person
        # who turns or stops is far from the prediction but still next to the last box).
        refs = np.array([(tr.predicted(t), tr.box) for tr in tracks])[:, :, None, :]  # T,2,1,4
        boxes = np.array([d.box for d in dets])[None, None]  # 1,1,D,4
        names = {cls: i for i, cls in enumerate({d.cls for d in dets})}
        other = np.array([names.get(tr.cls, -1) for tr in tracks])[:, None, None] != np.array(
            [names[d.cls] for d in dets]
        )  # T,1,D: another class than the track's
        rw = refs[..., 2] - refs[..., 0]
        rh = refs[..., 3] - refs[..., 1]
        bw = boxes[..., 2] - boxes[..., 0]
        bh = boxes[..., 3] - boxes[..., 1]
        # Another class's box joins only when about the track's size (``_SWAP_SIZE``).
        w_ref, h_ref = np.maximum(rw, 1e-6), np.maximum(rh, 1e-6)
        alike = (
            (w_ref / _SWAP_SIZE <= bw)
            & (bw <= w_ref * _SWAP_SIZE)
            & (h_ref / _SWAP_SIZE <= bh)
            & (bh <= h_ref * _SWAP_SIZE)
        )
        iw = np.minimum(refs[..., 2], boxes[..., 2]) - np.maximum(refs[..., 0], boxes[..., 0])
        ih = np.minimum(refs[..., 3], boxes[..., 3]) - np.maximum(refs[..., 1], boxes[..., 1])
        inter = iw * ih
        union = rw * rh + bw * bh - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = np.where((iw > 0) & (ih > 0) & (union > 0), inter / union, 0.0)
        diag = np.maximum(np.hypot(rw, rh), 1e-6)
        dx = (boxes[..., 0] + boxes[..., 2]) / 2 - (refs[..., 0] + refs[..., 2]) / 2
        dy = (boxes[..., 1] + boxes[..., 3]) / 2 - (refs[..., 1] + refs[..., 3]) / 2
        dist = np.hypot(dx, dy) / diag
        overlaps = (overlap >= self.config.min_iou) & (overlap > 0)
        cost = np.where(overlaps, 1.0 - overlap, 1.0 + dist) + np.where(other, _CLASS_PENALTY, 0.0)
        feasible = (overlaps | (dist <= self.config.max_centre_dist)) & (~other | alike)
        best: npt.NDArray[np.float64] = np.where(feasible, cost, _INFEASIBLE).min(axis=1)
        return best

    def _hit(self, tr: Track, det: Detection, t: float) -> None:
        a = self.config.smoothing
        old_centre = ((tr.box[0] + tr.box[2]) / 2, (tr.box[1] + tr.box[3]) / 2)
        pred = tr.predicted(t)
        if iou(tr.box, det.box) > iou(pred, det.box):
            # It turned or stopped: the prediction ran on without it. Start again from where it
            # was last seen, with no velocity to carry on.
            pred, tr.velocity = tr.box, (0.0, 0.0)
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
