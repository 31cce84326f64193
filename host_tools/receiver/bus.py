"""In-process publish/subscribe of receiver events, for live consoles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

SUBSCRIBER_BACKLOG = 256


class EventBus:
    """Fans events out to subscribers; a subscriber that falls behind loses its oldest events.

    With several receivers on one database, ``relay`` passes what this one publishes on to the
    others, whose events come back in through :meth:`deliver`.
    """

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.relay: Callable[[dict[str, Any]], None] | None = None

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue that receives every event published from now on."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to a queue."""
        self._subscribers.discard(q)

    def publish(self, event: dict[str, Any]) -> int:
        """Deliver an event to every subscriber and relay it to the other receivers (from the
        event loop's thread); return how many subscribers it reached here."""
        if self.relay is not None:
            self.relay(event)
        return self.deliver(event)

    def deliver(self, event: dict[str, Any]) -> int:
        """Deliver an event to this receiver's subscribers only; return how many."""
        for q in self._subscribers:
            if q.full():
                q.get_nowait()
            q.put_nowait(event)
        return len(self._subscribers)
