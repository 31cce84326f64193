"""The unit's latest log lines in memory, for ``log tail`` on the diagnostics console."""

from __future__ import annotations

import logging
import threading
from collections import deque

logger = logging.getLogger(__name__)

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class LogRing(logging.Handler):
    """A logging handler that keeps the last ``size`` formatted records. Thread-safe."""

    def __init__(self, size: int = 500, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter(FORMAT))
        self._lines: deque[str] = deque(maxlen=size)
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one record (its first line; a traceback is summed up by its last line)."""
        try:
            text = self.format(record)
        except Exception:  # a bad log call must not break the caller
            self.handleError(record)
            return
        lines = text.splitlines() or [""]
        shown = lines[0] if len(lines) == 1 else f"{lines[0]} [... {lines[-1].strip()}]"
        with self._lines_lock:
            self._lines.append(shown)

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines, oldest first."""
        with self._lines_lock:
            return list(self._lines)[-n:] if n > 0 else []

    def attach(self, to: logging.Logger | None = None) -> None:
        """Start keeping what ``to`` (the root logger by default) logs."""
        (to or logging.getLogger()).addHandler(self)

    def detach(self, to: logging.Logger | None = None) -> None:
        """Stop keeping it."""
        (to or logging.getLogger()).removeHandler(self)
