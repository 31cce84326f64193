"""The rule engine: schedules, minimum duration and count, arming, test mode, what alarms record."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from firmware.clock import SimClock
from firmware.config.board import OutputSim
from firmware.config.site import SiteConfig
from firmware.detect.fire import HotSpot
from firmware.hal.base import Output, ThermalFrame
from firmware.hal.registry import HalContext
from firmware.hal.sim import SimOutput
from firmware.rules.deterrence import Deterrence
from firmware.rules.engine import Event, RuleEngine, fire_events
from firmware.uplink import protocol

STOCKHOLM = zoneinfo.ZoneInfo("Europe/Stockholm")
FRAME_S = 0.25


def local(text: str) -> float:
    naive = dt.datetime.strptime(text, "%Y-%m-%d %H:%M")
    return naive.replace(tzinfo=STOCKHOLM).timestamp()


def site(**rule: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "unit": {"id": "pole-9", "latitude": 59.37, "longitude": 16.51},
            "receiver": {"host": "127.0.0.1"},
            "detection": {"fire": {"clear_after_s": 5}},
            "zones": {
                "lot": {"polygon": [[0, 30], [160, 30], [160, 120], [0, 120]]},
                "kiosk": {"polygon": [[100, 60], [160, 60], [160, 120], [100, 120]]},
                "roof": {"polygon": [[0, 0], [160, 0], [160, 29], [0, 29]], "armed": False},
            },
            "schedules": {
                "night": {"windows": [{"start": "22:00", "end": "05:00"}]},
                "quiet": {"windows": [{"start": "23:00", "end": "06:00"}]},
            },
            "deterrence": {
                "quiet_hours": "quiet",
                "limits": {"floodlight": {"max_on_s": 120}, "siren": {"max_on_s": 60}},
                "profiles": {"fire": {"steps": [{"output": "floodlight"}, {"output": "siren"}]}},
            },
            "rules": [
                {
                    "name": "fire-in-lot",
                    "event": "fire",
                    "zones": ["lot"],
                    "priority": 1,
                    "profile": "fire",
                    **rule,
                }
            ],
        }
    )


class Unit:
    """A rule engine with sim outputs and an outbox that keeps the messages."""

    def __init__(self, cfg: SiteConfig, start: float) -> None:
        self.clock = SimClock(start, speed=0)
        ctx = HalContext(clock=self.clock)
        self.outputs = {
            n: SimOutput(n, OutputSim(backend="sim", kind=k), ctx)  # type: ignore[arg-type]
            for n, k in (("floodlight", "light"), ("siren", "siren"))
        }
        self.deterrence = Deterrence(dict[str, Output](self.outputs), cfg.deterrence, self.clock)
        self.sent: list[protocol.Alarm] = []
        self.ids = iter(range(1, 1000))
        self.engine = RuleEngine(cfg, self.deterrence, self.commit, lambda: next(self.ids))
        self.deterrence.start_failsafe()
        self.index = 0

    def commit(self, build: Any, priority: int, ref: str) -> int:
        msg = build(len(self.sent) + 1)
        protocol.decode(protocol.encode(msg), "pole-9")  # every message is valid on the wire
        self.sent.append(msg)
        return len(self.sent)

    def frames(self, seconds: float, spots: list[HotSpot]) -> None:
        for _ in range(round(seconds / FRAME_S)):
            t = self.clock.advance(FRAME_S)
            self.index += 1
            frame = ThermalFrame(self.index, t, np.zeros((120, 160), np.uint16), True)
            self.engine.on_events(t, fire_events(frame, spots))

    def opened(self) -> list[protocol.Alarm]:
        return [m for m in self.sent if m.phase == protocol.Phase.OPEN]


def spot(spot_id: int = 1, u: int = 60, v: int = 80) -> HotSpot:
    return HotSpot(spot_id, (u, v - 10, u + 10, v), 40, 300.0, 0.0, 9, True)


@pytest.fixture
def units() -> Iterator[list[Unit]]:
    made: list[Unit] = []
    yield made
    for unit in made:
        unit.deterrence.stop()


def make(units: list[Unit], cfg: SiteConfig, start: str) -> Unit:
    unit = Unit(cfg, local(start))
    units.append(unit)
    return unit


def test_fire_opens_an_alarm_deters_and_closes(units: list[Unit]) -> None:
    unit = make(units, site(), "2026-11-24 20:00")
    unit.frames(2, [spot()])
    (alarm,) = unit.opened()
    assert (alarm.zone, alarm.rule, alarm.priority, alarm.test) == ("lot", "fire-in-lot", 1, False)
    assert alarm.actions == (("floodlight", 120), ("siren", 60)) and alarm.suppressed == ()
    assert unit.outputs["floodlight"].is_on and unit.outputs["siren"].is_on
    unit.frames(6, [])
    assert [m.phase for m in unit.sent] == [protocol.Phase.OPEN, protocol.Phase.CLOSE]


def test_a_spot_outside_armed_zones_raises_nothing(units: list[Unit]) -> None:
    unit = make(units, site(), "2026-11-24 20:00")
    unit.frames(2, [spot(v=20)])  # on the roof: a zone, but not armed
    assert unit.sent == []


def test_a_rule_with_a_schedule_matches_only_inside_it(units: list[Unit]) -> None:
    unit = make(units, site(schedule="night"), "2026-03-28 21:58")
    unit.frames(60, [spot()])  # 21:58-21:59 local: outside the window
    assert unit.opened() == []
    unit.frames(90, [spot()])  # past 22:00 CET
    (alarm,) = unit.opened()
    assert alarm.time_s >= local("2026-03-28 22:00")


def test_quiet_hours_suppress_the_siren_and_the_alarm_says_so(units: list[Unit]) -> None:
    unit = make(units, site(), "2026-11-24 23:30")
    unit.frames(1, [spot()])
    (alarm,) = unit.opened()
    assert alarm.actions == (("floodlight", 120),)
    assert alarm.suppressed == (("siren", "quiet hours (quiet)"),)
    unit.frames(60, [spot()])
    assert unit.outputs["floodlight"].history.snapshot()[0].what == "on"
    assert unit.outputs["siren"].history.snapshot() == []


def test_minimum_duration_and_count(units: list[Unit]) -> None:
    unit = make(units, site(min_duration_s=3), "2026-11-24 20:00")
    unit.frames(2, [spot()])
    unit.frames(2, [])  # a gap longer than a second: the duration starts again
    unit.frames(2.5, [spot()])
    assert unit.opened() == []
    unit.frames(1, [spot()])
    (alarm,) = unit.opened()
    first_seen = local("2026-11-24 20:00") + 4 + FRAME_S
    assert alarm.time_s == pytest.approx(first_seen + 3, abs=1)

    pair = make(units, site(min_count=2), "2026-11-24 20:00")
    pair.frames(2, [spot(1)])
    assert pair.opened() == []
    pair.frames(1, [spot(1), spot(2, u=20)])
    assert len(pair.opened()) == 1


def test_disarmed_nothing_opens_and_armed_again_it_does(units: list[Unit]) -> None:
    unit = make(units, site(), "2026-11-24 20:00")
    unit.engine.set_armed(False)
    unit.frames(3, [spot()])
    assert unit.sent == [] and not unit.outputs["floodlight"].is_on
    unit.engine.set_armed(True)
    unit.frames(1, [spot()])
    assert len(unit.opened()) == 1


def test_test_mode_raises_test_alarms_and_switches_nothing(units: list[Unit]) -> None:
    unit = make(units, site(), "2026-11-24 20:00")
    unit.engine.set_test_mode(True)
    unit.frames(2, [spot()])
    (alarm,) = unit.opened()
    assert alarm.test and alarm.actions == (("floodlight", 120), ("siren", 60))
    assert [(a.output, a.seconds) for a in unit.engine.actions[alarm.ref]] == [
        ("floodlight", 120),
        ("siren", 60),
    ]
    unit.frames(5, [])
    assert all(out.history.snapshot() == [] for out in unit.outputs.values())
    assert unit.deterrence.trigger("fire", "pole-9/operator")[0].suppressed == (
        "test mode: not switched"
    )


def test_overlapping_zones_each_count(units: list[Unit]) -> None:
    cfg = site(zones=["lot", "kiosk"])
    unit = make(units, cfg, "2026-11-24 20:00")
    unit.frames(1, [spot(u=120, v=100)])  # in the lot and at the kiosk
    assert sorted(a.zone for a in unit.opened()) == ["kiosk", "lot"]
    kiosk = next(a for a in unit.opened() if a.zone == "kiosk")
    assert kiosk.suppressed == (
        ("floodlight", "already on for pole-9/1"),
        ("siren", "already on for pole-9/1"),
    )


def test_events_from_later_detectors_match_by_class(units: list[Unit]) -> None:
    cfg = site(event="person", classes=["person"], profile=None)
    unit = make(units, cfg, "2026-11-24 20:00")
    t = unit.clock.now()
    unit.engine.on_events(t, [Event("person", t, (50, 90), cls="bicycle")])
    assert unit.sent == []
    unit.engine.on_events(t, [Event("person", t, (50, 90), cls="person", box=(45, 60, 55, 89))])
    (alarm,) = unit.opened()
    assert alarm.event == protocol.EventKind.PERSON and alarm.actions == ()
