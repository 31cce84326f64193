"""The gpiozero output backend on gpiozero's MockFactory: pin levels follow the profile's steps."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from firmware.clock import SimClock, SystemClock
from firmware.config.board import OutputGpio
from firmware.config.load import load_pair
from firmware.config.site import (
    DeterrenceConfig,
    OutputLimits,
    Profile,
    ProfileStep,
    StrobePattern,
)
from firmware.hal import registry
from firmware.hal.base import Output
from firmware.hal.registry import HalContext
from firmware.rules.deterrence import Deterrence
from firmware.rules.schedule import schedules_for


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def pwm_factory() -> Iterator[MockFactory]:
    """Mock pins that can do PWM (every pin of a Pi can, in software)."""
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


@pytest.mark.parametrize("active_high", [True, False])
def test_gpio_output_drives_the_pin(factory: MockFactory, active_high: bool) -> None:
    ctx = HalContext(clock=SystemClock(), extras={"pin_factory": factory})
    cfg = OutputGpio(backend="gpio", kind="siren", pin=17, active_high=active_high)
    out = registry.create("output", "siren", cfg, ctx)
    pin = factory.pin(17)
    off_level = not active_high
    assert pin.state == off_level and not out.is_on  # starts off
    out.set(True)
    assert pin.state == active_high and out.is_on
    out.set(False)
    assert pin.state == off_level
    out.set(True)
    out.close()  # closing switches off first
    assert [s.state for s in pin.states][-1] == off_level


def test_pwm_light_goes_to_its_brightness(pwm_factory: MockFactory) -> None:
    factory = pwm_factory
    ctx = HalContext(clock=SystemClock(), extras={"pin_factory": factory})
    cfg = OutputGpio(backend="gpio", kind="light", pin=18, pwm=True, brightness=0.4)
    out = registry.create("output", "floodlight", cfg, ctx)
    pin = factory.pin(18)
    assert pin.state == 0 and not out.is_on
    out.set(True)
    assert pin.state == pytest.approx(0.4) and out.is_on
    assert pin.frequency == 200
    out.close()
    assert pin.state == 0


# Every kind of step on a board like rpi4-lepton35: a dimmed floodlight, a strobe flashing,
# an active-low siren relay.
BOARD = {
    "floodlight": OutputGpio(backend="gpio", kind="light", pin=12, pwm=True, brightness=0.5),
    "strobe": OutputGpio(backend="gpio", kind="strobe", pin=6),
    "siren": OutputGpio(backend="gpio", kind="siren", pin=13, active_high=False),
}
CONFIG = DeterrenceConfig(
    limits={
        "floodlight": OutputLimits(max_on_s=4),
        "strobe": OutputLimits(max_on_s=10),
        "siren": OutputLimits(max_on_s=1.5),
    },
    profiles={
        "escalate": Profile(
            steps=[
                ProfileStep(output="floodlight"),
                ProfileStep(
                    output="strobe", at_s=1, for_s=2, pattern=StrobePattern(on_s=0.25, off_s=0.25)
                ),
                ProfileStep(output="siren", at_s=2),
            ]
        )
    },
)


def test_pin_history_of_a_profile_matches_its_steps_in_simulated_time(
    pwm_factory: MockFactory,
) -> None:
    factory = pwm_factory
    clock = SimClock(start=0.0, speed=0)
    ctx = HalContext(clock=clock, extras={"pin_factory": factory})
    outputs: dict[str, Output] = {
        name: registry.create("output", name, cfg, ctx) for name, cfg in BOARD.items()
    }
    det = Deterrence(outputs, CONFIG, clock)
    det.start_failsafe()
    pins = {name: factory.pin(cfg.pin) for name, cfg in BOARD.items()}
    assert [float(pin.state) for pin in pins.values()] == [0.0, 0.0, 1.0]  # all off
    try:
        det.activate("escalate", CONFIG.profiles["escalate"], "u/1")
        levels = {name: [(0.0, float(pin.state))] for name, pin in pins.items()}
        for _ in range(6 * 20):  # 6 s in 50 ms ticks, sampling every pin after each
            now = clock.advance(0.05)
            for name, pin in pins.items():
                if float(pin.state) != levels[name][-1][1]:
                    levels[name].append((round(now, 2), float(pin.state)))
    finally:
        det.stop()
        for out in outputs.values():
            out.close()
    assert [float(s.state) for s in pins["floodlight"].states] == [0.0, 0.5, 0.0]
    assert levels["floodlight"] == [(0.0, 0.5), (4.0, 0.0)]
    assert levels["strobe"] == [
        (0.0, 0.0),
        (1.0, 1.0),
        (1.25, 0.0),
        (1.5, 1.0),
        (1.75, 0.0),
        (2.0, 1.0),
        (2.25, 0.0),
        (2.5, 1.0),
        (2.75, 0.0),
    ]
    # Active-low: the siren relay's input goes low for on.
    assert levels["siren"] == [(0.0, 1.0), (2.0, 0.0), (3.5, 1.0)]


REPO = Path(__file__).resolve().parents[2]


def test_every_profile_of_the_parking_lot_on_the_rpi4_relay_hat(factory: MockFactory) -> None:
    board, site = load_pair(
        REPO / "board_configs" / "rpi4-lepton35.toml", REPO / "sim" / "sites" / "parking_lot.toml"
    )
    noon = dt.datetime(2026, 6, 10, 12, 0, tzinfo=zoneinfo.ZoneInfo(site.unit.timezone))
    clock = SimClock(start=noon.timestamp(), speed=0)  # outside quiet hours
    ctx = HalContext(clock=clock, extras={"pin_factory": factory})
    outputs: dict[str, Output] = {
        name: registry.create("output", name, cfg, ctx) for name, cfg in board.outputs.items()
    }
    try:
        for name, profile in site.deterrence.profiles.items():
            det = Deterrence(outputs, site.deterrence, clock, schedules=schedules_for(site))
            det.start_failsafe()
            start = clock.now()
            actions = det.activate(name, profile, f"u/{name}")
            active: dict[str, list[float]] = {n: [] for n in outputs}
            end = max(a.at_s + a.seconds for a in actions) + 2
            for _ in range(round(end / 0.5)):
                now = clock.advance(0.5)
                for out_name, cfg in board.outputs.items():
                    pin = factory.pin(cfg.pin)  # type: ignore[union-attr]
                    if pin.state == cfg.active_high:  # type: ignore[union-attr]
                        active[out_name].append(round(now - start, 1))
            det.stop()
            for a in actions:
                assert a.suppressed is None
                expected = [t / 2 for t in range(1, round(end * 2) + 1)]
                expected = [t for t in expected if a.at_s <= t < a.at_s + a.seconds]
                assert active[a.output] == expected, f"profile {name}, step {a.output}"
            assert all(not active[n] for n in outputs if n not in {a.output for a in actions})
            clock.advance(3600)  # past every cool-down before the next profile
    finally:
        for out in outputs.values():
            out.close()
