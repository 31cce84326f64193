"""The unit's whole uplink in one piece: outbox, sender, heartbeats, commands and faults.

The unit runtime builds one; so does the simulator's uplink-only unit, which has no cameras.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from firmware.clock import Clock, SimClock, SystemClock
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from firmware.uplink import protocol
from firmware.uplink.client import UplinkClient
from firmware.uplink.commands import CommandHandler, Executor
from firmware.uplink.faults import Faults
from firmware.uplink.heartbeat import Heartbeats, UnitStatus
from firmware.uplink.outbox import Outbox
from firmware.uplink.sender import Sender

logger = logging.getLogger(__name__)


class Uplink:
    """Everything between a committed message and the receiver's acknowledgement."""

    def __init__(
        self,
        receiver: ReceiverEndpoint,
        config: UplinkConfig,
        data_dir: Path,
        clock: Clock,
        execute: Executor,
        status: Callable[[], UnitStatus],
        security_dir: Path | None = None,
    ) -> None:
        self.clock = clock
        fast = isinstance(clock, SimClock) and clock.fast
        # The network is real: on a clock that only moves with frames, uplink timing is wall time.
        link_clock: Clock = SystemClock() if fast else clock
        speed = clock.speed if isinstance(clock, SimClock) and not fast else 1.0
        self.outbox = Outbox(data_dir / "outbox.sqlite")
        client = UplinkClient(receiver, security_dir or data_dir / "oscore", speed)
        self.sender = Sender(self.outbox, client, config, link_clock, speed)
        self.faults = Faults(clock, self.commit, self.outbox.next_fault_id)
        self.commands = CommandHandler(self.outbox, clock, execute, self.commit)
        self.sender.on_commands = self.commands.handle
        self.heartbeats = Heartbeats(
            self.outbox, self.sender, link_clock, config.reporting_time_s, status
        )

    def commit(self, build: Callable[[int], protocol.Message], priority: int, ref: str) -> int:
        """Commit a message to the outbox (on disk when this returns); wake the sender."""
        msg_id = self.outbox.commit(
            priority, ref, lambda mid: protocol.encode(build(mid)), self.clock.now()
        )
        self.sender.notify()
        return msg_id

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        """The coroutines to run: delivery and heartbeats."""
        return [self.sender.run(), self.heartbeats.run()]

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged) or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.depth() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.outbox.depth() == 0

    async def close(self) -> None:
        """Release the client, its security context and the outbox."""
        await self.sender.client.close()
        self.outbox.close()
