"""A simulated link between units and the receiver: a UDP relay that can lose either direction.

v1 drops everything one way (an outage, or acknowledgements lost on the way back); latency,
random loss, duplication and reordering come with the uplink work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

Addr = tuple[str, int]


@dataclass
class LinkStats:
    """Datagrams carried and dropped, by direction."""

    up: int = 0
    up_dropped: int = 0
    down: int = 0
    down_dropped: int = 0


class _Back(asyncio.DatagramProtocol):
    """The relay's socket towards the receiver for one unit address."""

    def __init__(self, relay: UdpRelay, client: Addr) -> None:
        self.relay, self.client = relay, client

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.relay._down(data, self.client)


class _Front(asyncio.DatagramProtocol):
    """The relay's socket facing the units."""

    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay
        self.tasks: set[asyncio.Task[None]] = set()

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        task = asyncio.ensure_future(self.relay._up(data, addr))
        self.tasks.add(task)  # keep a reference until done, or it may be collected mid-flight
        task.add_done_callback(self.tasks.discard)


@dataclass
class UdpRelay:
    """Relays datagrams from ``listen`` to ``target`` and answers back; can drop either way."""

    listen: Addr
    target: Addr
    drop_up: bool = False
    drop_down: bool = False
    stats: LinkStats = field(default_factory=LinkStats)
    _front: asyncio.DatagramTransport | None = None
    _backs: dict[Addr, asyncio.DatagramTransport] = field(default_factory=dict)

    async def start(self) -> None:
        """Bind the unit-facing socket."""
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Front(self), local_addr=self.listen
        )
        logger.info("link %s:%d -> %s:%d up", *self.listen, *self.target)

    async def _up(self, data: bytes, client: Addr) -> None:
        if self.drop_up:
            self.stats.up_dropped += 1
            return
        back = self._backs.get(client)
        if back is None:
            loop = asyncio.get_running_loop()
            back, _ = await loop.create_datagram_endpoint(
                lambda: _Back(self, client), remote_addr=self.target
            )
            self._backs[client] = back
        self.stats.up += 1
        back.sendto(data)

    def _down(self, data: bytes, client: Addr) -> None:
        if self.drop_down or self._front is None:
            self.stats.down_dropped += 1
            return
        self.stats.down += 1
        self._front.sendto(data, client)

    async def stop(self) -> None:
        """Close every socket."""
        for back in self._backs.values():
            back.close()
        self._backs.clear()
        if self._front is not None:
            self._front.close()
            self._front = None
