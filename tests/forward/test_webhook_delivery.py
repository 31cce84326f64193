"""Signed webhooks to an aiohttp server on loopback that checks the HMAC itself."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from firmware.uplink import protocol
from host_tools.forward.forwarder import Forwarder
from host_tools.forward.webhook import sign, verify
from polewatch.netutil import free_port
from tests.forward.forward_helpers import AlarmMaker, config, until, webhook_target

SECRET = "s3cret-shared-with-the-police"


class HookPeer:
    """A webhook endpoint: checks each request's signature with hmac, and records it."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port(socket.SOCK_STREAM)
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.refused_signatures = 0
        self.fail_next = 0  # answer this many requests with 503
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Polewatch-Timestamp"]
        mac = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        if not hmac.compare_digest(
            "sha256=" + mac.hexdigest(), request.headers["X-Polewatch-Signature"]
        ):
            self.refused_signatures += 1
            return web.Response(status=401, text="bad signature")
        if abs(time.time() - int(stamp)) > 300:
            return web.Response(status=401, text="stale")
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503, text="busy")
        self.got.append((request.headers["X-Polewatch-Delivery"], json.loads(body)))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def phases(self) -> list[tuple[str, str]]:
        return [(body["alarm"]["ref"], body["phase"]) for _, body in self.got]


@pytest.fixture
async def hook() -> AsyncIterator[HookPeer]:
    peer = HookPeer(SECRET)
    yield peer
    await peer.stop()


async def test_each_event_is_posted_signed(
    hook: HookPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    await hook.start()
    fwd = Forwarder(config(webhook=[webhook_target(hook.url, SECRET)]), tmp_path / "f.sqlite")
    await fwd.start()
    try:
        for phase in protocol.Phase:
            record, msg = commit(3, phase=phase)
            fwd.on_alarm(record, msg)
        await until(lambda: len(hook.got) == 3)
    finally:
        await fwd.stop()
    assert hook.phases() == [("pole-7/3", "open"), ("pole-7/3", "update"), ("pole-7/3", "close")]
    body = hook.got[-1][1]
    assert body["version"] == 1
    assert body["alarm"]["event"] == "fire" and body["alarm"]["unit_state"] == "closed"
    assert len({delivery for delivery, _ in hook.got}) == 3


def test_sign_and_verify_agree() -> None:
    body = b'{"a":1}'
    now = time.time()
    stamp = str(int(now))
    sig = sign(SECRET, stamp, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(SECRET, stamp, body, sig, now=now)
    assert not verify(SECRET, stamp, body + b" ", sig, now=now)
    assert not verify("another secret....", stamp, body, sig, now=now)
    assert not verify(SECRET, stamp, body, sig, now=now + 301)  # a replay, too late
    assert not verify(SECRET, "not-a-number", body, sig, now=now)


async def test_server_errors_are_retried_in_order(
    hook: HookPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    hook.fail_next = 3
    await hook.start()
    fwd = Forwarder(config(webhook=[webhook_target(hook.url, SECRET)]), tmp_path / "f.sqlite")
    await fwd.start()
    try:
        for i in (1, 2, 3):
            fwd.on_alarm(*commit(i))
        await until(lambda: len(hook.got) == 3)
        worker = fwd.workers["hook"]
    finally:
        await fwd.stop()
    assert worker.failures == 3
    assert hook.phases() == [("pole-7/1", "open"), ("pole-7/2", "open"), ("pole-7/3", "open")]


async def test_a_refused_delivery_becomes_a_dead_letter(
    hook: HookPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    await hook.start()
    wrong = webhook_target(hook.url, "not the shared secret", name="wrong")
    right = webhook_target(hook.url, SECRET, name="right")
    fwd = Forwarder(config(webhook=[wrong, right]), tmp_path / "f.sqlite")
    await fwd.start()
    try:
        fwd.on_alarm(*commit(1))
        await until(lambda: fwd.depths().get(("wrong", "dead"), 0) == 1)
        await until(lambda: len(hook.got) == 1)
        dead = fwd.require_queue().dead_letters("wrong")
    finally:
        await fwd.stop()
    assert hook.refused_signatures == 1
    assert "HTTP 401" in dead[0][1]


async def test_webhooks_survive_a_forwarder_restart_while_the_endpoint_is_down(
    hook: HookPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    cfg = config(webhook=[webhook_target(hook.url, SECRET)])
    first = Forwarder(cfg, tmp_path / "f.sqlite")
    await first.start()
    for i in (1, 2, 3, 4):
        first.on_alarm(*commit(i))
    await until(lambda: first.workers["hook"].failures >= 1, what="a refused connection")
    await first.stop()
    await hook.start()
    second = Forwarder(cfg, tmp_path / "f.sqlite")
    await second.start()
    try:
        await until(lambda: len(hook.got) == 4)
    finally:
        await second.stop()
    assert [ref for ref, _ in hook.phases()] == ["pole-7/1", "pole-7/2", "pole-7/3", "pole-7/4"]
