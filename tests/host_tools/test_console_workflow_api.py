"""The receiving centre's console API: login and roles, CSRF, the alarm workflow, ownership,
checklists, input errors, reports (figures and CSV), user administration and the audit log."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from firmware.errors import ConfigError
from firmware.uplink import protocol
from host_tools.console.app import create_app
from host_tools.console.checklists import load_checklists, parse_checklists
from host_tools.console.state import LoginLimiter
from host_tools.receiver.audit import AuditLog
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import ReceiverStore
from tests.host_tools.console_helpers import PASSWORD, ManualClock, StoreCommander

T0 = 1_800_000_000.0  # 2027-01-15 09:00 in Stockholm
CHECKLISTS = """
[default]
items = ["Decide the outcome"]

[fire]
items = ["Call the fire service", "Send a guard"]
"""


class Person:
    """A console user's HTTP session (own cookie jar)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base
        self.csrf = ""

    async def login(self, name: str, password: str = PASSWORD) -> tuple[int, Any]:
        """Log in; keep the CSRF token."""
        status, body = await self.post("/api/login", {"name": name, "password": password})
        if status == 200:
            self.csrf = body["csrf"]
        return status, body

    async def get(self, path: str) -> tuple[int, Any]:
        """GET, parsed as JSON where it is JSON."""
        async with self.http.get(self.base + path) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def post(
        self, path: str, body: Any = None, *, csrf: str | None = None, **options: Any
    ) -> tuple[int, Any]:
        """POST JSON (or ``data=``) with the CSRF token unless told otherwise."""
        headers = dict(options.pop("headers", {}))
        token = self.csrf if csrf is None else csrf
        if token:
            headers["X-CSRF-Token"] = token
        if "data" not in options:
            options["json"] = {} if body is None else body
        async with self.http.post(self.base + path, headers=headers, **options) as resp:
            return resp.status, await resp.json()


