"""The units table: each unit's link, signal, modem state and modem resets from its heartbeats,
stored by the receiver and shown in the console (API, and the page in headless Chromium)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright, expect

from firmware.uplink import protocol
from host_tools.console.app import create_app
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import ReceiverStore
from tests.host_tools.console_helpers import PASSWORD

CHROMIUM = Path(os.environ.get("POLEWATCH_CHROMIUM", "/usr/bin/chromium"))
UI_TIMEOUT_MS = 2000


def heartbeat(unit: str, msg_id: int, **health: object) -> protocol.Heartbeat:
    """A heartbeat as the receiver decodes it from ``unit``."""
    sent = protocol.Heartbeat(msg_id=msg_id, time_s=round(time.time()), next_due_s=60, **health)  # type: ignore[arg-type]
    return protocol.decode(protocol.encode(sent), unit_id=unit)  # type: ignore[return-value]


@pytest.fixture
def fleet(console_store: ReceiverStore) -> ReceiverStore:
    """Three units: healthy, a hung modem after resets, and one with no modem at all."""
    now = time.time()
    console_store.ingest(heartbeat("pole-01", 1, rssi_dbm=-71), now)
    console_store.ingest(
        heartbeat("pole-02", 1, modem=protocol.ModemState.HUNG, modem_resets=2, faults=1), now
    )
    console_store.ingest(heartbeat("pole-03", 1), now)
    return console_store


@pytest.fixture
async def console_url(fleet: ReceiverStore, make_user: Any) -> AsyncIterator[str]:
    make_user("viewer")
    runner = web.AppRunner(create_app(fleet, EventBus()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()


def test_receiver_keeps_the_modem_state_of_each_unit(fleet: ReceiverStore) -> None:
    health = {u["unit_id"]: u["health"] for u in fleet.units()}
    assert health["pole-01"]["modem"] == "registered" and health["pole-01"]["rssi_dbm"] == -71
    assert (health["pole-02"]["modem"], health["pole-02"]["modem_resets"]) == ("hung", 2)
    assert health["pole-03"]["modem_resets"] == 0


async def test_console_shows_modem_state_and_resets(console_url: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it or set POLEWATCH_CHROMIUM")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"], headless=True
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(console_url)
            await page.locator("#login-name").fill("viewer")
            await page.locator("#login-password").fill(PASSWORD)
            await page.locator("#login-submit").click()
            rows = page.locator("#unit-rows tr")
            await expect(rows).to_have_count(3, timeout=UI_TIMEOUT_MS)
            await expect(page.locator("#no-units")).to_be_hidden()
            healthy, hung, wired = (rows.nth(i) for i in range(3))
            await expect(healthy.locator(".signal")).to_have_text("-71 dBm")
            await expect(healthy.locator(".modem")).to_have_text("registered")
            await expect(healthy.locator(".modem-resets")).to_have_text("0")
            await expect(hung.locator(".modem .modem-state")).to_have_class(
                "modem-state modem-hung"
            )
            await expect(hung.locator(".modem")).to_have_text("AT port hung")
            await expect(hung.locator(".modem-resets")).to_have_text("2")
            await expect(hung.locator(".signal")).to_have_text("—")
            await expect(wired.locator(".modem")).to_have_text("—")  # no modem: nothing to say
            await expect(wired).to_contain_text("online")
            assert errors == []
        finally:
            await browser.close()
