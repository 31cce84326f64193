"""What the diagnostics console reports of a camera: its latest frame and its frame rate."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)

WINDOW_S = 5.0  # the frame rate is measured over this much of the camera's own time


class _Frame(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def t(self) -> float: ...


F = TypeVar("F", bound=_Frame)


class FrameStats(Generic[F]):
    """Counts a camera's frames and keeps the latest; called from the event loop only."""

    def __init__(self, nominal_fps: float) -> None:
        self.nominal_fps = nominal_fps
        self.count = 0
        self.latest: F | None = None
        self.latest_at: float | None = None  # time.monotonic() when it arrived
        self._times: deque[float] = deque(maxlen=max(8, int(nominal_fps * WINDOW_S) + 2))

    def note(self, frame: F) -> None:
        """One frame arrived."""
        self.count += 1
        self.latest, self.latest_at = frame, time.monotonic()
        self._times.append(frame.t)

    def fps(self) -> float | None:
        """Frames per second of camera time over the last few seconds; None before two frames."""
        times = [t for t in self._times if t >= self._times[-1] - WINDOW_S] if self._times else []
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    def age_s(self) -> float | None:
        """Real seconds since the latest frame arrived."""
        return None if self.latest_at is None else time.monotonic() - self.latest_at
