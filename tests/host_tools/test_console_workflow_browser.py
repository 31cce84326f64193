"""The receiving centre's console in a real headless Chromium: an operator works an alarm from
its arrival to resolved; a viewer only reads; ownership warnings; manual deterrence; Swedish;
the supervisor's reports, audit log and user administration. Takes the README's screenshots."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, expect

from firmware.uplink import protocol
from host_tools.console.app import create_app
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import ReceiverStore
from tests.host_tools.console_helpers import PASSWORD, StoreCommander, chromium

pytestmark = pytest.mark.asyncio(loop_scope="module")

UI_TIMEOUT_MS = 2000  # a new alarm must be in the queue within 2 s of its receipt
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the module, or a skip where none is installed."""
    async with chromium() as b:
        yield b


@pytest_asyncio.fixture(loop_scope="module")
async def console_url(console_store: ReceiverStore, console_bus: EventBus) -> AsyncIterator[str]:
    """The console (with a command queue) on 127.0.0.1."""
    app = create_app(console_store, console_bus, StoreCommander(console_store))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (own cookies), English."""
    ctx = await browser.new_context(viewport={"width": 1360, "height": 820}, locale="en-GB")
    yield ctx
    await ctx.close()


async def open_console(context: BrowserContext, url: str, name: str) -> Page:
    """A page on the console, logged in through the form; script errors fail the test."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("close", lambda _: None)
    await page.goto(url)
    await expect(page.locator("#login-view")).to_be_visible()
    await page.locator("#login-name").fill(name)
    await page.locator("#login-password").fill(PASSWORD)
    await page.locator("#login-submit").click()
    await expect(page.locator("#whoami")).to_contain_text(name, timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#connection")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def heartbeat(unit: str, msg_id: int, **health: Any) -> protocol.Heartbeat:
    """A heartbeat as the receiver decodes it from ``unit``."""
    sent = protocol.Heartbeat(msg_id=msg_id, time_s=round(time.time()), next_due_s=60, **health)
    decoded = protocol.decode(protocol.encode(sent), unit_id=unit)
    assert isinstance(decoded, protocol.Heartbeat)
    return decoded


async def csrf_of(page: Page) -> str:
    """The session's CSRF token, as the page's script gets it."""
    me = await page.request.get(page.url.split("#")[0] + "api/me")
    token: str = (await me.json())["csrf"]
    return token


async def test_operator_works_an_alarm_to_resolved(
    context: BrowserContext,
    console_url: str,
    console_store: ReceiverStore,
    make_user: Any,
    make_alarm: Any,
    deliver: Any,
) -> None:
    now = time.time()
    console_store.ingest(heartbeat("pole-17", 1, rssi_dbm=-67, queued=0), now)
    console_store.ingest(heartbeat("pole-08", 1, rssi_dbm=-95, faults=1), now - 900)
    console_store.overdue(now)  # pole-08 has been silent too long: offline
    deliver(
        make_alarm(
            unit_id="pole-03",
            alarm_id=9,
            event=protocol.EventKind.PERSON_DOWN,
            priority=2,
            zone="footpath",
            rule="person-down",
            max_temp_dc=None,
            box=None,
            actions=(("floodlight", 300),),
        ),
        received_at=now - 130,
    )
    deliver(
        make_alarm(unit_id="pole-21", alarm_id=4, event=protocol.EventKind.LOITERING, priority=3,
                   zone="school-yard", rule="loitering", max_temp_dc=None, actions=(), test=True),
        received_at=now - 40,
    )  # fmt: skip
    page = await open_console(context, console_url, make_user("operator", "olle"))
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    fire = deliver(
        make_alarm(alarm_id=42, suppressed=(("siren", "quiet hours"),), max_temp_dc=2875)
    )
    row = page.locator(f'#alarm-rows tr[data-alarm-id="{fire.id}"]')
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)  # pushed, no reload
    await expect(row).to_have_class("age-fresh")
    await expect(row.locator(".wf")).to_have_text("new")
    assert await page.evaluate("window.__sameDocument") is True
    # Test-mode alarms are listed apart; the offline unit is highlighted (and in the queue).
    await expect(page.locator("#test-alarm-rows tr")).to_have_count(1)
    await expect(page.locator("#alarm-rows tr")).to_have_count(3)
    await expect(page.locator('#alarm-rows tr[data-ref="pole-08/L1"]')).to_contain_text(
        "Unit offline"
    )
    await expect(page.locator('#unit-rows tr[data-unit-id="pole-08"]')).to_have_class(
        "unit-offline"
    )
    await expect(page.locator("#open-count")).to_have_text("3 open alarms")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "console-queue.png", full_page=True)

    await row.click()
    await expect(page.locator("#detail-view")).to_be_visible()
    await expect(page.locator("#detail-title")).to_have_text("pole-17/42 · Fire")
    await expect(page.locator("#owner-note")).to_have_text("You own this alarm.")
    await expect(page.locator("#detail-state")).to_have_text("new")
    checks = page.locator("#checklist input.check")
    await expect(checks).to_have_count(3)
    await expect(checks.first).to_be_disabled()  # acknowledge first
    await expect(page.locator("#act-dispatch")).to_be_disabled()

    await page.locator("#act-acknowledge").click()
    await expect(page.locator("#detail-state")).to_have_text("acknowledged")
    await expect(row.locator(".wf")).to_have_text("acknowledged")  # the queue follows
    await expect(row.locator(".owner")).to_have_text("@olle")
    await page.locator("#dispatch-to").select_option("fire_service")
    await page.locator("#act-dispatch").click()
    await expect(page.locator("#detail-state")).to_have_text("dispatched")
    await page.locator("#act-resolve").click()  # the checklist is not done
    await expect(page.locator("#action-error")).to_contain_text("complete the checklist")
    for i in range(3):
        await checks.nth(i).check()
        await expect(page.locator(f'#checklist li[data-index="{i}"]')).to_have_class("done")
    await page.locator("#note-text").fill("Fire service on site 09:12, car burnt out")
    await page.locator("#act-note").click()
    timeline = page.locator("#timeline li")
    await expect(timeline.last).to_contain_text("olle noted: Fire service on site")
    texts = await timeline.all_text_contents()
    assert any("Unit: alarm opened (message" in t for t in texts)
    assert any("Deterrence taken: floodlight 120 s, siren 60 s" in t for t in texts)
    assert any("Held back: siren (quiet hours)" in t for t in texts)
    assert any("olle dispatched: Fire service" in t for t in texts)
    await expect(page.locator("#action-error")).to_be_hidden()
    await page.screenshot(path=SCREENSHOTS / "console-alarm-detail.png", full_page=True)

    await page.locator("#resolve-outcome").select_option("real")
    await page.locator("#act-resolve").click()
    await expect(page.locator("#detail-state")).to_have_text("resolved")
    await expect(page.locator("#act-note")).to_be_enabled()
    await expect(page.locator("#act-acknowledge")).to_be_disabled()
    await page.locator("#detail-back").click()
    await expect(row).to_have_count(0)  # resolved: out of the queue
    await expect(page.locator("#open-count")).to_have_text("2 open alarms")

    stored = console_store.alarm(fire.id)
    assert stored is not None and stored.state == "resolved"
    assert page.errors == []  # type: ignore[attr-defined]


