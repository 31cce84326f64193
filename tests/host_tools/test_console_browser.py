"""The console page in a real headless Chromium: alarms appear and update live, without reload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from firmware.uplink import protocol
from host_tools.console.app import create_app
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import ReceiverStore
from tests.host_tools.console_helpers import PASSWORD, chromium

UI_TIMEOUT_MS = 2000
HANG_GUARD_S = 10.0  # only guards against a hang
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"


class Console:
    """The console application served on 127.0.0.1, in the test's event loop."""

    def __init__(self, store: ReceiverStore, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self.port = 0
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        """Serve a fresh application, on the same port as before if there was one."""
        self.runner = web.AppRunner(create_app(self.store, self.bus), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving, as a receiver that shuts down does."""
        if self.runner is not None:
            async with asyncio.timeout(HANG_GUARD_S):
                await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium, or a skip where none is installed."""
    async with chromium() as b:
        yield b


@pytest.fixture
async def console(console_store: ReceiverStore, console_bus: EventBus) -> AsyncIterator[Console]:
    """The console, started."""
    c = Console(console_store, console_bus)
    await c.start()
    yield c
    await c.stop()


async def log_in(page: Page, name: str) -> None:
    """Log in through the console's login form."""
    await page.locator("#login-name").fill(name)
    await page.locator("#login-password").fill(PASSWORD)
    await page.locator("#login-submit").click()
    await expect(page.locator("#whoami")).to_contain_text(name, timeout=UI_TIMEOUT_MS)


@pytest.fixture
async def page(browser: Browser, console: Console, make_user: Any) -> AsyncIterator[Page]:
    """A page on the console, logged in as an operator; fails the test on script errors or
    requests to other origins."""
    operator = make_user("operator")
    context = await browser.new_context(viewport={"width": 1280, "height": 640})
    p = await context.new_page()
    script_errors: list[str] = []
    foreign: list[str] = []
    p.on("pageerror", lambda exc: script_errors.append(str(exc)))

    def on_request(request: Any) -> None:
        if not request.url.startswith((console.url, "data:")):
            foreign.append(request.url)

    p.on("request", on_request)
    await p.goto(console.url)
    await log_in(p, operator)
    yield p
    await context.close()
    assert script_errors == []
    assert foreign == []


async def row_refs(page: Page) -> list[str]:
    """The data-ref of each alarm row, top to bottom."""
    refs: list[str] = await page.locator("#alarm-rows tr").evaluate_all(
        "rows => rows.map(r => r.dataset.ref)"
    )
    return refs


async def test_alarms_appear_and_update_live(
    page: Page, console: Console, make_alarm: Any, deliver: Any
) -> None:
    await expect(page).to_have_title("polewatch console")
    await expect(page.get_by_text("No alarms")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#connection")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    fire = deliver(make_alarm(alarm_id=42))
    row = page.locator(f'#alarm-rows tr[data-alarm-id="{fire.id}"]')
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(row).to_have_attribute("data-ref", "pole-17/42")
    await expect(row).to_contain_text("Fire")
    await expect(row).to_contain_text("lot")
    await expect(row).to_contain_text("140.2 °C")
    await expect(row).to_contain_text("floodlight 120 s, siren 60 s")
    await expect(row.locator(".badge")).to_have_text("P1")
    await expect(row).to_have_class("age-fresh")
    await expect(page.get_by_text("No alarms")).to_be_hidden()
    await expect(page.locator("#open-count")).to_have_text("1 open alarm")
    handle = await row.element_handle()

    # Others join in queue order: by priority, then oldest first. Those received a while ago
    # and still new are shown as waiting (amber) and overdue (red).
    now = time.time()
    person = make_alarm(
        unit_id="pole-03",
        alarm_id=9,
        event=protocol.EventKind.PERSON_DOWN,
        priority=2,
        zone="footpath",
        rule="person-down",
        max_temp_dc=None,
        box=None,
        actions=(("floodlight", 300),),
    )
    deliver(person, received_at=now - 120)
    vehicle = make_alarm(
        unit_id="pole-08",
        alarm_id=5,
        event=protocol.EventKind.VEHICLE,
        priority=4,
        zone="entrance",
        rule="no-entry-at-night",
        max_temp_dc=None,
        box=None,
        actions=(),
    )
    deliver(vehicle, received_at=now - 900)
    earlier_fire = make_alarm(unit_id="pole-21", alarm_id=2, max_temp_dc=2875)
    deliver(earlier_fire, received_at=now - 30)
    expected = ["pole-21/2", "pole-17/42", "pole-03/9", "pole-08/5"]
    await expect(page.locator("#alarm-rows tr")).to_have_count(4, timeout=UI_TIMEOUT_MS)
    assert await row_refs(page) == expected
    await expect(page.locator('tr[data-ref="pole-03/9"]')).to_have_class("age-waiting")
    await expect(page.locator('tr[data-ref="pole-03/9"]')).to_contain_text("Person down")
    await expect(page.locator('tr[data-ref="pole-03/9"] .badge')).to_have_text("P2")
    await expect(page.locator('tr[data-ref="pole-08/5"]')).to_have_class("age-late")
    await expect(page.locator("#open-count")).to_have_text("4 open alarms")

    # The unit closes the fire: the same row is updated in place.
    deliver(make_alarm(alarm_id=42, phase=protocol.Phase.CLOSE, time_s=1_795_123_990))
    await expect(row.locator(".state")).to_have_text("closed", timeout=UI_TIMEOUT_MS)
    await expect(page.locator(f'#alarm-rows tr[data-alarm-id="{fire.id}"]')).to_have_count(1)
    assert handle is not None and await handle.evaluate("row => row.isConnected")
    assert await handle.get_attribute("data-alarm-id") == str(fire.id)
    await expect(page.locator("#alarm-rows tr")).to_have_count(4)
    assert await row_refs(page) == expected
    await expect(page.locator("#open-count")).to_have_text("3 open alarms")
    assert await page.evaluate("window.__sameDocument") is True

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "console.png", full_page=True)


async def test_reconnects_and_catches_up_after_a_restart(
    page: Page, console: Console, console_store: ReceiverStore, make_alarm: Any
) -> None:
    await expect(page.locator("#connection")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_text("No alarms")).to_be_visible(timeout=UI_TIMEOUT_MS)

    await console.stop()
    await expect(page.locator("#connection")).to_have_text("reconnecting", timeout=UI_TIMEOUT_MS)

    # Committed while the console was down: no event will ever carry it, the re-fetch must.
    missed = console_store.ingest(make_alarm(alarm_id=77), time.time()).alarm
    assert missed is not None
    await console.start()
    row = page.locator(f'#alarm-rows tr[data-alarm-id="{missed.id}"]')
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(row).to_contain_text("Fire")
    await expect(page.locator("#connection")).to_have_text("live")


async def test_operator_command_result_is_shown_live(browser: Browser, tmp_path: Path) -> None:
    """A command posted to the console reaches a unit on its next heartbeat; its result shows."""
    import socket

    import aiohttp

    from firmware.clock import SimClock
    from firmware.config.site import ReceiverEndpoint, UplinkConfig
    from host_tools.console.users import Users
    from host_tools.provision.oscore import provision_oscore
    from host_tools.receiver.endpoint import Endpoint
    from host_tools.receiver.server import Receiver
    from polewatch.netutil import free_port
    from sim.fleet import LightUnit

    clock = SimClock(time.time(), speed=20.0)  # a heartbeat every 60 simulated s is 3 s real
    provision_oscore("pole-0007", tmp_path / "unit" / "oscore", tmp_path / "rx")
    http_at = Endpoint("127.0.0.1", free_port(socket.SOCK_STREAM))
    coap_at = Endpoint("127.0.0.1", free_port())
    receiver = Receiver(tmp_path / "rx" / "r.sqlite", coap_at, http_at, clock=clock)
    await receiver.start()
    endpoint = ReceiverEndpoint(host="127.0.0.1", port=receiver.coap.port)
    unit = LightUnit("pole-0007", tmp_path / "unit", endpoint, clock, UplinkConfig())
    unit.start()
    page = await browser.new_page()
    try:
        store = receiver.require_store()
        Users(store).add("olle", "operator", PASSWORD, time.time())
        for _ in range(200):
            if store.units():
                break
            await asyncio.sleep(0.02)
        await page.goto(receiver.console_url or "")
        await log_in(page, "olle")
        await expect(page.locator("#no-commands")).to_be_visible(timeout=2000)
        base = (receiver.console_url or "").rstrip("/")
        # unsafe=True: aiohttp keeps no cookies of a bare IP address (127.0.0.1) otherwise
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            resp = await http.post(f"{base}/api/login", json={"name": "olle", "password": PASSWORD})
            csrf = {"X-CSRF-Token": (await resp.json())["csrf"]}
            resp = await http.post(f"{base}/api/units/pole-0007/commands", headers=csrf,
                                   json={"op": "trigger", "arg": "fire", "ttl_s": 600})  # fmt: skip
            assert resp.status == 201, await resp.text()
            bad = await http.post(f"{base}/api/units/pole-0007/commands", headers=csrf,
                                  json={"op": "launch"})  # fmt: skip
            assert bad.status == 400
        row = page.locator("#command-rows tr")
        await expect(row).to_have_count(1, timeout=2000)
        await expect(row).to_contain_text("trigger fire")
        # Delivered on the answer to the unit's next heartbeat, carried out, result back.
        await expect(row.locator(".cmd-state")).to_have_text("done", timeout=10_000)
        assert unit.executed == [(protocol.CommandOp.TRIGGER, "fire")]
        shot = Path("build/test-artifacts")
        shot.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(shot / "console-commands.png"), full_page=True)
    finally:
        await page.close()
        await unit.stop()
        await receiver.stop()
