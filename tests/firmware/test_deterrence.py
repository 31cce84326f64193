"""Deterrence: profile steps in simulated time, every limit, operator overrides, the failsafe."""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware.clock import Clock, SimClock, SystemClock
from firmware.config.board import AudioSim, OutputSim
from firmware.config.site import (
    DeterrenceConfig,
    OutputLimits,
    Profile,
    ProfileStep,
    StrobePattern,
    VoiceLimits,
)
from firmware.errors import ConfigError
from firmware.hal.base import Output
from firmware.hal.registry import HalContext
from firmware.hal.sim import SimAudioPlayer, SimOutput
from firmware.rules.deterrence import Action, Deterrence
from firmware.rules.schedule import Schedule, window_spec

STOCKHOLM = zoneinfo.ZoneInfo("Europe/Stockholm")
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
QUIET = {"quiet": Schedule("quiet", [window_spec(DAYS, "22:00", "07:00")], "Europe/Stockholm")}

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
KINDS = {"floodlight": "light", "strobe": "strobe", "siren": "siren"}


def local(text: str) -> float:
    """Epoch seconds of a Stockholm wall time, ``YYYY-MM-DD HH:MM:SS``."""
    naive = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return naive.replace(tzinfo=STOCKHOLM).timestamp()


def make(
    clock: Clock,
    config: DeterrenceConfig = CONFIG,
    *,
    audio: bool = False,
    quiet: bool = False,
) -> tuple[Deterrence, dict[str, SimOutput], SimAudioPlayer | None]:
    ctx = HalContext(clock=clock)
    outs = {n: SimOutput(n, OutputSim(backend="sim", kind=k), ctx) for n, k in KINDS.items()}  # type: ignore[arg-type]
    player = SimAudioPlayer("audio", AudioSim(backend="sim"), ctx) if audio else None
    det = Deterrence(
        dict[str, Output](outs), config, clock, audio=player, schedules=QUIET if quiet else None
    )
    return det, outs, player


@pytest.fixture
def stopper() -> Iterator[list[Deterrence]]:
    """Deterrences to stop after the test, whatever happens in it."""
    started: list[Deterrence] = []
    yield started
    for det in started:
        det.stop()


def run(clock: SimClock, seconds: float, step: float = 0.1) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def switches(out: SimOutput | SimAudioPlayer, start: float) -> list[tuple[str, float]]:
    return [(e.what, round(e.t - start, 2)) for e in out.history.snapshot()]


def summary(actions: list[Action]) -> list[tuple[str, float, str | None]]:
    return [(a.output, round(a.seconds, 2), a.suppressed) for a in actions]


def test_profile_steps_and_max_on_time_in_simulated_time(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=1000.0, speed=0)
    det, outs, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    actions = det.activate("fire", CONFIG.profiles["fire"], "u/1")
    assert summary(actions) == [("floodlight", 120, None), ("siren", 60, None)]
    run(clock, 200)
    assert switches(outs["floodlight"], 1000) == [("on", 0.0), ("off", 120.0)]
    assert switches(outs["siren"], 1000) == [("on", 5.0), ("off", 65.0)]
    assert switches(outs["strobe"], 1000) == []


def test_cooldown_suppresses_and_says_why(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=0.0, speed=0)
    det, _, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    det.activate("fire", CONFIG.profiles["fire"], "u/1")
    run(clock, 130, 1.0)
    preview = det.preview(CONFIG.profiles["fire"])
    actions = det.activate("fire", CONFIG.profiles["fire"], "u/2")
    assert preview == actions  # what the alarm's open message announces is what happens
    assert actions[0].suppressed == "cool-down: off 10 s ago, 60 s required"
    assert actions[1].suppressed == "cool-down: off 70 s ago, 300 s required"


def test_cooldown_is_per_zone_and_an_operator_counts_for_all(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=0.0, speed=0)
    det, outs, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    short = Profile(steps=[ProfileStep(output="floodlight", for_s=10)])
    det.activate("short", short, "u/1", zone="east")
    run(clock, 20)
    assert det.preview(short, "east")[0].suppressed == "cool-down: off 10 s ago, 60 s required"
    assert det.preview(short)[0].suppressed is not None  # the operator's: every zone counts
    assert summary(det.activate("short", short, "u/2", zone="west")) == [("floodlight", 10, None)]
    run(clock, 15)
    assert switches(outs["floodlight"], 0) == [("on", 0), ("off", 10), ("on", 20), ("off", 30)]


