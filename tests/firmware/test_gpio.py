"""The gpiozero output backend, on gpiozero's MockFactory: pin levels follow the output state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from firmware.clock import SystemClock
from firmware.config.board import OutputGpio
from firmware.hal import registry
from firmware.hal.registry import HalContext


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
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