Login = Callable[..., Awaitable[Person]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def served(
    console_store: ReceiverStore, console_bus: EventBus, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[tuple[str, web.Application]]:
    # An override next to the SQLite file; on PostgreSQL, in the receiver's key directory.
    (tmp_path / "checklists.toml").write_text(CHECKLISTS)
    limiter = LoginLimiter(max_failures=3, window_s=60.0, clock=clock.now)
    app = create_app(
        console_store,
        console_bus,
        StoreCommander(console_store, clock),
        clock=clock,
        limiter=limiter,
        keys_dir=tmp_path,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", app
    await runner.cleanup()


@pytest.fixture
async def person(served: tuple[str, web.Application], make_user: Any) -> AsyncIterator[Login]:
    """Log a new user of a role in, each with its own session."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(role: str, name: str | None = None, create: bool = True) -> Person:
        # unsafe=True: aiohttp keeps no cookies of a bare IP address (127.0.0.1) otherwise
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(http)
        p = Person(http, served[0])
        if create:
            name = make_user(role, name)
            status, body = await p.login(name)
            assert status == 200, body
        return p

    yield make
    for s in sessions:
        await s.close()


def ingest(store: ReceiverStore, make_alarm: Any, at: float, **fields: Any) -> int:
    record = store.ingest(make_alarm(**fields), at).alarm
    assert record is not None
    return record.id


# --- login, sessions, roles, CSRF -----------------------------------------------------------


async def test_everything_under_api_needs_a_login(person: Login) -> None:
    anon = await person("viewer", create=False)
    for path in ("/api/alarms", "/api/alarms/1", "/api/units", "/api/commands", "/api/me",
                 "/api/events", "/api/audit", "/api/reports/response"):  # fmt: skip
        status, body = await anon.get(path)
        assert status == 401, path
        assert body == {"error": "log in first"}
    status, _ = await anon.post("/api/alarms/1/acknowledge")
    assert status == 401
    assert (await anon.get("/healthz"))[0] == 200
    assert (await anon.get("/"))[0] == 200  # the page itself, which shows the login form


async def test_login_cookie_is_hardened(
    served: tuple[str, web.Application], make_user: Any
) -> None:
    make_user("operator", "olle")
    base, _ = served
    async with aiohttp.ClientSession() as http:
        creds = {"name": "olle", "password": PASSWORD}
        async with http.post(f"{base}/api/login", json=creds) as resp:
            assert resp.status == 200
            cookie = resp.headers["Set-Cookie"]
            body = await resp.json()
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would be dropped
        assert body["user"] == "olle" and body["role"] == "operator" and len(body["csrf"]) > 30
        assert "workflow" in body["permissions"] and "users" not in body["permissions"]
        # Behind a TLS-terminating proxy the cookie is marked Secure.
        headers = {"X-Forwarded-Proto": "https"}
        async with http.post(f"{base}/api/login", json=creds, headers=headers) as resp:
            assert "Secure" in resp.headers["Set-Cookie"]


async def test_secure_cookies_flag(
    console_store: ReceiverStore, console_bus: EventBus, make_user: Any
) -> None:
    make_user("viewer", "vera")
    app = create_app(console_store, console_bus, secure_cookies=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as http:
            creds = {"name": "vera", "password": PASSWORD}
            async with http.post(f"{base}/api/login", json=creds) as resp:
                assert "Secure" in resp.headers["Set-Cookie"]
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        await runner.cleanup()


async def test_wrong_password_then_rate_limited(
    person: Login, make_user: Any, clock: ManualClock, console_store: ReceiverStore
) -> None:
    make_user("operator", "olle")
    p = await person("operator", create=False)
    for _ in range(3):
        status, body = await p.login("olle", "not the password")
        assert (status, body) == (401, {"error": "wrong name or password"})
    status, body = await p.login("nobody", "not the password")
    assert status == 429  # the address is locked too, whatever the name
    status, body = await p.login("olle")  # even the right password waits
    assert status == 429 and "try again in 60 s" in body["error"]
    clock.t += 61
    status, _ = await p.login("olle")
    assert status == 200
    actions = [(r.action, r.outcome) for r in AuditLog(console_store).records()]
    assert actions.count(("login", "failed")) == 3
    assert actions.count(("login", "denied")) == 2
    assert actions[0] == ("login", "ok")


async def test_logout_ends_the_session(person: Login) -> None:
    p = await person("operator")
    assert (await p.get("/api/me"))[0] == 200
    assert (await p.post("/api/logout"))[0] == 200
    assert (await p.get("/api/me"))[0] == 401


async def test_post_needs_the_csrf_token_and_same_origin(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    p = await person("operator", "olle")
    status, body = await p.post(f"/api/alarms/{pk}/acknowledge", csrf="")
    assert status == 403 and "CSRF" in body["error"]
    status, body = await p.post(f"/api/alarms/{pk}/acknowledge", csrf="forged-token")
    assert status == 403 and "CSRF" in body["error"]
    evil = {"Origin": "http://evil.example"}
    status, body = await p.post(f"/api/alarms/{pk}/acknowledge", headers=evil)
    assert status == 403 and "cross-origin" in body["error"]
    assert (await p.get(f"/api/alarms/{pk}"))[1]["state"] == "new"
    status, body = await p.post(f"/api/alarms/{pk}/acknowledge")
    assert status == 200 and body["state"] == "acknowledged"
    denied = [r for r in AuditLog(console_store).records() if r.outcome == "denied"]
    assert [r.action for r in denied] == ["csrf"] * 3
    assert all(r.user in ("olle", None) for r in denied)


@pytest.mark.parametrize(
    ("role", "path", "body", "allowed"),
    [
        ("viewer", "/api/alarms/{pk}/acknowledge", {}, False),
        ("viewer", "/api/alarms/{pk}/open", {}, False),
        ("viewer", "/api/units/pole-17/commands", {"op": "silence"}, False),
        ("technician", "/api/alarms/{pk}/acknowledge", {}, False),
        ("technician", "/api/units/pole-17/commands", {"op": "test-on"}, True),
        ("operator", "/api/users", {"name": "x1", "role": "viewer", "password": PASSWORD}, False),
        ("supervisor", "/api/alarms/{pk}/acknowledge", {}, True),
    ],
)
async def test_roles(
    person: Login,
    console_store: ReceiverStore,
    make_alarm: Any,
    role: str,
    path: str,
    body: dict[str, Any],
    allowed: bool,
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    p = await person(role)
    assert (await p.get("/api/alarms"))[0] == 200  # every role reads the queue
    status, answer = await p.post(path.format(pk=pk), body)
    if allowed:
        assert status in (200, 201), answer
    else:
        assert status == 403
        assert f"the role {role} may not" in answer["error"]


async def test_read_only_views_by_role(person: Login) -> None:
    viewer, operator, supervisor = [await person(r) for r in ("viewer", "operator", "supervisor")]
    for who, path, status in [
        (viewer, "/api/reports/response", 403),
        (viewer, "/api/audit", 403),
        (operator, "/api/reports/response", 200),
        (operator, "/api/audit", 403),
        (operator, "/api/users", 403),
        (supervisor, "/api/audit", 200),
        (supervisor, "/api/users", 200),
    ]:
        assert (await who.get(path))[0] == status, path


# --- the workflow ---------------------------------------------------------------------------


async def test_full_workflow_with_timeline(
    person: Login,
    console_store: ReceiverStore,
    console_bus: EventBus,
    make_alarm: Any,
    clock: ManualClock,
) -> None:
    events = console_bus.subscribe()
    pk = ingest(console_store, make_alarm, T0)
    console_store.ingest(make_alarm(phase=protocol.Phase.CLOSE, time_s=1_795_123_900), T0 + 5)
    olle = await person("operator", "olle")

    async def step(action: str, at: float, **body: Any) -> dict[str, Any]:
        clock.t = at
        status, data = await olle.post(f"/api/alarms/{pk}/{action}", body)
        assert status == 200, data
        return data  # type: ignore[no-any-return]

    opened = await step("open", T0 + 10)
    assert opened["workflow"]["owner"] == "olle" and opened["state"] == "new"
    assert [i["text"] for i in opened["workflow"]["checklist"]] == [
        "Call the fire service",
        "Send a guard",
    ]
    assert (await step("acknowledge", T0 + 20))["state"] == "acknowledged"
    assert (await step("hold", T0 + 30, text="waiting for a call back"))["state"] == "on_hold"
    assert (await step("resume", T0 + 40))["state"] == "acknowledged"
    await step("dispatch", T0 + 50, to="guard")
    d = await step("dispatch", T0 + 60, to="fire_service", text="smoke seen")
    assert d["state"] == "dispatched"
    assert d["workflow"]["dispatched_to"] == ["guard", "fire_service"]
    assert d["workflow"]["dispatched_at"] == T0 + 50  # the first dispatch counts
    await step("check", T0 + 70, item=0)
    await step("check", T0 + 71, item=1)
    await step("check", T0 + 72, item=1, done=False)
    status, body = await olle.post(f"/api/alarms/{pk}/resolve", {"outcome": "real"})
    assert status == 409 and body["code"] == "checklist" and "Send a guard" in body["error"]
    await step("check", T0 + 73, item=1)
    await step("note", T0 + 80, text="car burnt out, nobody hurt")
    done = await step("resolve", T0 + 90, outcome="real")
    assert done["state"] == "resolved" and done["workflow"]["outcome"] == "real"
    assert done["workflow"]["resolved_by"] == "olle"

    status, detail = await olle.get(f"/api/alarms/{pk}")
    assert status == 200
    assert [(t["phase"], t["received_at"]) for t in detail["timeline"]] == [
        ("open", T0),
        ("close", T0 + 5),
    ]
    assert detail["actions"] == [["floodlight", 120], ["siren", 60]]
    assert [(a["at"] - T0, a["action"], a["detail"]) for a in detail["operator_actions"]] == [
        (10, "own", None),
        (20, "acknowledge", None),
        (30, "hold", {"text": "waiting for a call back"}),
        (40, "resume", None),
        (50, "dispatch", {"to": "guard"}),
        (60, "dispatch", {"to": "fire_service", "text": "smoke seen"}),
        (70, "check", {"item": "Call the fire service"}),
        (71, "check", {"item": "Send a guard"}),
        (72, "uncheck", {"item": "Send a guard"}),
        (73, "check", {"item": "Send a guard"}),
        (80, "note", {"text": "car burnt out, nobody hurt"}),
        (90, "resolve", {"outcome": "real"}),
    ]
    assert all(a["user"] == "olle" for a in detail["operator_actions"])
    # Resolved alarms leave the queue for the resolved list.
    assert (await olle.get("/api/alarms"))[1] == []
    assert [a["id"] for a in (await olle.get("/api/alarms?view=resolved"))[1]] == [pk]
    # Every action went out on the bus, for the live consoles.
    published = []
    while not events.empty():
        published.append(events.get_nowait()["alarm"]["state"])
    assert published[0] == "new" and published[-1] == "resolved" and len(published) == 12


@pytest.mark.parametrize(
    ("setup", "action", "body", "message"),
    [
        ([], "dispatch", {"to": "guard"}, "it is new, acknowledge it first"),
        ([], "resolve", {"outcome": "false"}, "it is new, acknowledge it first"),
        ([], "check", {"item": 0}, "it is new"),
        ([], "resume", {}, "it is new"),
        (["acknowledge"], "acknowledge", {}, "it is acknowledged"),
        (["acknowledge"], "resume", {}, "it is acknowledged"),
    ],
)
async def test_transitions_the_state_does_not_allow(
    person: Login,
    console_store: ReceiverStore,
    make_alarm: Any,
    setup: list[str],
    action: str,
    body: dict[str, Any],
    message: str,
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    p = await person("operator")
    for s in setup:
        assert (await p.post(f"/api/alarms/{pk}/{s}"))[0] == 200
    status, answer = await p.post(f"/api/alarms/{pk}/{action}", body)
    assert status == 409 and answer["code"] == "state"
    assert message in answer["error"]


async def test_a_resolved_alarm_takes_only_notes(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    pk = ingest(console_store, make_alarm, T0, event=protocol.EventKind.VEHICLE)
    p = await person("operator")
    for action, body in [
        ("acknowledge", {}),
        ("check", {"item": 0}),
        ("resolve", {"outcome": "false"}),
    ]:
        assert (await p.post(f"/api/alarms/{pk}/{action}", body))[0] == 200
    status, answer = await p.post(f"/api/alarms/{pk}/hold")
    assert status == 409 and "already resolved" in answer["error"]
    assert (await p.post(f"/api/alarms/{pk}/note", {"text": "owner called"}))[0] == 200


async def test_owner_is_warned_about_and_taken_over(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    olle, anna = await person("operator", "olle"), await person("operator", "anna")
    assert (await olle.post(f"/api/alarms/{pk}/open"))[1]["workflow"]["owner"] == "olle"
    # Anna opening it changes nothing; acting on it is refused until she confirms.
    assert (await anna.post(f"/api/alarms/{pk}/open"))[1]["workflow"]["owner"] == "olle"
    status, body = await anna.post(f"/api/alarms/{pk}/acknowledge")
    assert status == 409
    assert body["code"] == "owned" and body["owner"] == "olle"
    assert "owned by olle" in body["error"]
    status, body = await anna.post(f"/api/alarms/{pk}/acknowledge", {"take_over": True})
    assert status == 200
    assert body["workflow"]["owner"] == "anna" and body["workflow"]["acknowledged_by"] == "anna"
    status, body = await olle.post(f"/api/alarms/{pk}/dispatch", {"to": "police"})
    assert status == 409 and body["owner"] == "anna"
    detail = (await olle.get(f"/api/alarms/{pk}"))[1]
    assert [(a["user"], a["action"]) for a in detail["operator_actions"]] == [
        ("olle", "own"),
        ("anna", "take_over"),
        ("anna", "acknowledge"),
    ]
    assert detail["operator_actions"][1]["detail"] == {"from": "olle"}


async def test_alarms_from_units_in_test_mode_are_kept_apart(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    ingest(console_store, make_alarm, T0, unit_id="pole-1", test=True)
    ingest(console_store, make_alarm, T0 + 1, unit_id="pole-2")
    p = await person("operator")
    listed = (await p.get("/api/alarms"))[1]
    assert [(a["unit_id"], a["test"]) for a in listed] == [("pole-1", True), ("pole-2", False)]
    rows = (await p.get("/api/reports/response"))[1]["rows"]
    assert rows[0]["alarms"] == 1  # the test-mode alarm is not in the figures


async def test_deterrence_from_an_alarm_is_in_its_timeline(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    p = await person("operator", "olle")
    status, cmd = await p.post("/api/units/pole-17/commands", {"op": "silence", "alarm": pk})
    assert status == 201 and cmd["op"] == "silence" and cmd["state"] == "queued"
    detail = (await p.get(f"/api/alarms/{pk}"))[1]
    assert [(a["action"], a["detail"]["op"]) for a in detail["operator_actions"]] == [
        ("command", "silence")
    ]
    audit = AuditLog(console_store).records()
    assert (audit[0].action, audit[0].target, audit[0].detail) == (
        "unit.command",
        "pole-17",
        {"op": "silence", "arg": None, "command": cmd["id"]},
    )


# --- input errors: 400 naming the field -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/alarms/{pk}/dispatch", {"to": "army"}, "to"),
        ("/api/alarms/{pk}/dispatch", {}, "to"),
        ("/api/alarms/{pk}/resolve", {"outcome": "maybe"}, "outcome"),
        ("/api/alarms/{pk}/check", {"item": "first"}, "item"),
        ("/api/alarms/{pk}/check", {"item": 7}, "item"),  # past the end of this checklist
        ("/api/alarms/{pk}/check", {"item": 0, "done": "perhaps"}, "done"),
        ("/api/alarms/{pk}/note", {"text": ""}, "text"),
        ("/api/alarms/{pk}/note", {"text": "x" * 501}, "text"),
        ("/api/alarms/{pk}/hold", {"text": 5}, "text"),
        ("/api/alarms/{pk}/acknowledge", {"bogus": 1}, "bogus"),
        ("/api/alarms/{pk}/acknowledge", {"take_over": "sure"}, "take_over"),
        ("/api/alarms/{pk}/acknowledge", [1, 2], "body"),
        ("/api/alarms/abc/acknowledge", {}, "id"),
        ("/api/users", {"name": "Bad Name", "role": "viewer", "password": PASSWORD}, "name"),
        ("/api/users", {"name": "bo", "role": "god", "password": PASSWORD}, "role"),
        ("/api/users", {"name": "bo", "role": "viewer", "password": "short"}, "password"),
        ("/api/users", {"name": "bo", "role": "viewer"}, "password"),
        ("/api/users/operator", {"disabled": "maybe"}, "disabled"),
        ("/api/login", {"name": "bo"}, "password"),
        ("/api/login", {"password": "x"}, "name"),
    ],
)
async def test_malformed_input_is_400_naming_the_field(
    person: Login,
    console_store: ReceiverStore,
    make_alarm: Any,
    make_user: Any,
    path: str,
    body: Any,
    field: str,
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    make_user("operator")
    p = await person("supervisor")
    if "check" in path:  # the checklist exists once the alarm is acknowledged
        assert (await p.post(f"/api/alarms/{pk}/acknowledge"))[0] == 200
    status, answer = await p.post(path.format(pk=pk), body)
    assert status == 400, answer
    assert answer["field"] == field
    assert answer["error"].startswith(f"{field}:")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/reports/response?from=2027-13-01", "from"),
        ("/api/reports/false-alarms?to=yesterday", "to"),
        ("/api/reports/response?from=2027-02-01&to=2027-01-01", "to"),
        ("/api/audit?limit=0", "limit"),
        ("/api/alarms?view=everything", "view"),
    ],
)
async def test_malformed_query_is_400_naming_the_field(
    person: Login, path: str, field: str
) -> None:
    p = await person("supervisor")
    status, answer = await p.get(path)
    assert status == 400 and answer["error"].startswith(f"{field}:")


async def test_malformed_bodies(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    p = await person("operator")
    headers = {"Content-Type": "application/json"}
    status, answer = await p.post(
        f"/api/alarms/{pk}/acknowledge", data=b"{not json", headers=headers
    )
    assert (status, answer["field"]) == (400, "body")
    status, answer = await p.post(
        f"/api/alarms/{pk}/acknowledge", data=b"x", headers={"Content-Type": "text/plain"}
    )
    assert (status, answer["field"]) == (400, "body")
    status, answer = await p.post("/api/units/pole-17/commands", {"op": "silence", "ttl_s": 0})
    assert status == 400 and answer["error"].startswith("ttl_s:")
    status, answer = await p.post("/api/units/pole-17/commands", {"op": "silence", "alarm": "x"})
    assert status == 400 and answer["error"].startswith("alarm:")


async def test_html_form_posts_work_and_are_checked(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    p = await person("operator")
    form = {"csrf_token": p.csrf}
    status, answer = await p.post(f"/api/alarms/{pk}/acknowledge", csrf="", data=form)
    assert status == 200 and answer["state"] == "acknowledged"
    bad = {"csrf_token": p.csrf, "to": "army"}
    status, answer = await p.post(f"/api/alarms/{pk}/dispatch", csrf="", data=bad)
    assert (status, answer["field"]) == (400, "to")
    status, answer = await p.post(f"/api/alarms/{pk}/dispatch", csrf="", data={"to": "guard"})
    assert status == 403  # a form without the token


# --- reports --------------------------------------------------------------------------------


async def test_report_figures_follow_the_script(
    person: Login, console_store: ReceiverStore, make_alarm: Any, clock: ManualClock
) -> None:
    """Alarms received and handled at known times give exactly the implied figures."""
    olle = await person("operator", "olle")

    async def at(t: float, pk: int, action: str, **body: Any) -> None:
        clock.t = T0 + t
        status, answer = await olle.post(f"/api/alarms/{pk}/{action}", body)
        assert status == 200, answer

    fire = protocol.EventKind.FIRE
    a = ingest(console_store, make_alarm, T0, unit_id="pole-1", priority=1, event=fire)
    b = ingest(console_store, make_alarm, T0 + 100, unit_id="pole-2", priority=1, event=fire)
    c = ingest(console_store, make_alarm, T0 + 200, unit_id="pole-1", alarm_id=3, priority=2,
               event=protocol.EventKind.PERSON_DOWN, rule="person-down")  # fmt: skip
    d = ingest(console_store, make_alarm, T0 + 300, unit_id="pole-3", priority=2, test=True)
    e = ingest(console_store, make_alarm, T0 + 500, unit_id="pole-2", priority=3, alarm_id=2)
    await at(30, a, "acknowledge")  # TTA 30
    await at(90, a, "dispatch", to="fire_service")  # TTD 90
    await at(110, b, "acknowledge")  # TTA 10
    await at(160, b, "dispatch", to="guard")  # TTD 60
    await at(170, b, "dispatch", to="police")  # not the first dispatch: no effect on TTD
    await at(260, c, "acknowledge")  # TTA 60, never dispatched
    await at(400, d, "acknowledge")  # test mode: left out
    for pk, outcome in ((a, "real"), (b, "false"), (c, "false")):
        detail = (await olle.get(f"/api/alarms/{pk}"))[1]
        for i in range(len(detail["workflow"]["checklist"])):
            await at(600, pk, "check", item=i)
        await at(700, pk, "resolve", outcome=outcome)
    assert e  # received, never acknowledged

    status, report = await olle.get("/api/reports/response?from=2027-01-15&to=2027-01-15")
    assert status == 200
    assert report["rows"] == [
        {"priority": 1, "alarms": 2, "acknowledged": 2, "tta_mean_s": 20.0, "tta_median_s": 20.0,
         "tta_max_s": 30.0, "dispatched": 2, "ttd_mean_s": 75.0, "ttd_median_s": 75.0,
         "ttd_max_s": 90.0},
        {"priority": 2, "alarms": 1, "acknowledged": 1, "tta_mean_s": 60.0, "tta_median_s": 60.0,
         "tta_max_s": 60.0, "dispatched": 0, "ttd_mean_s": None, "ttd_median_s": None,
         "ttd_max_s": None},
        {"priority": 3, "alarms": 1, "acknowledged": 0, "tta_mean_s": None, "tta_median_s": None,
         "tta_max_s": None, "dispatched": 0, "ttd_mean_s": None, "ttd_median_s": None,
         "ttd_max_s": None},
    ]  # fmt: skip
    status, falses = await olle.get("/api/reports/false-alarms")
    counts = ("resolved", "real", "false", "test", "false_rate")
    assert [(r["unit_id"], *(r[k] for k in counts)) for r in falses["by_unit"]] == [
        ("pole-1", 2, 1, 1, 0, 0.5),
        ("pole-2", 1, 0, 1, 0, 1.0),
    ]
    assert [(r["rule"], *(r[k] for k in counts)) for r in falses["by_rule"]] == [
        ("fire-in-lot", 2, 1, 1, 0, 0.5),
        ("person-down", 1, 0, 1, 0, 1.0),
    ]
    # Another day has none of it.
    assert (await olle.get("/api/reports/response?from=2027-01-16"))[1]["rows"] == []

    status, text = await olle.get("/api/reports/response.csv?from=2027-01-15")
    assert status == 200
    assert text.splitlines() == [
        "priority,alarms,acknowledged,tta_mean_s,tta_median_s,tta_max_s,dispatched,ttd_mean_s,"
        "ttd_median_s,ttd_max_s",
        "1,2,2,20.0,20.0,30.0,2,75.0,75.0,90.0",
        "2,1,1,60.0,60.0,60.0,0,,,",
        "3,1,0,,,,0,,,",
    ]
    status, text = await olle.get("/api/reports/false-alarms.csv")
    assert text.splitlines() == [
        "group,name,resolved,real,false,test,false_rate",
        "unit,pole-1,2,1,1,0,0.5",
        "unit,pole-2,1,0,1,0,1.0",
        "rule,fire-in-lot,2,1,1,0,0.5",
        "rule,person-down,1,0,1,0,1.0",
    ]


# --- users and the audit log ----------------------------------------------------------------


async def test_user_administration(person: Login, console_store: ReceiverStore) -> None:
    sara = await person("supervisor", "sara")
    status, user = await sara.post(
        "/api/users", {"name": "bo", "role": "operator", "password": PASSWORD}
    )
    assert status == 201 and user == {
        "name": "bo",
        "role": "operator",
        "created": T0,
        "disabled": False,
    }
    status, answer = await sara.post(
        "/api/users", {"name": "bo", "role": "viewer", "password": PASSWORD}
    )
    assert status == 400 and answer["error"] == "name: user 'bo' exists already"
    bo = await person("operator", create=False)
    assert (await bo.login("bo"))[0] == 200
    # A changed role takes effect at once: the user's sessions end.
    assert (await sara.post("/api/users/bo", {"role": "viewer"}))[1]["role"] == "viewer"
    assert (await bo.get("/api/me"))[0] == 401
    assert (await bo.login("bo"))[1]["role"] == "viewer"
    assert (await sara.post("/api/users/bo", {"disabled": True}))[1]["disabled"] is True
    assert (await bo.get("/api/me"))[0] == 401
    assert (await bo.login("bo"))[0] == 401
    # The last supervisor stays.
    status, answer = await sara.post("/api/users/sara", {"role": "operator"})
    assert status == 400 and answer["field"] == "name"
    assert (await sara.post("/api/users/nobody", {"role": "operator"}))[0] == 404
    listed = (await sara.get("/api/users"))[1]
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [
        ("bo", "viewer", True),
        ("sara", "supervisor", False),
    ]
    assert "pw_hash" not in json.dumps(listed)
    # Passwords are stored as Argon2id hashes, never in clear.
    stored = console_store.read(lambda db: db.execute("SELECT pw_hash FROM users").fetchall())
    assert all(r[0].startswith("$argon2id$") and PASSWORD not in r[0] for r in stored)


async def test_every_action_is_audited(
    person: Login, console_store: ReceiverStore, make_alarm: Any
) -> None:
    pk = ingest(console_store, make_alarm, T0)
    olle, vera = await person("operator", "olle"), await person("viewer", "vera")
    await olle.post(f"/api/alarms/{pk}/open")
    await olle.post(f"/api/alarms/{pk}/acknowledge")
    await olle.post(f"/api/alarms/{pk}/dispatch", {"to": "army"})
    await vera.post(f"/api/alarms/{pk}/resolve", {"outcome": "false"})
    sara = await person("supervisor", "sara")
    status, records = await sara.get("/api/audit")
    assert status == 200
    got = [(r["user"], r["action"], r["target"], r["outcome"]) for r in reversed(records)]
    assert got == [
        ("olle", "login", None, "ok"),
        ("vera", "login", None, "ok"),
        ("olle", "alarm.open", "pole-17/1", "ok"),
        ("olle", "alarm.acknowledge", "pole-17/1", "ok"),
        ("olle", "alarm.dispatch", f"#{pk}", "invalid"),
        ("vera", "post /api/alarms/1/resolve", None, "denied"),
        ("sara", "login", None, "ok"),
    ]
    assert records[0]["role"] == "supervisor" and records[0]["remote"] == "127.0.0.1"
    status, only = await sara.get("/api/audit?user=olle&action=alarm.")
    assert [r["action"] for r in only] == ["alarm.dispatch", "alarm.acknowledge", "alarm.open"]


# --- checklists -----------------------------------------------------------------------------


def test_checklists_are_validated_strictly(tmp_path: Path) -> None:
    where = tmp_path / "checklists.toml"
    good = parse_checklists(CHECKLISTS, where)
    assert good == {
        "default": ["Decide the outcome"],
        "fire": ["Call the fire service", "Send a guard"],
    }
    for text, problem in [
        ("[fires]\nitems = ['x']", "fires: unknown alarm kind"),
        ("[fire]\nitems = ['x']\nowner = 'y'", "fire.owner: unknown key"),
        ("[fire]\nitems = []", "fire.items: expected a list of 1..20 texts"),
        ("[fire]\nitems = ['ok', 3]", "fire.items[1]: expected text"),
        ("[fire]\nitems = ['a', 'a']", "fire.items: the same item is listed twice"),
        ("fire = 1", "fire: expected a table"),
        ("[fire", "not valid TOML"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_checklists(text, where)
        assert f"{where}: {problem}" in str(info.value)
    # The defaults cover every kind through "default"; an override replaces single kinds.
    where.write_text("[tamper]\nitems = ['Look at the camera']\n")
    lists = load_checklists(where)
    assert lists["tamper"] == ["Look at the camera"] and "Send a guard to the site" in lists["fire"]
    assert lists["default"]


def test_a_bad_checklist_file_stops_the_console(
    console_store: ReceiverStore, console_bus: EventBus, tmp_path: Path
) -> None:
    bad = tmp_path / "lists.toml"
    bad.write_text("[fire]\nitem = ['x']\n")
    with pytest.raises(ConfigError, match=r"fire\.item: unknown key"):
        create_app(console_store, console_bus, checklists=bad)


# --- the command line -----------------------------------------------------------------------


async def test_user_add_reads_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from polewatch.cli import main

    db = tmp_path / "r.sqlite"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        await asyncio.to_thread(
            main, ["user", "add", "anna", "--role", "supervisor", "--db", str(db)]
        )
        == 0
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "bo", "--role", "operator", "--db", str(db)]) == 2
    assert "password: expected 10..256 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # there is no way to give it on the command line
        main(["user", "add", "bo", "--role", "operator", "--password", PASSWORD])
    assert main(["user", "list", "--db", str(db)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "anna\tsupervisor\tactive"
    store = ReceiverStore(db)
    try:
        from host_tools.console.users import Users

        assert Users(store).authenticate("anna", PASSWORD) is not None
        assert [r.action for r in AuditLog(store).records()] == ["user.add"]
    finally:
        store.close()
