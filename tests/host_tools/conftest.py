"""Fixtures for the host tools' tests: a receiver store, an event bus, alarm messages, and console
users with a login helper."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient

from firmware.uplink import protocol
from host_tools.console.users import Users
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import AlarmRecord, ReceiverStore
from tests.host_tools.console_helpers import PASSWORD

MakeAlarm = Callable[..., protocol.Alarm]
Deliver = Callable[..., AlarmRecord]
MakeUser = Callable[..., str]
Login = Callable[..., Coroutine[Any, Any, str]]


@pytest.fixture
def console_store(receiver_db: Path | str) -> Iterator[ReceiverStore]:
    """An empty receiver store, on SQLite and on PostgreSQL (the storage suite runs on both)."""
    store = ReceiverStore(receiver_db)
    yield store
    store.close()


@pytest.fixture
def console_bus() -> EventBus:
    """A fresh event bus."""
    return EventBus()


@pytest.fixture
def make_alarm() -> MakeAlarm:
    """Build alarm messages as a unit sends them: a car fire unless told otherwise."""
    msg_ids = itertools.count(1)

    def make(**fields: Any) -> protocol.Alarm:
        values: dict[str, Any] = {
            "unit_id": "pole-17",
            "msg_id": next(msg_ids),
            "time_s": 1_795_123_800,
            "alarm_id": 1,
            "phase": protocol.Phase.OPEN,
            "event": protocol.EventKind.FIRE,
            "priority": 1,
            "zone": "lot",
            "rule": "fire-in-lot",
            "max_temp_dc": 1402,
            "box": (40, 60, 52, 71),
            "actions": (("floodlight", 120), ("siren", 60)),
        }
        values.update(fields)
        return protocol.Alarm(**values)

    return make


@pytest.fixture
def deliver(console_store: ReceiverStore, console_bus: EventBus) -> Deliver:
    """Commit an alarm message and publish it, as the receiver does; return the alarm."""

    def run(msg: protocol.Alarm, received_at: float | None = None) -> AlarmRecord:
        ingested = console_store.ingest(msg, time.time() if received_at is None else received_at)
        assert ingested.alarm is not None
        console_bus.publish({"type": "alarm", "alarm": ingested.alarm.to_json()})
        return ingested.alarm

    return run


@pytest.fixture
def make_user(console_store: ReceiverStore) -> MakeUser:
    """Create a console user with the test password; return its name (default: the role's)."""
    users = Users(console_store)

    def make(role: str, name: str | None = None) -> str:
        name = name or role
        users.add(name, role, PASSWORD, time.time())
        return name

    return make


@pytest.fixture
def login() -> Login:
    """Log a client (a test client or a session on ``base``) in; return the CSRF token."""

    async def run(
        client: TestClient[web.Request, web.Application] | ClientSession,
        name: str,
        base: str = "",
    ) -> str:
        resp = await client.post(f"{base}/api/login", json={"name": name, "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        csrf: str = (await resp.json())["csrf"]
        return csrf

    return run
