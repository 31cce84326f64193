"""Drains the outbox to the receiver: most urgent first, retried with backoff, deleted on ack.

Acknowledgements also carry the receiver's clock (the unit's drift is reported in heartbeats)
and operator commands, which are handed to the command handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from firmware.clock import Clock
from firmware.config.site import UplinkConfig
from firmware.uplink import protocol
from firmware.uplink.client import UplinkClient, UplinkError
from firmware.uplink.outbox import Outbox

logger = logging.getLogger(__name__)

IDLE_POLL_S = 5.0


class Sender:
    """The delivery loop. Retry times follow ``clock`` (a simulated one in scenarios)."""

    def __init__(
        self,
        outbox: Outbox,
        client: UplinkClient,
        config: UplinkConfig,
        clock: Clock,
        speed: float = 1.0,
    ) -> None:
        self.outbox, self.client, self.config, self.clock = outbox, client, config, clock
        self.speed = speed  # simulated seconds per real second, for timeouts on the real network
        self._wake = asyncio.Event()
        self.delivered = 0
        self.last_ack_at: float | None = None
        self.last_rtt_s: float | None = None
        self.drift_s: int | None = None
        self.on_commands: Callable[[tuple[protocol.Command, ...]], Awaitable[None]] | None = None
        self.on_acknowledged: Callable[[str, int], None] | None = None  # (ref, msg id)

    def notify(self) -> None:
        """A new message was committed: try now."""
        self._wake.set()

    def _real(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed

    async def exchange(
        self, ref: str, msg_id: int, payload: bytes, reliable: bool = True
    ) -> protocol.Ack:
        """Send one message and take in its acknowledgement (commands, clock)."""
        started = time.monotonic()
        ack = await self.client.send(payload, reliable)
        if ack.msg_id != msg_id:
            raise UplinkError(f"receiver acknowledged msg {ack.msg_id}, not {msg_id}")
        self.last_rtt_s = time.monotonic() - started
        self.last_ack_at = self.clock.now()
        self.drift_s = round(self.clock.now()) - ack.time_s
        if ack.commands and self.on_commands is not None:
            await self.on_commands(ack.commands)
        return ack

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            item = await asyncio.to_thread(self.outbox.next_due, self.clock.now())
            if item is None:
                due = await asyncio.to_thread(self.outbox.next_attempt_time)
                wait = IDLE_POLL_S if due is None else max(0.0, due - self.clock.now())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(self._real(wait), IDLE_POLL_S)):
                        await self._wake.wait()
                continue
            try:
                ack = await self.exchange(item.ref, item.msg_id, item.payload)
            except UplinkError as exc:
                delay = await asyncio.to_thread(
                    self.outbox.defer,
                    item.msg_id,
                    self.clock.now(),
                    self.config.retry_initial_s,
                    self.config.retry_max_s,
                )
                logger.warning(
                    "%s: msg %d not delivered (attempt %d): %s; retry in %.1f s",
                    item.ref,
                    item.msg_id,
                    item.attempts + 1,
                    exc,
                    delay,
                )
                continue
            await asyncio.to_thread(self.outbox.acknowledged, item.msg_id)
            self.delivered += 1
            if self.on_acknowledged is not None:
                self.on_acknowledged(item.ref, item.msg_id)
            logger.info(
                "%s: msg %d acknowledged by receiver (%s) in %.0f ms; removed from outbox",
                item.ref,
                item.msg_id,
                ack.status.name.lower(),
                (self.last_rtt_s or 0) * 1000,
            )
