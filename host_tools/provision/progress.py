"""Progress of long operations (building, verifying, copying) on the technician's terminal.

On a terminal a bar is redrawn in place; in a log or a pipe a line is written at each quarter, so
that CI logs and ``ssh`` sessions show that something moves without filling up.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

logger = logging.getLogger(__name__)

BAR_WIDTH = 30


class Progress:
    """Steps of an operation, and the bytes done within the current step."""

    def __init__(self, steps: int, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.steps, self.step_no = steps, 0
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._label, self._total, self._done, self._shown = "", 0, 0, -1

    def step(self, label: str, total_bytes: int = 0) -> None:
        """Start the next step (with a byte count, if it has one)."""
        self._finish_bar()
        self.step_no += 1
        self._label, self._total, self._done, self._shown = label, total_bytes, 0, -1
        self._write(f"[{self.step_no}/{self.steps}] {label}\n")

    def expect(self, total_bytes: int) -> None:
        """Count bytes within the current step, out of ``total_bytes``."""
        self._finish_bar()
        self._total, self._done, self._shown = total_bytes, 0, -1

    def advance(self, n: int) -> None:
        """``n`` more bytes of the current step are done."""
        if self._total <= 0:
            return
        self._done = min(self._total, self._done + n)
        pct = self._done * 100 // self._total
        if self.tty:
            if pct != self._shown:
                filled = BAR_WIDTH * pct // 100
                bar = "#" * filled + "." * (BAR_WIDTH - filled)
                self._write(f"\r      [{bar}] {pct:3d}% {_size(self._done)}")
                self._shown = pct
        elif pct // 25 > self._shown // 25 or (self._shown < 0 and pct > 0):
            self._write(f"      {pct:3d}% of {_size(self._total)}\n")
            self._shown = pct

    def note(self, text: str) -> None:
        """A line of detail under the current step."""
        self._finish_bar()
        self._write(f"      {text}\n")

    def _finish_bar(self) -> None:
        if self.tty and self._shown >= 0:
            self._write("\n")
            self._shown = -1

    def close(self) -> None:
        """End the last bar."""
        self._finish_bar()

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.0f} KiB"
    return f"{n} B"