def test_quiet_hours_hold_audible_outputs_and_the_light_still_works(
    stopper: list[Deterrence], make_wav: Callable[..., Path]
) -> None:
    clip = make_wav()
    config = CONFIG.model_copy(
        update={
            "quiet_hours": "quiet",
            "profiles": {
                "escalate": Profile(
                    steps=[
                        ProfileStep(output="floodlight"),
                        ProfileStep(voice=str(clip), at_s=5),
                        ProfileStep(output="siren", at_s=10),
                    ]
                )
            },
        }
    )
    start = local("2026-06-10 23:30:00")
    clock = SimClock(start=start, speed=0)
    det, outs, player = make(clock, config, audio=True, quiet=True)
    stopper.append(det)
    det.start_failsafe()
    actions = det.activate("escalate", config.profiles["escalate"], "u/1")
    assert summary(actions) == [
        ("floodlight", 120, None),
        ("voice", 0, "quiet hours (quiet)"),
        ("siren", 0, "quiet hours (quiet)"),
    ]
    assert summary(det.trigger("escalate", "u/operator"))[1:] == [
        ("voice", 0, "quiet hours (quiet)"),
        ("siren", 0, "quiet hours (quiet)"),
    ]
    run(clock, 200)
    assert switches(outs["floodlight"], start) == [("on", 0), ("off", 120)]
    assert switches(outs["siren"], start) == []
    assert player is not None and switches(player, start) == []


def test_an_audible_step_ends_where_quiet_hours_begin(stopper: list[Deterrence]) -> None:
    config = CONFIG.model_copy(update={"quiet_hours": "quiet"})
    start = local("2026-06-10 21:59:30")
    clock = SimClock(start=start, speed=0)
    det, outs, _ = make(clock, config, quiet=True)
    stopper.append(det)
    det.start_failsafe()
    siren = Profile(steps=[ProfileStep(output="siren")])
    actions = det.activate("siren", siren, "u/1")
    assert summary(actions) == [("siren", 30, None)]
    assert actions[0].limited == "quiet hours (quiet) from 22:00"
    run(clock, 60)
    assert switches(outs["siren"], start) == [("on", 0), ("off", 30)]


def test_quiet_hours_whose_schedule_is_missing_stay_quiet(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=local("2026-06-10 12:00:00"), speed=0)
    det, _, _ = make(clock, CONFIG.model_copy(update={"quiet_hours": "quiet"}))
    stopper.append(det)
    action = det.preview(CONFIG.profiles["fire"])[1]
    assert action.suppressed == "quiet hours: schedule quiet not loaded"


def rolling_hour_max(history: list[tuple[str, float]]) -> float:
    spans, on_at = [], None
    for what, t in history:
        if what == "on":
            on_at = t
        elif on_at is not None:
            spans.append((on_at, t))
            on_at = None
    edges = [s for s, _ in spans] + [e - 3600 for _, e in spans]
    return max(
        (sum(max(0.0, min(e, a + 3600) - max(s, a)) for s, e in spans) for a in edges), default=0
    )


def test_duty_cycle_bounds_on_time_in_any_rolling_hour(stopper: list[Deterrence]) -> None:
    config = DeterrenceConfig(
        limits={"siren": OutputLimits(max_on_s=60, max_s_per_hour=90)},
        profiles={"siren": Profile(steps=[ProfileStep(output="siren")])},
    )
    clock = SimClock(start=0.0, speed=0)
    det, outs, _ = make(clock, config)
    stopper.append(det)
    det.start_failsafe()
    profile = config.profiles["siren"]
    assert summary(det.activate("siren", profile, "u/1")) == [("siren", 60, None)]
    run(clock, 100, 1.0)
    second = det.activate("siren", profile, "u/2")
    assert summary(second) == [("siren", 30, None)]
    assert second[0].limited == "duty cycle: 90 s per hour"
    run(clock, 100, 1.0)
    assert summary(det.activate("siren", profile, "u/3")) == [
        ("siren", 0, "duty cycle: 90 s per hour used")
    ]
    for i in range(40):  # three more hours of alarms every 5 minutes
        run(clock, 300, 1.0)
        det.activate("siren", profile, f"u/{i + 4}")
    history = switches(outs["siren"], 0)
    assert history[:4] == [("on", 0), ("off", 60), ("on", 100), ("off", 130)]
    assert ("on", 3800.0) in history  # the first hour has passed: the budget is back
    assert rolling_hour_max(history) <= 90 + 1e-6


