"""A bounded latest-frame queue between pipeline stages.

Under overload a live camera's oldest frame is dropped and counted, so the safety logic never waits
behind stale frames. A fast simulated clock uses the lossless mode instead: the camera waits for the
consumer, which keeps a simulation deterministic however fast or slow the machine is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LatestQueue(Generic[T]):
    """A queue of at most ``maxsize`` items that drops the oldest when full (unless lossless)."""

    def __init__(self, maxsize: int = 1, lossless: bool = False) -> None:
        self._q: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self.lossless = lossless
        self.dropped = 0

    async def put(self, item: T) -> None:
        """Add an item; drop the oldest (or wait, if lossless) when full."""
        if self.lossless:
            await self._q.put(item)
            return
        while self._q.full():
            self._q.get_nowait()
            self._q.task_done()
            self.dropped += 1
        self._q.put_nowait(item)

    async def get(self) -> T:
        """Take the oldest item, waiting for one."""
        return await self._q.get()

    def task_done(self) -> None:
        """The consumer has finished with the item it took."""
        self._q.task_done()

    async def join(self) -> None:
        """Wait until every item put has been taken and finished (or dropped)."""
        await self._q.join()
