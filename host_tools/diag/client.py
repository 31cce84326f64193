"""The laptop's end of the diagnostics console: requests out, replies in, over pyserial.

Each request carries a fresh tag; lines of any other tag (a reply to an earlier client that gave
up) and lines that are not reply lines (a boot message) are skipped. The wait for the next line
starts again at every progress line, so a long self-test never times out while it moves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from firmware.diag import protocol
from firmware.diag.protocol import DiagError, ReplyLine
from firmware.errors import HardwareError

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
DEFAULT_BAUDRATE = 115200

OnStep = Callable[[dict[str, Any]], None]


class DiagTimeout(HardwareError):
    """The unit did not answer in time."""


class DiagClient:
    """Talks to one unit's diagnostics console on a serial port."""

    def __init__(
        self, port: str, baudrate: int = DEFAULT_BAUDRATE, timeout_s: float | None = None
    ) -> None:
        import serial

        self.port, self.baudrate = port, baudrate
        self.timeout_s = timeout_s  # None: each command's own (protocol.CommandSpec.timeout_s)
        try:
            self._serial = serial.Serial(port, baudrate, timeout=READ_TIMEOUT_S, write_timeout=2.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise HardwareError(f"cannot open {port}: {exc}") from exc
        self._buf = bytearray()
        self._tag = int(time.monotonic() * 1000) % 10_000  # differs from a previous session's

    def close(self) -> None:
        """Close the port."""
        self._serial.close()

    def __enter__(self) -> DiagClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self, command: str, args: Sequence[str] = (), on_step: OnStep | None = None
    ) -> ReplyLine:
        """Send one command (checked here first, as the unit checks it) and return the final
        reply line; progress lines go to ``on_step``."""
        self._tag = self._tag % 99_999_999 + 1
        tag = str(self._tag)
        line = protocol.format_request(command, args, tag)
        return self._exchange(line, tag, _timeout_of(command), on_step)

    def request_line(self, text: str, on_step: OnStep | None = None) -> ReplyLine:
        """Send a line as typed, unchecked: the unit's answer to a bad one is its ``ERR``."""
        self._tag = self._tag % 99_999_999 + 1
        tag = str(self._tag)
        try:
            line = f"@{tag} {text}".encode("ascii") + b"\n"
        except UnicodeEncodeError:
            raise DiagError("bad-request", "requests are printable ASCII text") from None
        return self._exchange(line, tag, _timeout_of(text), on_step)

    def _exchange(
        self, line: bytes, tag: str, timeout_s: float, on_step: OnStep | None
    ) -> ReplyLine:
        import serial

        wait_s = self.timeout_s or timeout_s
        try:
            self._serial.reset_input_buffer()
            self._buf.clear()
            self._serial.write(line)
        except (serial.SerialException, OSError) as exc:
            raise HardwareError(f"writing to {self.port}: {exc}") from exc
        logger.debug("sent %r", line)
        deadline = time.monotonic() + wait_s
        while True:
            raw = self._readline(deadline, wait_s)
            try:
                reply = protocol.parse_reply(raw)
            except DiagError:
                logger.debug("not a reply line, skipped: %r", raw[:80])
                continue
            if reply.tag != tag:
                logger.debug("a reply to another request, skipped: %r", raw[:80])
                continue
            if reply.final:
                return reply
            if on_step is not None:
                on_step(reply.data)
            deadline = time.monotonic() + wait_s

    def _readline(self, deadline: float, wait_s: float) -> bytes:
        import serial

        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > protocol.MAX_REPLY:
                self._buf.clear()  # noise without a line end: drop it
            if time.monotonic() >= deadline:
                raise DiagTimeout(
                    f"no reply from {self.port} within {wait_s:g} s: is the unit running, "
                    f"with its [diag] console on this line, at {self.baudrate} baud?"
                )
            try:
                self._buf += self._serial.read(max(1, self._serial.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise HardwareError(f"reading {self.port}: {exc}") from exc


def _timeout_of(text: str) -> float:
    """How long a command may go without sending a line (its spec's, or the default)."""
    words = text.lower().split()
    for n in (2, 1):
        spec = protocol.BY_NAME.get(" ".join(words[:n]))
        if spec is not None:
            return spec.timeout_s
    return protocol.DEFAULT_TIMEOUT_S
