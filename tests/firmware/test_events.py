"""Events from tracks and motion: presence, loitering, gathering, person down, motion at night."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.config.site import (
    DetectionConfig,
    GatheringDetection,
    LoiteringDetection,
    MotionDetection,
    PersonDownDetection,
    ReceiverEndpoint,
    SiteConfig,
    TrackerConfig,
    UnitInfo,
    Zone,
)
from firmware.detect.base import Detection
from firmware.detect.events import EventDeriver
from firmware.detect.motion import MotionDetector, _median, _percentiles
from firmware.detect.tracker import Tracker
from firmware.hal.base import ThermalFrame

FPS = 9.0


def site(**detection: object) -> SiteConfig:
    return SiteConfig(
        unit=UnitInfo(id="pole-1"),
        receiver=ReceiverEndpoint(host="127.0.0.1"),
        detection=DetectionConfig(**detection),  # type: ignore[arg-type]
        zones={
            "bench": Zone(polygon=[[0.0, 60.0], [80.0, 60.0], [80.0, 120.0], [0.0, 120.0]]),
            "road": Zone(polygon=[[80.0, 60.0], [160.0, 60.0], [160.0, 120.0], [80.0, 120.0]]),
        },
    )


def standing(u: float, v: float, h: float = 30.0, **kw: object) -> Detection:
    return Detection("person", 0.9, (u - h / 6, v - h, u + h / 6, v), **kw)  # type: ignore[arg-type]


def sitting(u: float, v: float, h: float = 30.0) -> Detection:
    return Detection("person", 0.9, (u - h / 5, v - 0.6 * h, u + h / 5, v))


def lying(u: float, v: float, h: float = 30.0, score: float | None = None) -> Detection:
    return Detection("person", 0.9, (u - h / 2, v - h / 5, u + h / 2, v), lying=score)


def run(deriver: EventDeriver, frames: list[list[Detection]], start: int = 0) -> list[list[str]]:
    """Per frame: the kinds of events derived (tracker with default config)."""
    tracker = getattr(deriver, "_test_tracker", None) or Tracker(TrackerConfig())
    deriver._test_tracker = tracker  # type: ignore[attr-defined]
    out = []
    for i, dets in enumerate(frames, start):
        tracks = tracker.update(i / FPS, dets)
        out.append([e.kind for e in deriver.derive(i / FPS, i, tracks)])
    return out


def first(kinds: list[list[str]], kind: str) -> float | None:
    return next((i / FPS for i, ks in enumerate(kinds) if kind in ks), None)


def test_presence_events_carry_class_track_and_box() -> None:
    deriver = EventDeriver(site())
    tracker = Tracker(TrackerConfig(confirm_hits=2))
    dets = [
        standing(40, 100),
        Detection("vehicle", 0.8, (100, 70, 140, 100)),
        Detection("animal", 0.7, (10, 110, 16, 116)),
    ]
    tracker.update(0.0, dets)
    events = deriver.derive(0.1, 2, tracker.update(0.1, dets))
    assert sorted((e.kind, e.cls) for e in events) == [("person", "person"), ("vehicle", "vehicle")]
    ev = next(e for e in events if e.kind == "person")
    assert ev.point == pytest.approx((40.0, 100.0))
    assert ev.frame_index == 2 and ev.sensor == "thermal" and ev.object_id > 0
    assert ev.box == (35, 70, 45, 100)


def test_loitering_after_dwell_in_one_zone_only() -> None:
    deriver = EventDeriver(site(loitering=LoiteringDetection(dwell_s=30.0)))
    kinds = run(deriver, [[standing(40 + (i % 20) * 0.5, 100)] for i in range(int(40 * FPS))])
    t = first(kinds, "loitering")
    assert t is not None and 30.0 <= t <= 31.0
    # Walking from one zone into the other restarts the dwell.
    deriver = EventDeriver(site(loitering=LoiteringDetection(dwell_s=30.0)))
    path = [[standing(10 + i * 0.4, 100)] for i in range(int(40 * FPS))]  # crosses u=80 at ~19 s
    assert first(run(deriver, path), "loitering") is None  # 19 s in one, 21 s in the other


def group(n: int, t_index: int, spacing: float = 12.0, h: float = 30.0) -> list[Detection]:
    # n persons standing in a loose group, swaying a little
    return [
        standing(30 + spacing * k + (t_index % 5) * 0.3, 100 + (k % 2) * 4, h=h) for k in range(n)
    ]


def test_six_persons_gathering_raise_one_event_and_two_do_not() -> None:
    cfg = GatheringDetection(min_persons=5, hold_s=10.0)
    deriver = EventDeriver(site(gathering=cfg))
    kinds = run(deriver, [group(6, i) for i in range(int(15 * FPS))])
    t = first(kinds, "gathering")
    assert t is not None and 10.0 <= t <= 11.0
    assert all(ks.count("gathering") <= 1 for ks in kinds)
    deriver = EventDeriver(site(gathering=cfg))
    assert first(run(deriver, [group(2, i) for i in range(int(30 * FPS))]), "gathering") is None


def test_six_persons_spread_out_are_no_gathering() -> None:
    deriver = EventDeriver(site(gathering=GatheringDetection(min_persons=5, hold_s=5.0)))
    kinds = run(deriver, [group(6, i, spacing=25.0, h=15.0) for i in range(int(10 * FPS))])
    assert first(kinds, "gathering") is None


def test_gathering_is_scale_free_far_away_small_persons_count() -> None:
    deriver = EventDeriver(site(gathering=GatheringDetection(min_persons=5, hold_s=5.0)))
    far = [[standing(40 + 4.0 * k, 70, h=10.0) for k in range(6)] for _ in range(int(8 * FPS))]
    assert first(run(deriver, far), "gathering") is not None


DOWN = PersonDownDetection(after_s=10.0)


@pytest.mark.parametrize("score", [None, 0.95])
def test_a_person_lying_still_is_down_after_time(score: float | None) -> None:
    deriver = EventDeriver(site(person_down=DOWN))
    frames = [[standing(60, 100)] for _ in range(int(5 * FPS))]
    frames += [[lying(60 + (i % 3) * 0.3, 100, score=score)] for i in range(int(15 * FPS))]
    kinds = run(deriver, frames)
    t = first(kinds, "person_down")
    assert t is not None and 15.0 <= t <= 16.5


def test_a_sitting_person_is_not_down() -> None:
    deriver = EventDeriver(site(person_down=DOWN))
    frames = [[standing(60, 100)] for _ in range(int(5 * FPS))]
    frames += [[sitting(60, 100)] for _ in range(int(60 * FPS))]
    assert first(run(deriver, frames), "person_down") is None


def test_a_sitting_person_with_a_low_lying_score_is_not_down() -> None:
    deriver = EventDeriver(site(person_down=DOWN))
    frames = [
        [Detection("person", 0.9, (50, 90, 70, 100), lying=0.1)] for _ in range(int(30 * FPS))
    ]
    assert first(run(deriver, frames), "person_down") is None


def test_a_person_lying_but_moving_is_not_down() -> None:
    deriver = EventDeriver(site(person_down=DOWN))
    # Rolling / crawling along: 6 px/s, a box 30 px wide.
    frames = [[lying(30 + i * 6 / FPS, 100)] for i in range(int(30 * FPS))]
    assert first(run(deriver, frames), "person_down") is None


def thermal_scene(t: float, rng: np.random.Generator, walker_u: float | None) -> ThermalFrame:
    ys = np.arange(120)[:, None] * np.ones((1, 160))
    temps = np.where(ys < 30, -20.0, 2.0 + ys / 60.0) + rng.normal(0, 0.05, (120, 160))
    if walker_u is not None:
        u = int(walker_u)
        temps[70:100, u : u + 8] = 28.0
    data = np.round((temps + 273.15) * 100).astype(np.uint16)
    return ThermalFrame(int(t * FPS), t, data, True)


@pytest.mark.parametrize("raw", [False, True])
def test_motion_detector_sees_a_walker_and_not_noise(raw: bool) -> None:
    det = MotionDetector(MotionDetection())
    deriver = EventDeriver(site())
    rng = np.random.default_rng(5)
    seen_quiet: list[bool] = []
    seen_walk: list[bool] = []
    prev: ThermalFrame | None = None
    for i in range(int(60 * FPS)):
        t = i / FPS
        walker = 10 + (t - 30) * 20 if 30 <= t < 36 else None
        frame = thermal_scene(t, rng, walker)
        if raw:  # raw counts with an arbitrary offset and gain
            counts = 7000 + (frame.data.astype(np.float64) - 27315) * 0.6
            frame = ThermalFrame(frame.index, t, np.rint(counts).astype(np.uint16), False)
        if 20.0 <= t < 20.6 and prev is not None:
            frame = ThermalFrame(frame.index, t, prev.data, frame.radiometric)  # FFC pause
        prev = frame
        blobs = det.process(frame)
        events = deriver.derive(t, frame.index, [], motion=blobs)
        assert all(e.kind == "motion_night" for e in events)
        (seen_walk if walker is not None else seen_quiet).append(bool(events))
    assert not any(seen_quiet[: int(30 * FPS)])
    assert sum(seen_walk) >= 0.8 * len(seen_walk)


def test_motion_statistics_are_numpys() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 1200, 19200):
        values = np.round(rng.normal(0.0, 5.0, n)).astype(np.float32)  # ties, as on raw counts
        assert _median(values.copy()) == float(np.median(values))
        expected = np.percentile(values, [1, 99])
        assert _percentiles(values.copy(), 1, 99) == pytest.approx(tuple(expected), rel=1e-6)
