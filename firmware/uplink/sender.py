"""Drains the outbox to the receiver: most urgent first, retried with backoff, deleted on ack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from firmware.config.site import UplinkConfig
from firmware.uplink.client import UplinkClient, UplinkError
from firmware.uplink.outbox import Outbox

logger = logging.getLogger(__name__)


class Sender:
    """The delivery loop. Retry times are wall-clock, because the network is real even in sims."""

    def __init__(self, outbox: Outbox, client: UplinkClient, config: UplinkConfig) -> None:
        self.outbox = outbox
        self.client = client
        self.config = config
        self._wake = asyncio.Event()
        self.delivered = 0
        self.last_ack_rtt_s: float | None = None

    def notify(self) -> None:
        """A new message was committed: try now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            item = await asyncio.to_thread(self.outbox.next_due, time.time())
            if item is None:
                due = await asyncio.to_thread(self.outbox.next_attempt_time)
                wait = 5.0 if due is None else max(0.0, min(5.0, due - time.time()))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            started = time.monotonic()
            try:
                ack = await self.client.send(item.payload)
            except UplinkError as exc:
                delay = await asyncio.to_thread(
                    self.outbox.defer,
                    item.msg_id,
                    time.time(),
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
            if ack.msg_id != item.msg_id:
                logger.error(
                    "%s: receiver acknowledged msg %d, not %d; will retry",
                    item.ref,
                    ack.msg_id,
                    item.msg_id,
                )
                await asyncio.to_thread(
                    self.outbox.defer,
                    item.msg_id,
                    time.time(),
                    self.config.retry_initial_s,
                    self.config.retry_max_s,
                )
                continue
            await asyncio.to_thread(self.outbox.acknowledged, item.msg_id)
            self.delivered += 1
            self.last_ack_rtt_s = time.monotonic() - started
            logger.info(
                "%s: msg %d acknowledged by receiver (%s) in %.0f ms; removed from outbox",
                item.ref,
                item.msg_id,
                ack.status.name.lower(),
                self.last_ack_rtt_s * 1000,
            )
