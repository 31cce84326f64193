"""The console's HTTP API: alarm list and detail, the live event stream, the page's files."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from firmware.uplink import protocol
from host_tools.console.app import client_count, create_app
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import ReceiverStore

# Upper bound for waits that only guard against a hang; nothing asserts how fast things are.
HANG_GUARD_S = 10.0

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Coroutine[Any, Any, Client]]


@pytest.fixture
async def make_client(
    console_store: ReceiverStore, console_bus: EventBus, make_user: Any, login: Any
) -> AsyncIterator[MakeClient]:
    """Start the console on a test server, logged in as an operator; every client is closed."""
    clients: list[Client] = []
    operator = make_user("operator")

    async def make(**options: Any) -> Client:
        client: Client = TestClient(TestServer(create_app(console_store, console_bus, **options)))
        await client.start_server()
        clients.append(client)
        await login(client, operator)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    """A client of a console with the default settings."""
    return await make_client()


async def next_frame(resp: ClientResponse) -> list[str]:
    """The lines of the next SSE frame (up to its blank line); [] at the end of the stream."""
    lines: list[str] = []
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            raw = await resp.content.readline()
            if not raw:
                return lines
            line = raw.decode().rstrip("\n")
            if not line:
                if lines:
                    return lines
                continue
            lines.append(line)


async def next_alarm(resp: ClientResponse) -> dict[str, Any]:
    """The alarm of the next ``alarm`` event on the stream, skipping comments and settings."""
    while True:
        frame = await next_frame(resp)
        assert frame, "the stream ended"
        if frame[0] == "event: alarm":
            assert len(frame) == 2 and frame[1].startswith("data: "), frame
            data: dict[str, Any] = json.loads(frame[1].removeprefix("data: "))
            return data


async def test_health(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"ok": True}


async def test_alarm_list_is_in_queue_order(
    client: Client, console_store: ReceiverStore, make_alarm: Any
) -> None:
    # (unit, alarm, priority, received_at): the queue is by priority, then oldest first.
    for unit, alarm_id, priority, received in [
        ("pole-1", 1, 3, 100.0),
        ("pole-2", 1, 1, 300.0),
        ("pole-3", 1, 2, 50.0),
        ("pole-4", 1, 1, 200.0),
    ]:
        msg = make_alarm(unit_id=unit, alarm_id=alarm_id, priority=priority)
        console_store.ingest(msg, received)

    resp = await client.get("/api/alarms")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    alarms = await resp.json()
    assert [a["ref"] for a in alarms] == ["pole-4/1", "pole-2/1", "pole-3/1", "pole-1/1"]
    first = alarms[0]
    assert first["event"] == "fire"
    assert first["zone"] == "lot"
    assert first["max_temp_c"] == pytest.approx(140.2)
    assert first["actions"] == [["floodlight", 120], ["siren", 60]]
    assert first["unit_state"] == "open"


async def test_empty_list(client: Client) -> None:
    resp = await client.get("/api/alarms")
    assert await resp.json() == []


async def test_alarm_detail_has_the_timeline(
    client: Client, console_store: ReceiverStore, make_alarm: Any
) -> None:
    opened = console_store.ingest(make_alarm(alarm_id=7), 1000.0).alarm
    assert opened is not None
    console_store.ingest(
        make_alarm(alarm_id=7, phase=protocol.Phase.CLOSE, time_s=1_795_123_900), 1100.0
    )

    resp = await client.get(f"/api/alarms/{opened.id}")
    assert resp.status == 200
    detail = await resp.json()
    assert detail["id"] == opened.id
    assert detail["ref"] == "pole-17/7"
    assert detail["unit_state"] == "closed"
    assert [(t["phase"], t["received_at"]) for t in detail["timeline"]] == [
        ("open", 1000.0),
        ("close", 1100.0),
    ]


@pytest.mark.parametrize("pk", ["1", "999", "-3", "0", "99999999999999999999999"])
async def test_unknown_alarm_is_404(client: Client, pk: str) -> None:
    resp = await client.get(f"/api/alarms/{pk}")
    assert resp.status == 404
    assert "error" in await resp.json()


@pytest.mark.parametrize("pk", ["abc", "1.5", "0x10", "1e3", "%201"])
async def test_non_integer_alarm_id_is_400(client: Client, pk: str) -> None:
    resp = await client.get(f"/api/alarms/{pk}")
    assert resp.status == 400
    assert "integer" in (await resp.json())["error"]


async def test_store_failure_is_503(client: Client, console_store: ReceiverStore) -> None:
    console_store.close()
    resp = await client.get("/api/alarms")
    assert resp.status == 503
    assert "error" in await resp.json()


async def test_page_and_its_files(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "<title>polewatch console</title>" in page
    assert 'id="alarm-rows"' in page
    # Nothing may come from another origin, and the browser is told so.
    assert "'self'" in resp.headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page
    for path, kind in [
        ("/static/console.js", "javascript"),
        ("/static/console.css", "text/css"),
        ("/static/index.html", "text/html"),
    ]:
        resp = await client.get(path)
        assert resp.status == 200, path
        assert kind in resp.content_type, path
        text = await resp.text()
        assert "http://" not in text and "https://" not in text, path
    assert (await client.get("/static/nothing.js")).status == 404
    assert (await client.get("/static/../app.py")).status in (403, 404)


async def test_event_stream_pushes_alarms(
    client: Client,
    console_bus: EventBus,
    make_alarm: Any,
    deliver: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="host_tools.console.app")
    async with client.get("/api/events") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-store"

        console_bus.publish({"type": "unit-online", "unit": "pole-17"})  # not for consoles
        record = deliver(make_alarm(alarm_id=3))
        alarm = await next_alarm(resp)
        assert alarm == record.to_json()
        assert alarm["ref"] == "pole-17/3"

        # The close of the same alarm arrives as an update of the same id.
        deliver(make_alarm(alarm_id=3, phase=protocol.Phase.CLOSE))
        closed = await next_alarm(resp)
        assert closed["id"] == record.id
        assert closed["unit_state"] == "closed"

    pushed = [r.getMessage() for r in caplog.records if "pushed to" in r.getMessage()]
    assert pushed == ["pole-17/3: pushed to 1 console client(s)"] * 2


async def test_event_stream_fans_out_to_every_client(
    client: Client, make_alarm: Any, deliver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="host_tools.console.app")
    async with client.get("/api/events") as one, client.get("/api/events") as two:
        record = deliver(make_alarm(alarm_id=4))
        assert (await next_alarm(one))["id"] == record.id
        assert (await next_alarm(two))["id"] == record.id
    assert "pole-17/4: pushed to 2 console client(s)" in caplog.messages


async def test_event_stream_keeps_alive(make_client: MakeClient) -> None:
    client = await make_client(keepalive_s=0.05)
    async with client.get("/api/events") as resp:
        frames = [await next_frame(resp) for _ in range(3)]
    assert [": keep-alive"] in frames


async def test_client_that_goes_away_is_unsubscribed(make_client: MakeClient) -> None:
    client = await make_client(keepalive_s=0.05)
    async with client.get("/api/events") as resp:
        await next_frame(resp)
        assert client_count(client.app) == 1
    async with asyncio.timeout(HANG_GUARD_S):
        while client_count(client.app) != 0:
            await asyncio.sleep(0.02)


async def test_shutdown_ends_open_streams(client: Client) -> None:
    async with client.get("/api/events") as resp:
        await next_frame(resp)
        closing = asyncio.create_task(client.server.close())
        # The stream ends instead of holding the shutdown up (aiohttp would wait 60 s for it).
        assert await next_frame(resp) == []
        async with asyncio.timeout(HANG_GUARD_S):
            await closing
