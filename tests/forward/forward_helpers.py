"""Helpers for the forwarding tests: pysiaalarm's TCP receiver on loopback, a store, alarms."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pysiaalarm import SIAAccount
from pysiaalarm.aio import SIAClient
from pysiaalarm.event import SIAEvent

from firmware.uplink import protocol
from host_tools.forward.config import Dc09Target, ForwardConfig, WebhookTarget
from host_tools.receiver.store import AlarmRecord, ReceiverStore
from polewatch.netutil import free_port

PLAIN_ACCOUNT = "AAA"
SECRET_ACCOUNT = "BBB"
# pysiaalarm takes a key as 16/24/32 characters and uses their ASCII bytes as the AES key;
# polewatch's config takes the key's bytes as hex, so the same key is the characters' hex.
PEER_KEY = "0123456789ABCDEF"
KEY_HEX = PEER_KEY.encode().hex()
FAST = {"retry_initial_s": 0.05, "retry_max_s": 0.3, "ack_timeout_s": 2.0}


@dataclass(frozen=True)
class Got:
    """One event as pysiaalarm took it."""

    account: str
    code: str
    text: str
    sequence: int
    encrypted: bool


class SiaPeer:
    """pysiaalarm's asyncio TCP receiver on a loopback port that can be stopped and restarted.

    It listens with the library's own connection handler (what ``SIAClientTCP.async_start``
    binds) and also closes the open connections when stopped, as a receiving centre that goes
    down would; asyncio's ``Server.close`` in Python 3.11 leaves them open.
    """

    def __init__(self, accounts: list[SIAAccount], port: int | None = None) -> None:
        self.port = port or free_port(socket.SOCK_STREAM)
        self.accounts = accounts
        self.got: list[Got] = []
        self.client: SIAClient | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _on_event(self, event: SIAEvent) -> None:
        text = next((x.value for x in event.extended_data or [] if x.identifier == "I"), "")
        self.got.append(
            Got(
                str(event.account),
                str(event.code),
                str(text),
                int(event.sequence or 0),
                bool(event.encrypted),
            )
        )

    async def start(self) -> None:
        """Listen (again)."""
        self.client = SIAClient("127.0.0.1", self.port, self.accounts, self._on_event)
        handler = self.client.sia_server.handle_line

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                await handler(reader, writer)
            finally:
                self._writers.discard(writer)

        self._server = await asyncio.start_server(handle, "127.0.0.1", self.port)

    def set_accounts(self, accounts: list[SIAAccount]) -> None:
        """Change the accounts it knows (an operator adds one at the receiving centre)."""
        self.accounts = accounts
        if self.client is not None:
            self.client.accounts = accounts

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def texts(self, account: str | None = None) -> list[str]:
        """The alarm texts received, in order."""
        return [g.text for g in self.got if account is None or g.account == account]


def accounts() -> list[SIAAccount]:
    """A plain and an encrypted account, as the receiving centre has them."""
    return [SIAAccount(PLAIN_ACCOUNT), SIAAccount(SECRET_ACCOUNT, PEER_KEY)]


@pytest.fixture
async def peer() -> AsyncIterator[SiaPeer]:
    """pysiaalarm's receiver, not started (tests start it when they want it up)."""
    p = SiaPeer(accounts())
    yield p
    await p.stop()


def dc09_target(port: int, name: str = "arc", **fields: Any) -> Dc09Target:
    """A DC-09 target on loopback with fast retries."""
    values: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "account": PLAIN_ACCOUNT,
        "receiver": "1",
        "line": "2",
        **FAST,
    }
    values.update(fields)
    return Dc09Target.model_validate(values)


def webhook_target(url: str, secret: str, name: str = "hook", **fields: Any) -> WebhookTarget:
    """A webhook target with fast retries."""
    values: dict[str, Any] = {
        "name": name,
        "url": url,
        "secret": secret,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.3,
        "timeout_s": 2.0,
    }
    values.update(fields)
    return WebhookTarget.model_validate(values)


def config(
    dc09: list[Dc09Target] | None = None, webhook: list[WebhookTarget] | None = None
) -> ForwardConfig:
    """A forwarding config with these targets."""
    return ForwardConfig(dc09=dc09 or [], webhook=webhook or [])


async def until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Wait for ``cond`` (polling); fail after ``timeout`` seconds (a bound, not a measure)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


@pytest.fixture
def store(receiver_db: Path | str) -> Iterator[ReceiverStore]:
    """An empty receiver store, on SQLite and on PostgreSQL."""
    s = ReceiverStore(receiver_db)
    yield s
    s.close()


AlarmMaker = Callable[..., tuple[AlarmRecord, protocol.Alarm]]


@pytest.fixture
def commit(store: ReceiverStore) -> AlarmMaker:
    """Commit an alarm message to the store as the receiver does; return the record and message."""
    msg_ids = itertools.count(1)

    def make(
        alarm_id: int,
        phase: protocol.Phase = protocol.Phase.OPEN,
        event: protocol.EventKind = protocol.EventKind.FIRE,
        unit: str = "pole-7",
        received_at: float | None = None,
        **fields: Any,
    ) -> tuple[AlarmRecord, protocol.Alarm]:
        now = time.time() if received_at is None else received_at
        msg = protocol.Alarm(
            unit_id=unit,
            msg_id=next(msg_ids),
            time_s=int(now),
            alarm_id=alarm_id,
            phase=phase,
            event=event,
            priority=1,
            zone="lot-north",
            **fields,
        )
        result = store.ingest(msg, now)
        assert result.alarm is not None
        return result.alarm, msg

    return make