async def test_viewer_reads_but_cannot_act(
    context: BrowserContext,
    console_url: str,
    console_store: ReceiverStore,
    make_user: Any,
    make_alarm: Any,
    deliver: Any,
) -> None:
    page = await open_console(context, console_url, make_user("viewer", "police-liaison"))
    alarm = deliver(make_alarm(alarm_id=5))
    row = page.locator(f'#alarm-rows tr[data-alarm-id="{alarm.id}"]')
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator('#nav a[data-view="reports"]')).to_be_hidden()
    await expect(page.locator("th.perm-command")).to_be_hidden()  # no deterrence buttons
    await row.click()
    await expect(page.locator("#detail-title")).to_have_text("pole-17/5 · Fire")
    await expect(page.locator("#read-only")).to_be_visible()
    await expect(page.locator("#detail-actions")).to_be_hidden()
    await expect(page.locator("#checklist input.check").first).to_be_disabled()
    await expect(page.locator("#owner-note")).to_have_text("Nobody owns this alarm yet.")

    # A direct POST, even with the session's CSRF token, is refused for the role.
    api = f"{console_url}api/alarms/{alarm.id}/acknowledge"
    token = await csrf_of(page)
    resp = await page.request.post(api, data={}, headers={"X-CSRF-Token": token})
    assert resp.status == 403
    assert "the role viewer may not" in (await resp.json())["error"]
    stored = console_store.alarm(alarm.id)
    assert stored is not None and stored.state == "new"


async def test_post_without_csrf_token_is_rejected(
    context: BrowserContext,
    console_url: str,
    console_store: ReceiverStore,
    make_user: Any,
    make_alarm: Any,
    deliver: Any,
) -> None:
    page = await open_console(context, console_url, make_user("operator", "olle"))
    alarm = deliver(make_alarm(alarm_id=6))
    api = f"{console_url}api/alarms/{alarm.id}/acknowledge"
    resp = await page.request.post(api, data={})  # the session cookie, but no token
    assert resp.status == 403
    assert "CSRF" in (await resp.json())["error"]
    resp = await page.request.post(api, data={}, headers={"X-CSRF-Token": "guessed"})
    assert resp.status == 403
    stored = console_store.alarm(alarm.id)
    assert stored is not None and stored.state == "new"
    resp = await page.request.post(api, data={}, headers={"X-CSRF-Token": await csrf_of(page)})
    assert resp.status == 200


