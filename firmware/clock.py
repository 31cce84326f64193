"""Clocks: the system clock on a unit, and a simulated clock that can outrun real time.

Everything on the unit that needs "now" or a timed wait takes a :class:`Clock`, so the same code
runs against wall time on a pole and against simulated time in scenarios and tests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)


class Clock(Protocol):
    """What the unit's code needs from a clock."""

    def now(self) -> float:
        """Seconds since the Unix epoch (simulated or real)."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once :meth:`now` has reached ``t``."""
        ...


class SystemClock:
    """Wall-clock time, for units in the field."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    async def sleep_until(self, t: float) -> None:
        """Sleep until the wall clock reaches ``t``."""
        delay = t - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class SimClock:
    """Simulated time starting at ``start``.

    With ``speed`` > 0 it runs paced: simulated time passes ``speed`` times faster than real time.
    With ``speed`` == 0 it runs as fast as possible: time stands still until :meth:`advance` moves
    it, which the simulated frame source does once per frame, so that every frame is processed and
    a run is deterministic however fast the machine is.
    """

    def __init__(self, start: float, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.start = start
        self.speed = speed
        self._t = start
        self._mono0 = time.monotonic()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float], None]] = []
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    @property
    def fast(self) -> bool:
        """True when time moves only by :meth:`advance` (as fast as possible)."""
        return self.speed == 0

    def now(self) -> float:
        """Current simulated time, seconds since the Unix epoch."""
        if self.fast:
            return self._t
        return self.start + (time.monotonic() - self._mono0) * self.speed

    def elapsed(self) -> float:
        """Simulated seconds since the start."""
        return self.now() - self.start

    def on_advance(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(now)`` after every :meth:`advance`, from the advancing thread."""
        self._listeners.append(callback)

    def advance(self, seconds: float) -> float:
        """Move fast-mode time forward; wake whoever waits for it. Thread-safe."""
        if not self.fast:
            raise RuntimeError("advance() is only for a clock with speed 0")
        with self._lock:
            self._t += seconds
            now = self._t
            due = [w for w in self._waiters if w[0] <= now]
            self._waiters = [w for w in self._waiters if w[0] > now]
        for _, fut in due:
            loop = fut.get_loop()
            loop.call_soon_threadsafe(_resolve, fut)
        for callback in self._listeners:
            callback(now)
        return now

    async def sleep_until(self, t: float) -> None:
        """Wait until simulated time reaches ``t``."""
        if not self.fast:
            delay = (t - self.now()) / self.speed
            if delay > 0:
                await asyncio.sleep(delay)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._t >= t:
                return
            self._waiters.append((t, fut))
        await fut


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
