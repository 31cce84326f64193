"""The forwarder: takes each alarm-queue change the receiver commits and queues it for every target.

It is one of the receiver's alarm hooks, called in the event loop right after the receiver's own
commit and before the unit's acknowledgement goes out, and it commits to its queue at once: so an
alarm the unit saw acknowledged is in the forward queue. For the small window between the two
commits (a crash there), :meth:`Forwarder.start` compares the receiver's recent alarms with what
it has queued and queues what is missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from firmware.clock import Clock, SystemClock
from firmware.errors import StorageError
from firmware.uplink import protocol
from host_tools.forward.config import Dc09Target, ForwardConfig, WebhookTarget
from host_tools.forward.mapping import sia_code
from host_tools.forward.queue import ForwardQueue
from host_tools.forward.sender import Dc09Sender, Worker
from host_tools.forward.webhook import WebhookSender
from host_tools.receiver.store import AlarmRecord, ReceiverStore

logger = logging.getLogger(__name__)

CATCH_UP_MARGIN_S = 600.0  # how far before the last queued entry a restart looks again
SEEN_KEPT_S = 90 * 86400.0  # how long the record of what was queued is kept
WEBHOOK_VERSION = 1


def phase_of(record: AlarmRecord, msg: protocol.Message | None) -> str:
    """``open``, ``update`` or ``close``: what a committed message did to a queue entry."""
    if isinstance(msg, protocol.Alarm):
        return msg.phase.name.lower()
    if isinstance(msg, protocol.Fault):
        return "open"
    if isinstance(msg, protocol.Restore):
        return "close"
    if msg is None:  # raised by the receiver itself: a unit offline, or back
        return "open" if record.unit_state == "open" else "close"
    return "update"


def alarm_text(record: AlarmRecord) -> str:
    """A short line for the receiving centre: reference, event and zone."""
    zone = f" {record.zone}" if record.zone and record.zone != "-" else ""
    return f"{record.ref} {record.event}{zone}"


class Forwarder:
    """Queues alarm events for DC-09 and webhook targets and runs their delivery workers."""

    def __init__(
        self,
        config: ForwardConfig,
        queue_path: Path,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.queue_path = Path(config.queue) if config.queue else queue_path
        self.clock: Clock = clock or SystemClock()
        self.wall = wall
        self.queue: ForwardQueue | None = None
        self.workers: dict[str, Worker] = {}

    def require_queue(self) -> ForwardQueue:
        """The open queue (the forwarder must be started)."""
        if self.queue is None:
            raise RuntimeError("the forwarder is not started")
        return self.queue

    async def start(self, store: ReceiverStore | None = None) -> None:
        """Open the queue, catch up with ``store``, and start a worker per target."""
        self.queue = ForwardQueue(self.queue_path)
        if store is not None:
            self.catch_up(store)
        self.queue.forget_seen(self.clock.now() - SEEN_KEPT_S)
        for target in self.config.targets:
            worker: Worker = (
                Dc09Sender(target, self.queue, self.wall, self.clock)
                if isinstance(target, Dc09Target)
                else WebhookSender(target, self.queue, self.wall)
            )
            self.workers[target.name] = worker
            worker.start()
        logger.info(
            "forwarding to %s; queue %s",
            ", ".join(f"{w.kind} {n}" for n, w in self.workers.items()) or "nobody",
            self.queue_path,
        )

    async def stop(self, grace_s: float | None = None) -> None:
        """Let each item in flight finish, stop the workers, and close the queue."""
        for worker in self.workers.values():
            if grace_s is None:
                target = worker.retry
                grace = (
                    target.ack_timeout_s + target.connect_timeout_s
                    if isinstance(target, Dc09Target)
                    else target.timeout_s
                    if isinstance(target, WebhookTarget)
                    else 5.0
                )
            else:
                grace = grace_s
            await worker.stop(grace)
        self.workers.clear()
        if self.queue is not None:
            self.queue.close()
            self.queue = None

    def on_alarm(self, record: AlarmRecord, msg: protocol.Message | None) -> None:
        """Queue what a committed message changed, here and now (blocks for the queue's fsync).

        A queue that cannot be written is logged, not raised: the receiver has committed the
        alarm and must acknowledge it; the next start's catch-up queues it.
        """
        try:
            self.offer(record, phase_of(record, msg))
        except StorageError as exc:
            logger.error("%s: not queued for forwarding: %s", record.ref, exc)

    async def hand_on(self, record: AlarmRecord, msg: protocol.Message | None) -> None:
        """The receiver's hook, awaited before the unit is acknowledged: as :meth:`on_alarm`, with
        the queue's write (an fsync) in a thread so that the event loop serves other units."""
        try:
            _, names = await asyncio.to_thread(self._put, record, phase_of(record, msg))
        except StorageError as exc:
            logger.error("%s: not queued for forwarding: %s", record.ref, exc)
            return
        self._wake(names)

    def offer(self, record: AlarmRecord, phase: str) -> list[int]:
        """Queue one alarm event for every target that takes it; return the queue item ids."""
        ids, names = self._put(record, phase)
        self._wake(names)
        return ids

    def _put(self, record: AlarmRecord, phase: str) -> tuple[list[int], list[str]]:
        """Queue the event (thread-safe: the queue locks); the ids and the targets to wake."""
        queue = self.require_queue()
        if phase == "open" and record.unit_state == "closed" and queue.was_seen(record.id, "close"):
            return [], []  # an opening that arrived after its closing: the targets have the end
        entries: list[tuple[str, str, str]] = []
        for target in self.config.dc09:
            code = sia_code(record.event, phase, record.test)
            if code is not None:
                payload = {"code": code, "text": alarm_text(record), "unit": record.unit_id}
                entries.append((target.name, record.ref, json.dumps(payload)))
        if self.config.webhook:
            body = json.dumps(
                {"version": WEBHOOK_VERSION, "phase": phase, "alarm": record.to_json()},
                separators=(",", ":"),
            )
            entries.extend((t.name, record.ref, body) for t in self.config.webhook)
        if not entries:
            return [], []
        seen = (record.id, phase) if phase in ("open", "close") else None
        ids = queue.put(entries, self.clock.now(), seen)
        if ids:
            logger.info("%s: %s queued for %s", record.ref, phase, ", ".join(e[0] for e in entries))
        return ids, [name for name, _, _ in entries]

    def _wake(self, names: list[str]) -> None:
        for name in names:
            if name in self.workers:
                self.workers[name].wake()

    def catch_up(self, store: ReceiverStore) -> int:
        """Queue openings and closings the receiver committed but this queue never got."""
        queue = self.require_queue()
        since = queue.last_put()
        if since is None:  # a new queue: start from now, do not replay history
            queue.mark(self.clock.now())
            return 0
        start = since - CATCH_UP_MARGIN_S
        queued = 0
        for record in store.alarms_since(start):
            if record.received_at >= start and not queue.was_seen(record.id, "open"):
                queued += bool(self.offer(record, "open"))
            if record.unit_state == "closed" and not queue.was_seen(record.id, "close"):
                queued += bool(self.offer(record, "close"))
        if queued:
            logger.warning("forwarding: %d alarm events caught up after a restart", queued)
        return queued

    def depths(self) -> dict[tuple[str, str], int]:
        """Items waiting and dead per (target, state)."""
        return self.require_queue().depths()