async def test_another_operators_alarm_warns_before_acting(
    browser: Browser,
    context: BrowserContext,
    console_url: str,
    make_user: Any,
    make_alarm: Any,
    deliver: Any,
) -> None:
    olle = await open_console(context, console_url, make_user("operator", "olle"))
    alarm = deliver(make_alarm(alarm_id=7))
    await olle.goto(f"{console_url}#alarm/{alarm.id}")
    await expect(olle.locator("#owner-note")).to_have_text("You own this alarm.")

    other = await browser.new_context(locale="en-GB")
    try:
        anna = await open_console(other, console_url, make_user("operator", "anna"))
        await anna.goto(f"{console_url}#alarm/{alarm.id}")
        await expect(anna.locator("#owner-note")).to_contain_text("Owned by olle")
        await anna.locator("#act-acknowledge").click()
        await expect(anna.locator("#confirm")).to_be_visible()
        await expect(anna.locator("#confirm-text")).to_have_text(
            "olle owns this alarm. Take it over and acknowledge it?"
        )
        await anna.locator("#confirm-cancel").click()
        await expect(anna.locator("#detail-state")).to_have_text("new")
        await anna.locator("#act-acknowledge").click()
        await anna.locator("#confirm-ok").click()
        await expect(anna.locator("#detail-state")).to_have_text("acknowledged")
        await expect(anna.locator("#owner-note")).to_have_text("You own this alarm.")
        # Olle's page follows live and now warns him.
        await expect(olle.locator("#owner-note")).to_contain_text("Owned by anna")
        await expect(olle.locator("#timeline")).to_contain_text("anna took it over from olle")
    finally:
        await other.close()


async def test_manual_deterrence_needs_confirmation_and_swedish(
    context: BrowserContext,
    console_url: str,
    console_store: ReceiverStore,
    make_user: Any,
) -> None:
    console_store.ingest(heartbeat("pole-17", 1, rssi_dbm=-70), time.time())
    page = await open_console(context, console_url, make_user("operator", "olle"))
    unit = page.locator('#unit-rows tr[data-unit-id="pole-17"]')
    await unit.locator(".unit-trigger").click()
    await expect(page.locator("#confirm-text")).to_contain_text("Trigger a deterrence profile")
    await page.locator("#confirm-cancel").click()
    assert console_store.commands() == []  # cancelled: nothing sent
    await unit.locator(".unit-trigger").click()
    await page.locator("#confirm-input").fill("fire")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#command-rows tr").first).to_contain_text("trigger fire")
    await unit.locator(".unit-silence").click()
    await expect(page.locator("#confirm-text")).to_have_text(
        "Switch every output of pole-17 off now?"
    )
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#command-rows tr")).to_have_count(2)
    assert [(c.op, c.arg) for c in console_store.commands()] == [
        ("silence", None),
        ("trigger", "fire"),
    ]

    await page.locator("#lang").select_option("sv")
    await expect(page.locator('#nav a[data-view="queue"]')).to_have_text("Larm")
    await expect(page.locator("#connection")).to_have_text("direkt")
    await expect(page.locator("#open-count")).to_have_text("0 öppna larm")
    await expect(unit.locator(".unit-silence")).to_have_text("Tysta")
    await page.reload()  # the choice is remembered
    await expect(page.locator("#logout")).to_have_text("Logga ut")
    await page.locator("#lang").select_option("en")


async def test_supervisor_reports_audit_and_users(
    context: BrowserContext, console_url: str, make_user: Any
) -> None:
    page = await open_console(context, console_url, make_user("supervisor", "sara"))
    await page.locator('#nav a[data-view="reports"]').click()
    await expect(page.locator("#response-rows")).to_contain_text("Nothing in this period")
    await page.locator("#report-from").fill("2027-01-01")
    await page.locator("#report-run").click()
    await expect(page.locator("#response-csv")).to_have_attribute(
        "href", "/api/reports/response.csv?from=2027-01-01"
    )
    await page.locator('#nav a[data-view="users"]').click()
    await page.locator("#user-add-name").fill("bo")
    await page.locator("#user-add-role").select_option("viewer")
    await page.locator("#user-add-password").fill("short")
    await page.locator("#user-add-submit").click()
    await expect(page.locator("#user-error")).to_have_text("password: expected 10..256 characters")
    await page.locator("#user-add-password").fill(PASSWORD)
    await page.locator("#user-add-submit").click()
    await expect(page.locator('#user-rows tr[data-user="bo"]')).to_contain_text("viewer")
    await page.locator('#nav a[data-view="audit"]').click()
    first = page.locator("#audit-rows tr").first
    await expect(first).to_have_attribute("data-action", "user.add")
    await expect(page.locator("#audit-rows")).to_contain_text("login")
