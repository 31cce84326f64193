"""The Jetson.GPIO output backend: a clear error off a Jetson, and the calls it makes on one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from firmware.clock import SystemClock
from firmware.config.board import OutputJetson
from firmware.errors import HardwareError
from firmware.hal import registry
from firmware.hal.jetson import load_jetson_gpio
from firmware.hal.registry import HalContext

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("Jetson") is not None, reason="Jetson.GPIO is installed here"
)
def test_without_jetson_gpio_the_error_says_what_is_missing() -> None:
    with pytest.raises(HardwareError, match=r"needs Jetson\.GPIO .* it is not installed"):
        load_jetson_gpio()
    cfg = OutputJetson(backend="jetson", kind="strobe", pin=33)
    with pytest.raises(HardwareError, match=r"Jetson\.GPIO"):
        registry.create("output", "strobe", cfg, HalContext(clock=SystemClock()))


def recording_gpio() -> Any:
    """A stand-in with Jetson.GPIO's constants and calls, recording what is asked of it."""
    calls: list[tuple[Any, ...]] = []
    mode: list[str | None] = [None]

    def setmode(new: str) -> None:
        mode[0] = new
        calls.append(("setmode", new))

    def setup(pin: int, direction: str, initial: int) -> None:
        calls.append(("setup", pin, direction, initial))

    def output(pin: int, level: int) -> None:
        calls.append(("output", pin, level))

    def cleanup(pin: int) -> None:
        calls.append(("cleanup", pin))

    return types.SimpleNamespace(
        BOARD="BOARD",
        BCM="BCM",
        OUT="OUT",
        HIGH=1,
        LOW=0,
        calls=calls,
        getmode=lambda: mode[0],
        setmode=setmode,
        setwarnings=lambda flag: None,
        setup=setup,
        output=output,
        cleanup=cleanup,
    )


@pytest.mark.parametrize("active_high", [True, False])
def test_outputs_drive_the_header_pin(active_high: bool) -> None:
    gpio = recording_gpio()
    ctx = HalContext(clock=SystemClock(), extras={"jetson_gpio": gpio})
    cfg = OutputJetson(backend="jetson", kind="strobe", pin=33, active_high=active_high)
    out = registry.create("output", "strobe", cfg, ctx)
    on, off = (1, 0) if active_high else (0, 1)
    out.set(True)
    assert out.is_on
    out.close()
    assert gpio.calls == [
        ("setmode", "BOARD"),
        ("setup", 33, "OUT", off),  # starts off
        ("output", 33, on),
        ("output", 33, off),  # closing switches off
        ("cleanup", 33),
    ]


def test_one_pin_numbering_per_process() -> None:
    gpio = recording_gpio()
    ctx = HalContext(clock=SystemClock(), extras={"jetson_gpio": gpio})
    registry.create("output", "a", OutputJetson(backend="jetson", kind="light", pin=31), ctx)
    with pytest.raises(HardwareError, match="another pin numbering"):
        registry.create(
            "output",
            "b",
            OutputJetson(backend="jetson", kind="siren", pin=12, numbering="bcm"),
            ctx,
        )


def test_the_registry_loads_every_backend_without_hardware_libraries() -> None:
    code = (
        "import sys\n"
        "from firmware.hal import registry\n"
        "print(registry.available('output'), registry.available('audio'))\n"
        "loaded = [m for m in ('pymodbus', 'gpiozero', 'Jetson', 'serial') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    outputs, audio = "['gpio', 'jetson', 'modbus', 'sim', 'supervisor']", "['aplay', 'sim']"
    assert done.stdout.strip() == f"{outputs} {audio}"
