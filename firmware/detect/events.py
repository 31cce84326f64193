"""Events from tracks: presence, loitering, gathering, person down; and motion at night.

The rule engine decides zones, schedules, ``min_duration_s`` and ``min_count``; this module says
what is happening in the image, from confirmed tracks (``firmware.detect.tracker``) and motion
blobs (``firmware.detect.motion``):

- presence: one ``person`` or ``vehicle`` event per such track (animals raise none of their own);
- loitering: a person inside one armed zone (of its sensor) for ``dwell_s`` without leaving it;
- gathering: ``min_persons`` persons whose bottom centres are linked within ``distance_heights``
  median person heights (scale-free: near and far groups alike), held for ``hold_s``; one event
  per group, at its centroid;
- person down: a person lying (the model's lying score, or a box ``aspect_ratio`` wider than tall)
  and nearly still (bottom centre within ``max_motion`` of its box's larger side) for ``after_s``;
  a sitting person's box is shorter than a standing one's but not wider than tall;
- motion_night: each persistent motion blob.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence

import shapely
from shapely.geometry import Polygon

from firmware.config.site import SiteConfig
from firmware.detect.motion import MotionBlob
from firmware.detect.tracker import Track
from firmware.rules.engine import Event

logger = logging.getLogger(__name__)

PRESENCE = {"person": "person", "vehicle": "vehicle"}  # class -> event kind
GAP_S = 1.0  # a gathering unseen for longer than this must hold anew


class EventDeriver:
    """Turns each frame's tracks (and motion blobs) into rule events."""

    def __init__(self, site: SiteConfig) -> None:
        self.config = site.detection
        self.zones: dict[str, tuple[str, Polygon]] = {
            name: (z.sensor, Polygon(z.polygon)) for name, z in site.zones.items() if z.armed
        }
        for _, poly in self.zones.values():
            shapely.prepare(poly)  # many points are tested against each zone, every frame
        self._entered: dict[tuple[int, str], float] = {}  # (track, zone) -> since when inside
        self._down_since: dict[int, float] = {}
        self._gathering: dict[str, tuple[float, float]] = {}  # sensor -> (first_t, last_t)

    def derive(
        self,
        t: float,
        frame_index: int,
        tracks: Sequence[Track],
        motion: Sequence[MotionBlob] = (),
        motion_sensor: str = "thermal",
    ) -> list[Event]:
        """Events for one frame at ``t`` from its confirmed tracks and motion blobs."""
        events: list[Event] = []
        for tr in tracks:
            kind = PRESENCE.get(tr.cls)
            if kind is not None:
                events.append(self._event(kind, t, frame_index, tr))
        persons = [tr for tr in tracks if tr.cls == "person"]
        events += self._loitering(t, frame_index, persons)
        events += self._person_down(t, frame_index, persons)
        events += self._gatherings(t, frame_index, persons)
        for blob in motion:
            events.append(
                Event(
                    "motion_night",
                    t,
                    blob.bottom_centre,
                    sensor=motion_sensor,
                    object_id=blob.blob_id,
                    frame_index=frame_index,
                    box=blob.box,
                )
            )
        return events

    @staticmethod
    def _event(kind: str, t: float, frame_index: int, tr: Track) -> Event:
        return Event(
            kind,
            t,
            tr.bottom_centre,
            sensor=tr.sensor,
            cls=tr.cls,
            object_id=tr.track_id,
            frame_index=frame_index,
            box=tr.int_box(),
        )

    def _loitering(self, t: float, frame_index: int, persons: list[Track]) -> list[Event]:
        dwell = self.config.loitering.dwell_s
        events: list[Event] = []
        inside: set[tuple[int, str]] = set()
        if not persons:
            self._entered = {}
            return events
        # Every person's point against each zone at once; a point intersects a polygon exactly
        # when the polygon covers it (inside or on its edge).
        us = [tr.bottom_centre[0] for tr in persons]
        vs = [tr.bottom_centre[1] for tr in persons]
        covers = {
            name: shapely.intersects_xy(poly, us, vs).tolist()
            for name, (_, poly) in self.zones.items()
        }
        for k, tr in enumerate(persons):
            for name, (sensor, _) in self.zones.items():
                if sensor != tr.sensor or not covers[name][k]:
                    continue
                key = (tr.track_id, name)
                inside.add(key)
                since = self._entered.setdefault(key, t)
                if t - since >= dwell:
                    events.append(self._event("loitering", t, frame_index, tr))
                    break  # one event per track: the engine finds every zone of its point
        self._entered = {k: v for k, v in self._entered.items() if k in inside}
        return events

    def _lying(self, tr: Track) -> bool:
        cfg = self.config.person_down
        if tr.lying is not None:
            return tr.lying >= cfg.lying_threshold
        return tr.width >= cfg.aspect_ratio * max(tr.height, 1e-6)

    def _person_down(self, t: float, frame_index: int, persons: list[Track]) -> list[Event]:
        cfg = self.config.person_down
        events = []
        down: dict[int, float] = {}
        for tr in persons:
            if not self._lying(tr):
                continue
            since = self._down_since.get(tr.track_id, t)
            # Still: since it went down, the bottom centre stayed near where it is now.
            if tr.displacement_since(since) > cfg.max_motion * max(tr.width, tr.height):
                since = t
            down[tr.track_id] = since
            if t - since >= cfg.after_s:
                events.append(self._event("person_down", t, frame_index, tr))
        self._down_since = down
        return events

    def _gatherings(self, t: float, frame_index: int, persons: list[Track]) -> list[Event]:
        cfg = self.config.gathering
        events = []
        for sensor in sorted({tr.sensor for tr in persons} | set(self._gathering)):
            group = [tr for tr in persons if tr.sensor == sensor]
            clusters = [
                c for c in _clusters(group, cfg.distance_heights) if len(c) >= cfg.min_persons
            ]
            if not clusters:
                held = self._gathering.get(sensor)
                if held is not None and t - held[1] > GAP_S:
                    del self._gathering[sensor]
                continue
            first, _ = self._gathering.get(sensor, (t, t))
            self._gathering[sensor] = (first, t)
            if t - first < cfg.hold_s:
                continue
            for cluster in clusters:
                us = [tr.bottom_centre[0] for tr in cluster]
                vs = [tr.bottom_centre[1] for tr in cluster]
                boxes = [tr.int_box() for tr in cluster]
                box = (
                    min(b[0] for b in boxes),
                    min(b[1] for b in boxes),
                    max(b[2] for b in boxes),
                    max(b[3] for b in boxes),
                )
                events.append(
                    Event(
                        "gathering",
                        t,
                        (sum(us) / len(us), sum(vs) / len(vs)),
                        sensor=sensor,
                        cls="person",
                        object_id=min(tr.track_id for tr in cluster),
                        frame_index=frame_index,
                        box=box,
                    )
                )
        return events


def _clusters(persons: list[Track], distance_heights: float) -> list[list[Track]]:
    """Groups of persons linked pairwise closer than ``distance_heights`` median heights."""
    if not persons:
        return []
    reach = distance_heights * statistics.median(tr.height for tr in persons)
    parent = list(range(len(persons)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    points = [tr.bottom_centre for tr in persons]
    for i, (au, av) in enumerate(points):
        for j in range(i + 1, len(points)):
            bu, bv = points[j]
            if math.hypot(au - bu, av - bv) <= reach:
                parent[root(i)] = root(j)
    groups: dict[int, list[Track]] = {}
    for i, tr in enumerate(persons):
        groups.setdefault(root(i), []).append(tr)
    return list(groups.values())
