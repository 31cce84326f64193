"""A simulated link between units and the receiver: a UDP relay with loss, duplication, latency
and jitter (which reorders), and outages.

Units send to the relay as if it were the receiver. Every impairment is drawn from a seeded
random generator; outage windows are given in the simulation's clock, so that a 10-minute outage
of simulated time passes in seconds when the simulation runs fast.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

Addr = tuple[str, int]


@dataclass
class Impairment:
    """What happens to datagrams in one direction."""

    loss: float = 0.0  # probability a datagram is lost
    duplicate: float = 0.0  # probability it arrives twice
    delay_s: float = 0.0  # one-way latency (real seconds)
    jitter_s: float = 0.0  # extra uniform random latency; reorders datagrams


@dataclass
class LinkStats:
    """Datagrams carried, dropped and duplicated, by direction."""

    up: int = 0
    up_dropped: int = 0
    up_duplicated: int = 0
    down: int = 0
    down_dropped: int = 0
    down_duplicated: int = 0


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
    """Relays datagrams from ``listen`` to ``target`` and answers back, impaired as configured."""

    listen: Addr
    target: Addr
    up: Impairment = field(default_factory=Impairment)
    down: Impairment = field(default_factory=Impairment)
    drop_up: bool = False  # a total outage one way (for tests that cut the link by hand)
    drop_down: bool = False
    outages: list[tuple[float, float]] = field(default_factory=list)  # [start, end) in clock time
    clock: Clock = field(default_factory=SystemClock)
    seed: int = 0
    tap: Callable[[bytes, Addr], None] | None = None  # sees every datagram a unit sends
    tap_down: Callable[[bytes, Addr], None] | None = None  # and every one the receiver answers
    stats: LinkStats = field(default_factory=LinkStats)
    _front: asyncio.DatagramTransport | None = None
    _backs: dict[Addr, asyncio.DatagramTransport] = field(default_factory=dict)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def start(self) -> None:
        """Bind the unit-facing socket (port 0 picks a free one; ``listen`` then says which)."""
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Front(self), local_addr=self.listen
        )
        self.listen = self._front.get_extra_info("sockname")[:2]
        logger.info("link %s:%d -> %s:%d up", *self.listen, *self.target)

    def in_outage(self) -> bool:
        """Whether the clock is inside one of the outage windows."""
        now = self.clock.now()
        return any(start <= now < end for start, end in self.outages)

    def _fate(self, imp: Impairment, cut: bool) -> list[float]:
        """Delays of the copies that get through (none: lost)."""
        if cut or self.in_outage() or self._rng.random() < imp.loss:
            return []
        copies = 2 if self._rng.random() < imp.duplicate else 1
        return [imp.delay_s + self._rng.uniform(0, imp.jitter_s) for _ in range(copies)]

    async def _up(self, data: bytes, client: Addr) -> None:
        if self.tap is not None:
            self.tap(data, client)
        delays = self._fate(self.up, self.drop_up)
        if not delays:
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
        self.stats.up_duplicated += len(delays) - 1
        for delay in delays:
            self._send_later(delay, back.sendto, data)

    def _down(self, data: bytes, client: Addr) -> None:
        if self.tap_down is not None:
            self.tap_down(data, client)
        delays = self._fate(self.down, self.drop_down)
        if not delays or self._front is None:
            self.stats.down_dropped += 1
            return
        self.stats.down += 1
        self.stats.down_duplicated += len(delays) - 1
        front = self._front
        for delay in delays:
            self._send_later(delay, lambda d: front.sendto(d, client), data)

    @staticmethod
    def _send_later(delay: float, send: Callable[[bytes], object], data: bytes) -> None:
        if delay <= 0:
            send(data)
        else:
            asyncio.get_running_loop().call_later(delay, send, data)

    async def stop(self) -> None:
        """Close every socket."""
        for back in self._backs.values():
            back.close()
        self._backs.clear()
        if self._front is not None:
            self._front.close()
            self._front = None
