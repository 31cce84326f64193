"""Deterrence: outputs on by profile, off at max on-time by the failsafe, cool-down respected."""

from __future__ import annotations

import time

from firmware.clock import SimClock
from firmware.config.board import OutputSim
from firmware.config.site import DeterrenceConfig, OutputLimits, Profile, ProfileStep
from firmware.hal.registry import HalContext
from firmware.hal.sim import SimOutput
from firmware.rules.deterrence import Deterrence

CONFIG = DeterrenceConfig(
    limits={
        "floodlight": OutputLimits(max_on_s=120, cooldown_s=60),
        "siren": OutputLimits(max_on_s=60, cooldown_s=300),
    },
    profiles={
        "fire": Profile(
            steps=[ProfileStep(output="floodlight"), ProfileStep(output="siren", at_s=5)]
        )
    },
)


def make(clock: SimClock) -> tuple[Deterrence, dict[str, SimOutput]]:
    ctx = HalContext(clock=clock)
    outs = {
        n: SimOutput(n, OutputSim(backend="sim", kind="light"), ctx)
        for n in ("floodlight", "siren")
    }
    return Deterrence(dict(outs), CONFIG, clock), outs  # type: ignore[arg-type]


def test_profile_steps_and_max_on_time_in_simulated_time() -> None:
    clock = SimClock(start=1000.0, speed=0)
    det, outs = make(clock)
    det.start_failsafe()
    actions = det.activate("fire", CONFIG.profiles["fire"], "u/1")
    assert [(a.output, a.seconds, a.suppressed) for a in actions] == [
        ("floodlight", 120, None),
        ("siren", 60, None),
    ]
    for _ in range(200 * 10):  # 200 s in 0.1 s frames
        clock.advance(0.1)
    det.stop()
    flood = [(e.what, round(e.t - 1000, 1)) for e in outs["floodlight"].history.snapshot()]
    siren = [(e.what, round(e.t - 1000, 1)) for e in outs["siren"].history.snapshot()]
    assert flood == [("on", 0.0), ("off", 120.0)]
    assert siren == [("on", 5.0), ("off", 65.0)]


def test_cooldown_suppresses_and_says_why() -> None:
    clock = SimClock(start=0.0, speed=0)
    det, _ = make(clock)
    det.start_failsafe()
    det.activate("fire", CONFIG.profiles["fire"], "u/1")
    for _ in range(130):
        clock.advance(1.0)
    preview = det.preview(CONFIG.profiles["fire"])
    actions = det.activate("fire", CONFIG.profiles["fire"], "u/2")
    assert preview == actions  # what the alarm's open message announces is what happens
    det.stop()
    assert actions[0].suppressed is not None and "cool-down" in actions[0].suppressed
    assert actions[1].suppressed is None or "cool-down" in actions[1].suppressed


def test_failsafe_thread_switches_off_while_the_caller_is_stuck() -> None:
    clock = SimClock(start=0.0, speed=50.0)  # paced: 1 real second is 50 simulated
    det, outs = make(clock)
    det.start_failsafe()
    det.activate("fire", Profile(steps=[ProfileStep(output="siren")]), "u/1")
    assert outs["siren"].is_on
    time.sleep(1.6)  # nobody calls enforce(): the rule loop "hangs"
    assert not outs["siren"].is_on
    det.stop()


def test_stop_forces_everything_off() -> None:
    clock = SimClock(start=0.0, speed=0)
    det, outs = make(clock)
    det.start_failsafe()
    det.activate("fire", CONFIG.profiles["fire"], "u/1")
    assert outs["floodlight"].is_on
    det.stop()
    assert not any(o.is_on for o in outs.values())
