"""Delivery workers: one asyncio task per target takes its queue's head until the target has it.

The base :class:`Worker` owns the loop (stop-and-wait, retries with exponential backoff and
jitter, a graceful stop that lets the item in flight finish); :class:`Dc09Sender` is the SIA DC-09
transmitter over TCP: it keeps one connection while there is work, waits for the ACK of each frame
before the next, follows the receiver's clock when a NAK carries it, moves a message the receiver
answers with DUH to the dead letters, and, when the target has ``link_test_s``, sends a NULL
message (a link test) whenever the link has carried no answered frame for that long.

Link tests are supervision, not data: they are never queued, an alarm waiting in the queue always
goes first (a queue that is not empty tests the link itself), and a failed one is not resent
under its number: the next test is a new message, after the retry backoff (at most
``link_test_s``). A failed test counts in ``failures`` and sets ``up`` false, like a failed
delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from firmware.clock import Clock, SystemClock
from firmware.errors import ProtocolError, StorageError
from host_tools.forward import dc09
from host_tools.forward.config import Dc09Target, Retry
from host_tools.forward.queue import ForwardQueue, Item

logger = logging.getLogger(__name__)

RESYNC_THRESHOLD_S = 2.0  # a NAK's time this far from ours: follow it and resend at once
MAX_QUICK_RETRIES = 2  # resends without backoff after a resync, before backing off


class Outcome(enum.Enum):
    """What one delivery attempt came to."""

    DELIVERED = "delivered"
    RETRY = "retry"  # later, with backoff
    RETRY_NOW = "retry-now"  # at once (the clock was corrected)
    DEAD = "dead"  # refused for good: to the dead letters


@dataclass(frozen=True)
class Result:
    """An attempt's outcome and why."""

    outcome: Outcome
    detail: str = ""