def test_strobe_pattern_flashes_in_simulated_time(stopper: list[Deterrence]) -> None:
    config = DeterrenceConfig(
        limits={"strobe": OutputLimits(max_on_s=30)},
        profiles={
            "flash": Profile(
                steps=[
                    ProfileStep(
                        output="strobe", at_s=1, for_s=2, pattern=StrobePattern(on_s=0.2, off_s=0.3)
                    )
                ]
            )
        },
    )
    clock = SimClock(start=0.0, speed=0)
    det, outs, _ = make(clock, config)
    stopper.append(det)
    det.start_failsafe()
    det.activate("flash", config.profiles["flash"], "u/1")
    run(clock, 5, 0.05)
    expected = []
    for k in range(4):  # 2 s of 0.5 s periods from t = 1
        expected += [("on", 1 + 0.5 * k), ("off", 1.2 + 0.5 * k)]
    assert switches(outs["strobe"], 0) == expected


def test_voice_clip_plays_its_repeats_then_stops(
    stopper: list[Deterrence], make_wav: Callable[..., Path]
) -> None:
    clip = make_wav(seconds=1.0)
    step = ProfileStep(voice=str(clip), at_s=5, repeat=3, gap_s=0.5)
    assert step.voice_s == 4.0
    config = DeterrenceConfig(
        profiles={"talk": Profile(steps=[step])}, voice=VoiceLimits(max_on_s=20)
    )
    clock = SimClock(start=0.0, speed=0)
    det, _, player = make(clock, config, audio=True)
    stopper.append(det)
    det.start_failsafe()
    assert summary(det.activate("talk", config.profiles["talk"], "u/1")) == [("voice", 4, None)]
    run(clock, 15)
    assert player is not None
    assert switches(player, 0) == [("play", 5), ("play", 6.5), ("play", 8), ("stop", 9)]


def test_voice_without_an_audio_player_is_suppressed(make_wav: Callable[..., Path]) -> None:
    clip = make_wav()
    det, _, _ = make(SimClock(0.0, 0))
    profile = Profile(steps=[ProfileStep(voice=str(clip))])
    assert summary(det.preview(profile)) == [("voice", 0, "no audio player on this unit")]


def test_trigger_then_silence_cancels_everything(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=0.0, speed=0)
    det, outs, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    assert summary(det.trigger("fire", "u/operator")) == [
        ("floodlight", 120, None),
        ("siren", 60, None),
    ]
    run(clock, 2)
    assert det.silence("u/operator") == ["floodlight", "siren (pending)"]
    run(clock, 100)
    assert switches(outs["floodlight"], 0) == [("on", 0), ("off", 2)]
    assert switches(outs["siren"], 0) == []  # its step was cancelled
    assert det.silence("u/operator") == []
    with pytest.raises(ConfigError, match="no profile 'panic'"):
        det.trigger("panic", "u/operator")


def test_trigger_respects_cooldown_after_silence(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=0.0, speed=0)
    det, _, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    det.trigger("fire", "u/operator")
    run(clock, 2)
    det.silence("u/operator")
    run(clock, 10)
    again = det.trigger("fire", "u/operator")
    assert summary(again) == [
        ("floodlight", 0, "cool-down: off 10 s ago, 60 s required"),
        ("siren", 60, None),  # it never went on, so it has nothing to cool down from
    ]


def test_test_mode_switches_nothing_and_says_what_it_would(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=0.0, speed=0)
    det, outs, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    det.set_test_mode(True)
    actions = det.trigger("fire", "u/operator")
    assert summary(actions) == [
        ("floodlight", 120, "test mode: not switched"),
        ("siren", 60, "test mode: not switched"),
    ]
    run(clock, 10)
    assert all(switches(out, 0) == [] for out in outs.values())


def test_an_output_fault_is_recorded_and_the_rest_carries_on(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=0.0, speed=0)
    det, outs, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    outs["siren"].fail = True
    det.activate("fire", CONFIG.profiles["fire"], "u/1")
    run(clock, 10)
    assert outs["floodlight"].is_on
    assert det.faults and det.faults[0].startswith("siren: ")
    outs["siren"].fail = False
    run(clock, 200)
    assert not outs["floodlight"].is_on and not outs["siren"].is_on


def test_failsafe_thread_switches_off_while_the_caller_is_stuck(
    stopper: list[Deterrence],
) -> None:
    clock = SimClock(start=0.0, speed=50.0)  # paced: 1 real second is 50 simulated
    det, outs, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    det.activate("fire", Profile(steps=[ProfileStep(output="siren")]), "u/1")
    assert wait_until(lambda: outs["siren"].is_on, 1.0)  # the scheduler thread switches
    time.sleep(1.6)  # nobody calls enforce(): the rule loop "hangs"
    assert not outs["siren"].is_on


