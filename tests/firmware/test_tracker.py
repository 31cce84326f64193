"""The multi-object tracker: ids, lifecycle, class vote, smoothing, association."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware.config.site import TrackerConfig
from firmware.detect.base import Detection
from firmware.detect.tracker import Track, Tracker, iou

FPS = 9.0


def person(u: float, v: float, h: float = 30.0, cls: str = "person", **kw: object) -> Detection:
    return Detection(cls, 0.9, (u - h / 6, v - h, u + h / 6, v), **kw)  # type: ignore[arg-type]


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 0, 30, 10)) == 0.0


def test_a_track_is_confirmed_after_n_hits_and_keeps_its_id_while_walking() -> None:
    tracker = Tracker(TrackerConfig(confirm_hits=3))
    ids = set()
    for i in range(60):
        confirmed = tracker.update(i / FPS, [person(20 + 3 * i, 80)])  # 27 px/s
        if i < 2:
            assert confirmed == []
        else:
            [tr] = confirmed
            ids.add(tr.track_id)
            assert tr.state == "confirmed"
    assert len(ids) == 1
    assert tr.bottom_centre[0] == pytest.approx(20 + 3 * 59, abs=2.0)


def test_two_crossing_walkers_keep_their_ids() -> None:
    tracker = Tracker(TrackerConfig())
    for i in range(40):
        a, b = person(20 + 3 * i, 80), person(140 - 3 * i, 84)
        tracks = tracker.update(i / FPS, [a, b])
        if i == 5:
            start = {tr.track_id: tr.bottom_centre[0] < 80 for tr in tracks}
    end = {tr.track_id: tr.bottom_centre[0] > 80 for tr in tracks}
    assert start == end  # the one that started on the left ended on the right


def test_short_misses_are_bridged_and_long_ones_lose_the_track() -> None:
    tracker = Tracker(TrackerConfig(max_missed_s=2.0))
    for i in range(10):
        [tr] = tracker.update(i / FPS, [person(50, 80)]) or [None]  # type: ignore[list-item]
    first = tr.track_id
    for i in range(10, 19):  # one second unseen: still there
        assert [t.track_id for t in tracker.update(i / FPS, [])] == [first]
    for i in range(19, 19 + 9):
        tracker.update(i / FPS, [person(50, 80)])
    assert [t.track_id for t in tracker.tracks] == [first]
    t = 28 / FPS
    while tracker.tracks:
        t += 1 / FPS
        tracker.update(t, [])
    assert tracker.deleted == [first] and tr.state == "lost"
    assert t - 27 / FPS > 2.0
    new = None
    for i in range(3):
        new = tracker.update(t + (i + 1) / FPS, [person(50, 80)])
    assert new and new[0].track_id != first


def test_a_single_false_detection_never_confirms() -> None:
    tracker = Tracker(TrackerConfig(confirm_hits=3))
    assert tracker.update(0.0, [person(50, 80)]) == []
    for i in range(1, 20):
        assert tracker.update(i / FPS, []) == []
    assert tracker.tracks == []


def test_class_is_the_majority_vote_and_lying_is_smoothed() -> None:
    tracker = Tracker(TrackerConfig(smoothing=0.5))
    for i in range(10):
        cls = "animal" if i % 4 == 0 else "person"
        tracks = tracker.update(i / FPS, [person(50, 80, cls=cls, lying=1.0 if i >= 5 else 0.0)])
    [tr] = tracks
    assert tr.cls == "person"
    assert 0.9 < tr.lying < 1.0  # type: ignore[operator]


def test_a_person_in_front_of_a_parked_car_is_a_track_of_its_own() -> None:
    """The model stops seeing a parked car when a person stands in front of it: the person's
    box, unlike the car's, must not inherit the car's track and its minute of vehicle votes."""
    tracker = Tracker(TrackerConfig())
    car = Detection("vehicle", 0.8, (40.0, 50.0, 64.0, 62.0), "thermal")
    for i in range(int(60 * FPS)):
        tracks = tracker.update(i / FPS, [car])
    [parked] = tracks
    for i in range(int(5 * FPS)):
        tracks = tracker.update(60 + i / FPS, [person(50, 63, h=19)])
    [tr] = tracks
    assert tr.cls == "person" and tr.track_id != parked.track_id
    assert parked.state == "lost"
    # A box of the same size as the track's, called another class now and then, stays in it.
    tracker = Tracker(TrackerConfig())
    for i in range(30):
        cls = "animal" if i % 5 == 4 else "person"
        tracks = tracker.update(i / FPS, [person(50 + i * 0.2, 80, cls=cls)])
    [tr] = tracks
    assert tr.cls == "person" and tr.track_id == 1 and tr.hits == 30


def test_sensors_are_tracked_apart() -> None:
    tracker = Tracker(TrackerConfig(confirm_hits=1))
    tracks = tracker.update(
        0.0, [person(50, 80), Detection("person", 0.8, (40, 50, 60, 80), "visible")]
    )
    assert {tr.sensor for tr in tracks} == {"thermal", "visible"}
    assert len({tr.track_id for tr in tracks}) == 2


def test_small_fast_objects_at_mlx_resolution_join_by_centre_distance() -> None:
    tracker = Tracker(TrackerConfig())
    ids = set()
    for i in range(20):  # a 2x4 px person at 32x24 moving 1.5 px per frame: boxes never overlap
        ids |= {
            tr.track_id
            for tr in tracker.update(
                i / 4, [Detection("person", 0.9, (1.5 * i, 10, 1.5 * i + 1.2, 14))]
            )
        }
    assert len(ids) == 1


def test_history_records_bottom_centres_with_times() -> None:
    tracker = Tracker(TrackerConfig(history_s=1.0, confirm_hits=1))
    for i in range(30):
        [tr] = tracker.update(i / FPS, [person(50 + i, 80)])
    assert tr.history[-1][0] == pytest.approx(29 / FPS)
    assert tr.history[0][0] >= 29 / FPS - 1.0
    assert tr.displacement_since(29 / FPS - 0.5) == pytest.approx(4.5, abs=1.5)


def test_a_person_detected_in_two_halves_for_a_frame_keeps_their_track() -> None:
    tracker = Tracker(TrackerConfig(confirm_hits=3))
    ids = set()
    for i in range(40):
        u = 40 + 0.5 * i
        if i == 20:  # the model splits them: upper body and legs, as two boxes
            dets = [
                Detection("person", 0.5, (u - 3, 58, u + 2, 75)),
                Detection("person", 0.5, (u - 3, 65, u + 3, 80)),
            ]
        elif 20 < i < 25:  # then sees a shorter box, more like the legs' one
            dets = [Detection("person", 0.7, (u - 3, 65, u + 3, 81))]
        else:
            dets = [person(u, 82, 24)]
        ids |= {tr.track_id for tr in tracker.update(i / FPS, dets)}
    assert len(ids) == 1


def test_a_walker_who_turns_back_keeps_their_track() -> None:
    tracker = Tracker(TrackerConfig(confirm_hits=3))
    ids = set()
    path = [60 + 4 * i for i in range(15)] + [116 - 4 * i for i in range(15)]
    for i, u in enumerate(path):
        # Unseen for four frames while turning: the prediction runs on without them.
        dets = [] if i in (13, 14, 15, 16) else [person(u, 80, 12)]
        ids |= {tr.track_id for tr in tracker.update(i / FPS, dets)}
    assert len(ids) == 1


def _costs_pair_by_pair(
    config: TrackerConfig, t: float, tracks: list[Track], dets: list[Detection]
) -> np.ndarray:
    """The association cost written out plainly, pair by pair and reference by reference."""
    cost = np.full((len(tracks), len(dets)), 1.0e6)
    for i, tr in enumerate(tracks):
        for ref in (tr.predicted(t), tr.box):
            rw, rh = ref[2] - ref[0], ref[3] - ref[1]
            diag = max(math.hypot(rw, rh), 1e-6)
            for j, d in enumerate(dets):
                w, h = d.box[2] - d.box[0], d.box[3] - d.box[1]
                wr, hr = max(rw, 1e-6), max(rh, 1e-6)
                alike = wr / 2 <= w <= wr * 2 and hr / 2 <= h <= hr * 2
                if d.cls != tr.cls and not alike:
                    continue
                overlap = iou(ref, d.box)
                if overlap >= config.min_iou and overlap > 0:
                    c = 1.0 - overlap
                else:
                    dx = (d.box[0] + d.box[2]) / 2 - (ref[0] + ref[2]) / 2
                    dy = (d.box[1] + d.box[3]) / 2 - (ref[1] + ref[3]) / 2
                    dist = math.hypot(dx, dy) / diag
                    if dist > config.max_centre_dist:
                        continue
                    c = 1.0 + dist
                cost[i, j] = min(cost[i, j], c + (0.5 if d.cls != tr.cls else 0.0))
    return cost


@pytest.mark.parametrize("seed", range(5))
def test_association_costs_are_the_plain_rules(seed: int) -> None:
    """Costs for every pair at once equal the rules applied pair by pair (classes, sizes, moving
    and still tracks, boxes that touch, overlap a little, or lie apart)."""
    rng = np.random.default_rng(seed)
    config = TrackerConfig()
    tracker = Tracker(config)
    classes = ["person", "vehicle", "animal"]

    def box() -> tuple[float, float, float, float]:
        x, y = rng.uniform(0, 150), rng.uniform(0, 110)
        w, h = rng.choice([2.0, 5.0, 12.0, 30.0]), rng.choice([3.0, 8.0, 20.0, 40.0])
        return (x, y, x + w * rng.uniform(0.5, 1.5), y + h * rng.uniform(0.5, 1.5))

    tracks = []
    for k in range(12):
        tr = Track(k + 1, "thermal", box(), 0.0, 1.0)
        tr.votes[classes[k % 3]] += 1
        if k % 2:
            tr.velocity = (float(rng.uniform(-20, 20)), float(rng.uniform(-10, 10)))
        tracks.append(tr)
    dets = [Detection(classes[int(rng.integers(3))], 0.8, box()) for _ in range(10)]
    # Detections near the tracks, so that overlaps and near misses come up as well as far pairs.
    for tr in tracks[:8]:
        x0, y0, x1, y1 = tr.box
        shift = rng.uniform(-0.6, 0.6, 2) * (x1 - x0, y1 - y0)
        cls = tr.cls if rng.random() < 0.7 else classes[int(rng.integers(3))]
        dets.append(
            Detection(cls, 0.8, (x0 + shift[0], y0 + shift[1], x1 + shift[0], y1 + shift[1]))
        )
    got = tracker.costs(1.2, tracks, dets)
    want = _costs_pair_by_pair(config, 1.2, tracks, dets)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    near = (want >= 1.0) & (want < 1.0e6)
    assert (want < 1.0).sum() >= 3 and near.sum() >= 1 and (want >= 1.0e6).sum() >= 3