class Worker(ABC):
    """Delivers one target's queue in order; subclasses say how to deliver one item."""

    kind = "target"

    def __init__(
        self, name: str, queue: ForwardQueue, retry: Retry, clock: Clock | None = None
    ) -> None:
        self.name, self.queue, self.retry = name, queue, retry
        self.clock: Clock = clock or SystemClock()  # times idle work (link tests); tests swap it
        self.delivered = 0  # since start, for the metrics
        self.failures = 0
        self.dead = 0
        self.up: bool | None = None  # did the last attempt reach the target?
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Tell the worker its queue has something new."""
        self._wake.set()

    def start(self) -> None:
        """Start delivering."""
        self._task = asyncio.create_task(self._run(), name=f"forward-{self.name}")

    async def stop(self, grace_s: float) -> None:
        """Let the attempt in flight finish (at most ``grace_s``), then stop."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(grace_s):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.close()

    async def _run(self) -> None:
        failures = 0  # in a row, for the backoff
        while not self._stop.is_set():
            self._wake.clear()  # before looking, so that no wake-up between is lost
            try:
                item = await asyncio.to_thread(self.queue.head, self.name)
            except StorageError as exc:
                logger.error("%s: %s", self.name, exc)
                await self._pause(self.retry.retry_max_s)
                continue
            if item is None:
                due = self.idle_due()
                if due is not None and self.clock.now() >= due:
                    await self.idle()
                    continue  # look at the queue again: an alarm may have come meanwhile
                await self.close()  # nothing to do: do not hold a connection open
                await self._wait_for_work(due)
                continue
            result = await self.deliver(item)
            try:
                failures = await self._settle(item, result, failures)
            except StorageError as exc:
                logger.error("%s: %s", self.name, exc)
                await self._pause(self.retry.retry_max_s)
                continue
            if result.outcome is Outcome.RETRY or (
                result.outcome is Outcome.RETRY_NOW and failures > MAX_QUICK_RETRIES
            ):
                await self._pause(self.backoff(failures))

    async def _settle(self, item: Item, result: Result, failures: int) -> int:
        """Record an attempt's outcome in the queue; return the failures in a row."""
        if result.outcome is Outcome.DELIVERED:
            await asyncio.to_thread(self.queue.delivered, item.id)
            self.delivered += 1
            self.up, self.last_error = True, None
            logger.info("%s: %s delivered (item %d)", self.name, item.ref, item.id)
            return 0
        if result.outcome is Outcome.DEAD:
            await asyncio.to_thread(self.queue.dead, item.id, result.detail)
            self.dead += 1
            self.up = True  # the target answered; it refused this one
            logger.error(
                "%s: %s refused for good, kept as a dead letter (item %d): %s",
                self.name,
                item.ref,
                item.id,
                result.detail,
            )
            return 0
        await asyncio.to_thread(self.queue.failed, item.id, result.detail)
        self.failures += 1
        self.up, self.last_error = False, result.detail
        logger.warning(
            "%s: %s not delivered (attempt %d): %s",
            self.name,
            item.ref,
            item.attempts + 1,
            result.detail,
        )
        return failures + 1

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt: exponential, capped, with jitter."""
        ceiling = min(
            self.retry.retry_max_s, self.retry.retry_initial_s * 2 ** min(failures - 1, 30)
        )
        return random.uniform(ceiling / 2, ceiling)

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the worker is stopped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()

    async def _wait_for_work(self, until: float | None = None) -> None:
        """Wait for a wake-up, the stop, or the clock reaching ``until``."""
        waiters: list[asyncio.Future[object]] = [
            asyncio.ensure_future(e.wait()) for e in (self._wake, self._stop)
        ]
        if until is not None:
            waiters.append(asyncio.ensure_future(self.clock.sleep_until(until)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    @abstractmethod
    async def deliver(self, item: Item) -> Result:
        """Try once to hand ``item`` to the target."""

    def idle_due(self) -> float | None:
        """When (``clock`` time) :meth:`idle` is due while the queue is empty; None: never."""
        return None

    async def idle(self) -> None:  # noqa: B027 - optional: only DC-09 supervises its link
        """Work for an empty queue, once :meth:`idle_due` has come (a link test)."""

    async def close(self) -> None:  # noqa: B027 - optional: not every target holds one
        """Release connections (the worker may start again later)."""


class Dc09Sender(Worker):
    """SIA DC-09 transmitter over TCP to one alarm receiving centre."""

    kind = "dc09"

    def __init__(
        self,
        target: Dc09Target,
        queue: ForwardQueue,
        wall: Callable[[], float] = time.time,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(target.name, queue, target, clock)
        self.target = target
        self.wall = wall  # this host's clock for the frames' timestamps; a test may skew it
        self.offset_s = 0.0  # the receiver's clock minus ours, learnt from NAKs
        self._key = target.key_bytes
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.link_tests = 0  # NULL messages the receiver acknowledged, since start
        self.link_test_failures = 0
        self._link_failed = 0  # in a row, for the backoff
        # The link was last known good at the start: the first test is one interval later.
        self._link_due = self.clock.now() + target.link_test_s if target.link_test_s else None

    @property
    def where(self) -> str:
        """``host:port`` of the receiving centre."""
        return f"{self.target.host}:{self.target.port}"

    def frame_for(self, item: Item, sequence: int) -> bytes:
        """The DC-09 frame of a queued event, stamped with the (corrected) time of now."""
        data = json.loads(item.payload)
        event = dc09.Event(code=data["code"], text=data.get("text", ""), area=data.get("area"))
        when = datetime.fromtimestamp(self.wall() + self.offset_s, UTC)
        account = self.target.account_of(data.get("unit", ""))
        return dc09.build(
            event, sequence, account, self.target.receiver, self.target.line, when, self._key
        )

    async def deliver(self, item: Item) -> Result:
        """Send one frame and wait for its answer."""
        sequence = await asyncio.to_thread(self.queue.sequence_for, item)
        result = await self._exchange(self.frame_for(item, sequence), sequence)
        if result.outcome in (Outcome.DELIVERED, Outcome.DEAD):
            self._link_good()  # the receiver answered: the link needs no test for a while
        return result

    def link_test_frame(self) -> bytes:
        """A NULL message under the target's account, stamped with the (corrected) time of now."""
        when = datetime.fromtimestamp(self.wall() + self.offset_s, UTC)
        t = self.target
        return dc09.link_test(t.account, t.receiver, t.line, when, self._key)

    def idle_due(self) -> float | None:
        """When the next link test is due (``clock`` time); None when link tests are off."""
        return self._link_due

    async def idle(self) -> None:
        """Send a link test now."""
        await self.link_test()

    async def link_test(self) -> bool:
        """Send a NULL message and wait for its ACK; record the outcome; True if acknowledged."""
        result = await self._exchange(self.link_test_frame(), dc09.NULL_SEQUENCE)
        quick = 0
        while result.outcome is Outcome.RETRY_NOW and quick < MAX_QUICK_RETRIES:
            quick += 1  # the clock was corrected from a NAK: a new test with the new time
            result = await self._exchange(self.link_test_frame(), dc09.NULL_SEQUENCE)
        if result.outcome is Outcome.DELIVERED:
            if self.up is False:
                logger.info("%s: link test to %s answered: the link is back", self.name, self.where)
            self.link_tests += 1
            self.up, self.last_error = True, None
            self._link_good()
            return True
        if result.outcome is Outcome.DEAD:
            # The receiver answered, so the path works, but it does not take link tests.
            logger.error("%s: link test: %s; check the receiver's set-up", self.name, result.detail)
            self.up = True
            self._link_good()
            return False
        self.failures += 1
        self.link_test_failures += 1
        self._link_failed += 1
        self.up, self.last_error = False, f"link test: {result.detail}"
        if self._link_due is not None:
            retry = min(self.backoff(self._link_failed), self.target.link_test_s)
            self._link_due = self.clock.now() + retry
        logger.warning(
            "%s: link test failed (%d in a row): %s", self.name, self._link_failed, result.detail
        )
        return False

    def _link_good(self) -> None:
        """An answered frame: restart the link-test interval."""
        self._link_failed = 0
        if self._link_due is not None:
            self._link_due = self.clock.now() + self.target.link_test_s

    async def _exchange(self, frame: bytes, sequence: int) -> Result:
        """Send one frame and read its answer: what it came to."""
        try:
            reader, writer = await self._connect()
            writer.write(frame)
            await writer.drain()
            async with asyncio.timeout(self.target.ack_timeout_s):
                raw = await _read_answer(reader)
        except TimeoutError:
            await self.close()
            return Result(
                Outcome.RETRY, f"{self.where}: no answer within {self.target.ack_timeout_s:g} s"
            )
        except (OSError, EOFError) as exc:
            await self.close()
            return Result(Outcome.RETRY, f"{self.where}: {exc.__class__.__name__}: {exc}")
        try:
            answer = dc09.parse_response(raw, self._key)
        except ProtocolError as exc:
            await self.close()
            return Result(Outcome.RETRY, f"{self.where}: {exc}")
        logger.debug("%s: seq %04d answered %s", self.name, sequence, answer.kind)
        if answer.kind in ("ACK", "RSP"):
            if answer.sequence != sequence:
                await self.close()
                return Result(
                    Outcome.RETRY,
                    f"{self.where}: ACK of sequence {answer.sequence}, not {sequence}",
                )
            return Result(Outcome.DELIVERED)
        if answer.kind == "DUH":
            return Result(Outcome.DEAD, f"{self.where}: DUH (the receiver does not understand it)")
        return self._nak(answer)

    def _nak(self, answer: dc09.Response) -> Result:
        """A NAK: follow the receiver's clock if it says we are off, and resend."""
        if answer.time is None:
            return Result(Outcome.RETRY, f"{self.where}: NAK")
        offset = answer.time.timestamp() - self.wall()
        if abs(offset - self.offset_s) <= RESYNC_THRESHOLD_S:
            return Result(Outcome.RETRY, f"{self.where}: NAK (clocks agree: a bad frame?)")
        logger.warning(
            "%s: NAK with the receiver's time %s: our clock is off by %+.0f s; resending",
            self.name,
            answer.time.isoformat(),
            -offset,
        )
        self.offset_s = offset
        return Result(Outcome.RETRY_NOW, f"{self.where}: NAK, clock resynchronised")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None or self._conn[1].is_closing():
            async with asyncio.timeout(self.target.connect_timeout_s):
                self._conn = await asyncio.open_connection(self.target.host, self.target.port)
            logger.info("%s: connected to %s", self.name, self.where)
        return self._conn

    async def close(self) -> None:
        """Close the connection, if any."""
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    """Read until one whole answer is in (a frame to its CR, or a bare quoted word)."""
    buffer = b""
    while not dc09.complete(buffer):
        chunk = await reader.read(1024)
        if not chunk:
            raise EOFError("the receiver closed the connection")
        buffer += chunk
    end = buffer.find(b"\r")
    return buffer if end < 0 else buffer[: end + 1]