FAST = DeterrenceConfig(
    limits={
        "floodlight": OutputLimits(max_on_s=0.6),
        "strobe": OutputLimits(max_on_s=0.8),
        "siren": OutputLimits(max_on_s=1.0),
    },
    profiles={
        "all": Profile(
            steps=[
                ProfileStep(output="floodlight"),
                ProfileStep(output="strobe", pattern=StrobePattern(on_s=0.1, off_s=0.1)),
                ProfileStep(output="siren"),
            ]
        )
    },
)


def wait_until(predicate: Callable[[], bool], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def wait_all_off(outs: dict[str, SimOutput], limit_s: float) -> None:
    wait_until(lambda: not any(o.is_on for o in outs.values()), limit_s)


def assert_off_in_time(outs: dict[str, SimOutput], config: DeterrenceConfig) -> None:
    for name, out in outs.items():
        history = out.history.snapshot()
        assert history, f"{name} never switched"
        assert history[-1].what == "off", f"{name} is still on"
        on_for = history[-1].t - history[0].t
        assert on_for <= config.limits[name].max_on_s + 1.0, f"{name} was on for {on_for:.2f} s"


def test_outputs_go_off_in_time_while_the_rule_loop_hangs_in_the_planner(
    stopper: list[Deterrence],
) -> None:
    det, outs, _ = make(SystemClock(), FAST)
    stopper.append(det)
    det.start_failsafe()
    switched, hang, hung = threading.Event(), threading.Event(), threading.Event()

    def rule_loop() -> None:
        det.activate("all", FAST.profiles["all"], "u/1")
        switched.wait(2)
        with det._plan_lock:  # hung in the middle of planning, holding the planner's lock
            hung.set()
            hang.wait(10)

    loop = threading.Thread(target=rule_loop, daemon=True)
    loop.start()
    try:
        assert wait_until(lambda: all(o.is_on for o in outs.values()), 1.0)
        switched.set()
        assert hung.wait(2)
        wait_all_off(outs, 1.0 + 1.0 + 0.5)
        assert_off_in_time(outs, FAST)
    finally:
        hang.set()
        loop.join(2)


class HangingOutput(SimOutput):
    """A sim output whose driver hangs when switched off while ``hang`` is set (a dead bus)."""

    hang = threading.Event()
    release = threading.Event()

    def set(self, on: bool) -> None:
        if not on and self.hang.is_set():
            self.release.wait(10)
        super().set(on)


def test_a_hung_driver_does_not_keep_the_other_outputs_on(stopper: list[Deterrence]) -> None:
    clock = SystemClock()
    ctx = HalContext(clock=clock)
    outs = {n: SimOutput(n, OutputSim(backend="sim", kind=k), ctx) for n, k in KINDS.items()}  # type: ignore[arg-type]
    stuck = HangingOutput("floodlight", OutputSim(backend="sim", kind="light"), ctx)
    outs["floodlight"] = stuck
    det = Deterrence(dict[str, Output](outs), FAST, clock)
    stopper.append(det)
    det.start_failsafe()
    HangingOutput.hang.set()
    try:
        det.activate("all", FAST.profiles["all"], "u/1")
        assert wait_until(lambda: all(o.is_on for o in outs.values()), 1.0)
        others = {n: o for n, o in outs.items() if n != "floodlight"}
        wait_all_off(others, 1.0 + 1.0 + 0.5)
        assert_off_in_time(others, FAST)
        assert stuck.is_on  # still waiting for its bus
    finally:
        HangingOutput.hang.clear()
        HangingOutput.release.set()
    wait_all_off({"floodlight": stuck}, 1.0)
    assert not stuck.is_on


def test_stop_forces_everything_off() -> None:
    clock = SimClock(start=0.0, speed=0)
    det, outs, _ = make(clock)
    det.start_failsafe()
    det.activate("fire", CONFIG.profiles["fire"], "u/1")
    assert outs["floodlight"].is_on
    det.stop()
    assert not any(o.is_on for o in outs.values())


def test_overlap_with_another_alarm_is_suppressed(stopper: list[Deterrence]) -> None:
    clock = SimClock(start=0.0, speed=0)
    det, _, _ = make(clock)
    stopper.append(det)
    det.start_failsafe()
    det.activate("fire", CONFIG.profiles["fire"], "u/1")
    assert summary(det.activate("fire", CONFIG.profiles["fire"], "u/2")) == [
        ("floodlight", 0, "already on for u/1"),
        ("siren", 0, "already planned for u/1"),
    ]


def test_wav_clip_path_is_kept_absolute(make_wav: Callable[..., Path], tmp_path: Path) -> None:
    clip = make_wav()
    step = ProfileStep.model_validate({"voice": clip.name}, context={"config_dir": tmp_path})
    assert step.voice == str(clip.resolve()) and step.clip_s == 1.0
