"""The receiver's registration API, in the real console app over loopback HTTP: login, roles,
CSRF, audit, and the ``provision --receiver-url --user`` client."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from host_tools.console.app import create_app
from host_tools.console.state import LoginLimiter
from host_tools.provision.identity import PASSWORD_ENV, provision_unit, register_over_http
from host_tools.provision.oscore import ProvisionError
from host_tools.receiver.audit import AuditLog, AuditRecord
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import ReceiverStore
from polewatch.cli import main
from polewatch.netutil import free_port
from tests.host_tools.console_helpers import PASSWORD
from tests.provision.provision_helpers import add_console_user


@dataclass
class Api:
    """A console with the registration API on loopback."""

    url: str
    keys: Path
    store: ReceiverStore

    def audit(self, action: str = "unit.register") -> list[AuditRecord]:
        """The audit records of ``action``, oldest first."""
        return list(reversed(AuditLog(self.store).records(action=action)))

    def registered(self) -> list[str]:
        """The units in the receiver's key directory."""
        units = self.keys / "units"
        return sorted(p.name for p in units.iterdir()) if units.exists() else []


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The console app (``create_app(..., keys_dir=...)``) on loopback, with a technician."""
    store = ReceiverStore(tmp_path / "receiver.sqlite")
    keys = tmp_path / "receiver"
    add_console_user(store, "technician", "tech")
    runner, url = await _serve(create_app(store, EventBus(), keys_dir=keys))
    yield Api(url, keys, store)
    await runner.cleanup()
    store.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that keeps the console's cookie (aiohttp keeps none for a bare IP
    address such as 127.0.0.1 unless its jar is unsafe)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def _login(http: aiohttp.ClientSession, url: str, name: str) -> str:
    r = await http.post(f"{url}/api/login", json={"name": name, "password": PASSWORD})
    assert r.status == 200, await r.text()
    csrf: str = (await r.json())["csrf"]
    return csrf


async def test_register_returns_the_unit_side_once(
    api: Api, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    csrf = {"X-CSRF-Token": await _login(http, api.url, "tech")}
    r = await http.post(f"{api.url}/api/units", json={"unit_id": "pole-0101"}, headers=csrf)
    assert r.status == 201
    assert r.headers["Cache-Control"] == "no-store"
    answer = await r.json()
    r2 = await http.post(f"{api.url}/api/units", json={"unit_id": "pole-0102"}, headers=csrf)
    assert (await r2.json())["kid_hex"] != answer["kid_hex"]
    again = await http.post(f"{api.url}/api/units", json={"unit_id": "pole-0101"}, headers=csrf)
    assert again.status == 409
    assert answer["unit_id"] == "pole-0101" and answer["kid_hex"] == "0001"
    assert answer["oscore"]["sender_id_hex"] == "0001"
    secret = answer["oscore"]["secret_hex"]
    assert len(secret) == 64
    # the receiver keeps its side, owner-only, with the same secret and the ids swapped
    home = api.keys / "units" / "pole-0101"
    assert json.loads((home / "unit.json").read_text())["kid_hex"] == "0001"
    kept = json.loads((home / "oscore" / "secret.json").read_text())
    assert kept["secret_hex"] == secret
    settings = json.loads((home / "oscore" / "settings.json").read_text())
    assert settings["recipient-id_hex"] == "0001" and settings["sender-id_hex"] == ""
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert secret not in caplog.text  # logged, but never the secret
    # audited, done and refused, with the unit's id and who did it, never the secret
    audit = api.audit()
    seen = [(a.user, a.role, a.target, a.outcome) for a in audit]
    assert seen == [
        ("tech", "technician", "pole-0101", "ok"),
        ("tech", "technician", "pole-0102", "ok"),
        ("tech", "technician", "pole-0101", "refused"),
    ]
    assert audit[0].detail == {"kid_hex": "0001"}
    assert audit[2].detail is not None and audit[2].detail["status"] == 409
    assert all(secret not in json.dumps(a.to_json()) for a in audit)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"unit_id": "../etc"}', "application/json", 400),
        (b'{"unit_id": ""}', "application/json", 400),
        (b'{"unit": "pole-1"}', "application/json", 400),
        (b"not json", "application/json", 400),
        (b"unit_id=pole-1", "application/x-www-form-urlencoded", 415),
    ],
)
async def test_bad_requests_register_nothing(
    api: Api, http: aiohttp.ClientSession, body: bytes, content_type: str, status: int
) -> None:
    headers = {"Content-Type": content_type, "X-CSRF-Token": await _login(http, api.url, "tech")}
    r = await http.post(f"{api.url}/api/units", data=body, headers=headers)
    assert r.status == status
    assert "error" in await r.json()
    assert api.registered() == []
    assert [(a.outcome, a.target) for a in api.audit()] == [("invalid", None)]


async def test_parallel_registrations_get_distinct_key_ids(
    api: Api, http: aiohttp.ClientSession
) -> None:
    csrf = {"X-CSRF-Token": await _login(http, api.url, "tech")}

    async def register(n: int) -> str:
        r = await http.post(f"{api.url}/api/units", json={"unit_id": f"pole-{n:04d}"}, headers=csrf)
        assert r.status == 201
        return str((await r.json())["kid_hex"])

    kids = await asyncio.gather(*(register(n) for n in range(12)))
    assert len(set(kids)) == 12


async def test_a_viewer_may_not_register(api: Api, http: aiohttp.ClientSession) -> None:
    add_console_user(api.store, "viewer", "police")
    csrf = {"X-CSRF-Token": await _login(http, api.url, "police")}
    r = await http.post(f"{api.url}/api/units", json={"unit_id": "pole-0001"}, headers=csrf)
    assert r.status == 403
    assert "the role viewer may not" in (await r.json())["error"]
    assert api.registered() == []
    denied = api.audit("post /api/units")
    assert [(a.user, a.outcome) for a in denied] == [("police", "denied")]
    # and through the client, with a clear error and nothing written
    unit_dir = api.keys.parent / "unit" / "oscore"
    with pytest.raises(ProvisionError, match=r"refused \(403\): the role viewer may not"):
        await asyncio.to_thread(
            provision_unit,
            "pole-0001",
            unit_dir,
            receiver_url=api.url,
            user="police",
            password=PASSWORD,
        )
    assert api.registered() == [] and not unit_dir.exists()


async def test_no_login_no_registration(api: Api, http: aiohttp.ClientSession) -> None:
    r = await http.post(f"{api.url}/api/units", json={"unit_id": "pole-0001"})
    assert r.status == 401
    assert api.registered() == []


async def test_a_post_without_the_csrf_token_is_refused(
    api: Api, http: aiohttp.ClientSession
) -> None:
    await _login(http, api.url, "tech")
    r = await http.post(f"{api.url}/api/units", json={"unit_id": "pole-0001"})
    assert r.status == 403
    assert "CSRF" in (await r.json())["error"]
    wrong = {"X-CSRF-Token": "not-the-token"}
    r = await http.post(f"{api.url}/api/units", json={"unit_id": "pole-0001"}, headers=wrong)
    assert r.status == 403
    assert api.registered() == []
    assert [a.outcome for a in api.audit("csrf")] == ["denied", "denied"]


async def test_provision_through_the_api(api: Api, tmp_path: Path) -> None:
    unit_dir = tmp_path / "unit" / "oscore"
    done = await asyncio.to_thread(
        provision_unit, "pole-0200", unit_dir, receiver_url=api.url, user="tech", password=PASSWORD
    )
    assert done.kid == bytes.fromhex("0001") and done.registered_at == api.url
    unit_secret = json.loads((unit_dir / "secret.json").read_text())
    kept = json.loads((api.keys / "units/pole-0200/oscore/secret.json").read_text())
    assert unit_secret == kept
    assert stat.S_IMODE((unit_dir / "secret.json").stat().st_mode) == 0o600
    with pytest.raises(ProvisionError, match="registration refused \\(409\\)"):
        await asyncio.to_thread(
            provision_unit,
            "pole-0200",
            tmp_path / "x",
            receiver_url=api.url,
            user="tech",
            password=PASSWORD,
        )
    # each run logged in, registered (or was refused) and logged out again
    trail = [(a.action, a.outcome) for a in reversed(AuditLog(api.store).records())]
    assert trail == [
        ("login", "ok"),
        ("unit.register", "ok"),
        ("logout", "ok"),
        ("login", "ok"),
        ("unit.register", "refused"),
        ("logout", "ok"),
    ]


async def test_a_wrong_password_is_a_clear_error(api: Api, tmp_path: Path) -> None:
    unit_dir = tmp_path / "unit" / "oscore"
    with pytest.raises(ProvisionError, match="login refused: wrong name or password for 'tech'"):
        await asyncio.to_thread(
            provision_unit,
            "pole-0001",
            unit_dir,
            receiver_url=api.url,
            user="tech",
            password="not " + PASSWORD,
        )
    assert api.registered() == [] and not unit_dir.exists()
    assert [a.outcome for a in api.audit("login")] == ["failed"]


async def test_too_many_failed_logins_are_a_clear_error(tmp_path: Path) -> None:
    store = ReceiverStore(tmp_path / "receiver.sqlite")
    add_console_user(store, "technician", "tech")
    keys = tmp_path / "receiver"
    app = create_app(store, EventBus(), keys_dir=keys, limiter=LoginLimiter(max_failures=1))
    runner, url = await _serve(app)
    try:
        with pytest.raises(ProvisionError, match="wrong name or password"):
            await asyncio.to_thread(register_over_http, url, "pole-0001", "tech", "wrong")
        with pytest.raises(ProvisionError, match=r"login refused \(429\): too many failed logins"):
            await asyncio.to_thread(register_over_http, url, "pole-0001", "tech", PASSWORD)
    finally:
        await runner.cleanup()
        store.close()
    assert not (keys / "units").exists()


def test_an_unreachable_receiver_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    with pytest.raises(ProvisionError, match="cannot reach the receiver"):
        register_over_http(url, "pole-0001", "tech", PASSWORD, timeout_s=5)


def test_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(ProvisionError, match="in clear"):
        register_over_http("http://receiver.example:8080", "pole-0001", "tech", PASSWORD)


async def test_the_cli_logs_in_with_the_password_from_the_environment(
    api: Api,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    unit_dir = tmp_path / "pole-0300" / "oscore"
    site = tmp_path / "pole-0300" / "site.toml"
    argv = ["provision", "pole-0300", "--unit-dir", str(unit_dir), "--site-out", str(site)]
    argv += ["--receiver-url", api.url]
    # --user is required with --receiver-url: nothing is asked for, written or registered
    assert await asyncio.to_thread(main, argv) == 2
    assert "--receiver-url needs --user" in capsys.readouterr().err
    assert not unit_dir.exists() and api.registered() == []

    assert await asyncio.to_thread(main, [*argv, "--user", "tech"]) == 0
    out = capsys.readouterr()
    assert "OSCORE key id 0001" in out.out
    secret = json.loads((unit_dir / "secret.json").read_text())["secret_hex"]
    assert PASSWORD not in out.out + out.err and secret not in out.out + out.err
    assert api.registered() == ["pole-0300"]
    assert "127.0.0.1" in site.read_text()  # the receiver's host, from --receiver-url
    assert [(a.user, a.target, a.outcome) for a in api.audit()] == [("tech", "pole-0300", "ok")]
