"""Shared by the console tests: the test accounts' password and browser settings."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientSession
from playwright.async_api import Browser, async_playwright

from firmware.uplink import protocol
from host_tools.console.users import Users
from host_tools.receiver.store import CommandRecord, ReceiverStore

# Test accounts' password (never a default anywhere else: the console has no default user).
PASSWORD = "correct horse battery staple"
# POLEWATCH_CHROMIUM lets a developer point at another Chromium build.
CHROMIUM = Path(os.environ.get("POLEWATCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class ManualClock:
    """The receiver's clock, moved by the test (implements firmware.clock.Clock)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        """The time the test set."""
        return self.t

    async def sleep_until(self, t: float) -> None:
        """Jump there."""
        self.t = max(self.t, t)


class StoreCommander:
    """Queues unit commands in the store, as the receiver does (without a CoAP endpoint)."""

    def __init__(self, store: ReceiverStore, clock: ManualClock | None = None) -> None:
        self.store, self.clock = store, clock

    def queue_command(
        self, unit_id: str, op: protocol.CommandOp, arg: str | None = None, ttl_s: float = 600.0
    ) -> CommandRecord:
        """Queue it."""
        import time

        now = self.clock.now() if self.clock is not None else time.time()
        return self.store.queue_command(unit_id, op, arg, now, ttl_s)

    def update_config(self, unit_id: str, text: str, ttl_s: float = 3600.0) -> CommandRecord:
        """Not used by these tests."""
        raise NotImplementedError


async def console_session(
    http: ClientSession, base: str, store: ReceiverStore, role: str = "supervisor"
) -> str:
    """Make a console user of ``role`` in ``store``, log ``http`` in at ``base``; return CSRF.

    ``http`` must be an aiohttp ClientSession with ``CookieJar(unsafe=True)``: the default jar
    keeps no cookies for an IP address such as 127.0.0.1.
    """
    Users(store).add(f"test-{role}", role, PASSWORD, time.time())
    base = base.rstrip("/")
    async with http.post(
        f"{base}/api/login", json={"name": f"test-{role}", "password": PASSWORD}
    ) as resp:
        assert resp.status == 200, await resp.text()
        csrf: str = (await resp.json())["csrf"]
    return csrf


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium driven by Playwright, or a skip where none is installed."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install it (Debian: apt-get install chromium) "
            "or set POLEWATCH_CHROMIUM"
        )
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield b
        await b.close()
