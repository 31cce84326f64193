"""Provisioning a new unit: its identity and OSCORE context, its site config, its registration.

The receiver allocates the unit's key id and keeps its side of the context. A technician who has
the receiver's key directory registers locally; one who does not logs in to the receiver's
console as a technician and asks its registration API (``POST /api/units``,
:mod:`host_tools.console.registration`), which answers once with the unit's side over HTTPS. The
unit's side is written owner-only and never printed; nor is the console password.

The site config is rendered from a template (``${name}`` placeholders, values TOML-quoted; a
line whose value is not given is left out) and validated before anything is registered.
"""

from __future__ import annotations

import getpass
import http.cookiejar
import ipaddress
import json
import logging
import os
import re
import string
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.errors import ConfigError
from host_tools.provision.oscore import (
    KID_BYTES,
    ProvisionError,
    UnitSecret,
    register_unit,
    write_unit_context,
)

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "site.toml.in"
UNIT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as the site config's unit.id
PASSWORD_ENV = "POLEWATCH_PASSWORD"  # the console password, for scripts; else it is asked for


@dataclass
class SiteValues:
    """What a site template is filled with."""

    unit_id: str
    receiver_host: str
    receiver_port: int = 5683
    name: str = ""
    timezone: str = "Europe/Stockholm"
    latitude: float | None = None
    longitude: float | None = None
    reporting_time_s: float = 180.0
    thermal_width: int = 160
    thermal_height: int = 120


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def render_site(template: Path, values: SiteValues) -> str:
    """The site config text for ``values`` from ``template`` (not yet validated)."""
    try:
        text = template.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{template}: no such site template") from None
    given = {k: v for k, v in vars(values).items()}
    lines = []
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        found = string.Template.pattern.finditer(line)
        names = {m["named"] or m["braced"] for m in found if m["named"] or m["braced"]}
        if any(given.get(name) is None and name in given for name in names):
            continue  # an optional value not given: leave its line out
        unknown = names - given.keys()
        if unknown:
            raise ConfigError(f"{template}:{n}: unknown placeholder(s) {sorted(unknown)}")
        lines.append(
            string.Template(line).substitute({k: _toml_value(v) for k, v in given.items()})
        )
    return "".join(lines)


def check_site(text: str, where: Path, board: Path | None = None) -> None:
    """Validate a rendered site config (against a board config, if given)."""
    from firmware.config.load import cross_check, load_board, validate_model
    from firmware.config.site import SiteConfig

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: the template gives invalid TOML: {exc}") from exc
    site = validate_model(SiteConfig, data, where)
    if board is not None:
        cross_check(load_board(board), site, where)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_password(user: str) -> str:
    """The console password of ``user``: from $POLEWATCH_PASSWORD if set, else asked for."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        try:
            password = getpass.getpass(f"console password for {user}: ")
        except EOFError:
            password = ""
    if not password:
        raise ProvisionError(f"no console password for {user} (set ${PASSWORD_ENV} or type it)")
    return password


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: the password and the session must go to the URL given, and only there."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(
    opener: urllib.request.OpenerDirector,
    url: str,
    body: dict[str, Any],
    csrf: str | None,
    timeout_s: float,
) -> dict[str, Any]:
    """POST JSON to the console; the JSON answer, or HTTPError/URLError/ValueError."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    if csrf is not None:
        request.add_header("X-CSRF-Token", csrf)
    with opener.open(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    return answer


def _reason(exc: urllib.error.HTTPError) -> str:
    """The console's error message in a refusal (or the HTTP reason)."""
    try:
        error = json.loads(exc.read()).get("error")
    except (ValueError, AttributeError, OSError):
        error = None
    return str(error) if error else str(exc.reason)


def register_over_http(
    url: str, unit_id: str, user: str, password: str, timeout_s: float = 30.0
) -> UnitSecret:
    """Register a unit with the receiver's API as console user ``user``; the unit's side.

    Logs in (``POST /api/login``), registers (``POST /api/units`` with the session cookie and
    its CSRF token) and logs out again.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ProvisionError(f"{url}: give the receiver's console URL, https://HOST[:PORT]")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ProvisionError(
            f"{url}: refusing plain HTTP to another host: the password and the unit's secret "
            "would cross the network in clear (use https://, or an SSH tunnel to 127.0.0.1)"
        )
    base = url.rstrip("/") + "/"
    login_url, endpoint = base + "api/login", base + "api/units"
    logout_url = base + "api/logout"
    # The session cookie lives in this jar only, for these three requests.
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
    )
    try:
        session = _post(opener, login_url, {"name": user, "password": password}, None, timeout_s)
        csrf = session.get("csrf")
        if not isinstance(csrf, str) or not csrf:
            raise ValueError("no CSRF token")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ProvisionError(
                f"{login_url}: login refused: wrong name or password for {user!r}"
            ) from None
        if 300 <= exc.code < 400:
            raise ProvisionError(
                f"{login_url}: redirected to {exc.headers.get('Location')}; give the console's "
                "own URL (no redirect is followed with a password)"
            ) from None
        raise ProvisionError(f"{login_url}: login refused ({exc.code}): {_reason(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ProvisionError(f"{login_url}: cannot reach the receiver: {exc}") from exc
    except ValueError as exc:
        raise ProvisionError(f"{login_url}: unexpected answer to the login ({exc})") from None
    try:
        answer = _post(opener, endpoint, {"unit_id": unit_id}, csrf, timeout_s)
    except urllib.error.HTTPError as exc:
        raise ProvisionError(
            f"{endpoint}: registration refused ({exc.code}): {_reason(exc)}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ProvisionError(f"{endpoint}: cannot reach the receiver: {exc}") from exc
    except ValueError as exc:
        raise ProvisionError(f"{endpoint}: the answer is not a JSON object") from exc
    finally:
        try:
            _post(opener, logout_url, {}, csrf, timeout_s)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # The session expires by itself; the registration's outcome stands either way.
            logger.warning("%s: logging out failed: %s", logout_url, exc)
    try:
        ctx = answer["oscore"]
        kid = bytes.fromhex(answer["kid_hex"])
        unit = UnitSecret(
            unit_id=str(answer["unit_id"]),
            kid=kid,
            secret=bytes.fromhex(ctx["secret_hex"]),
            salt=bytes.fromhex(ctx["salt_hex"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisionError(f"{endpoint}: unexpected answer (missing {exc})") from None
    if unit.unit_id != unit_id or not 0 < len(kid) <= KID_BYTES:
        raise ProvisionError(f"{endpoint}: the answer is for another unit or has a bad key id")
    return unit


@dataclass
class Provisioned:
    """What :func:`provision_unit` made."""

    unit_id: str
    kid: bytes
    context_dir: Path
    site: Path | None
    registered_at: str


def provision_unit(
    unit_id: str,
    context_dir: Path,
    *,
    receiver_keys: Path | None = None,
    receiver_url: str | None = None,
    user: str | None = None,
    password: str | None = None,
    site_out: Path | None = None,
    site_values: SiteValues | None = None,
    template: Path = DEFAULT_TEMPLATE,
    board: Path | None = None,
) -> Provisioned:
    """Register a new unit and write its context (and site config); check everything first.

    With ``receiver_url``, ``user`` logs in to the console with ``password`` (default: from
    $POLEWATCH_PASSWORD, else asked for once everything else has been checked).
    """
    if not UNIT_ID_RE.match(unit_id):
        raise ConfigError(f"unit id {unit_id!r}: letters, digits, '.', '_', '-' (at most 64)")
    if (receiver_keys is None) == (receiver_url is None):
        raise ProvisionError("register with the receiver either by its key directory or its URL")
    if receiver_url is not None and not user:
        raise ProvisionError("registering through the receiver's URL needs a console user (--user)")
    if context_dir.exists():
        raise FileExistsError(f"{context_dir}: a unit context is already there")
    text = None
    if site_out is not None:
        if site_out.exists():
            raise FileExistsError(f"{site_out}: already exists; not overwriting a site config")
        if site_values is None:
            raise ProvisionError("a site config needs its values (the receiver's host at least)")
        text = render_site(template, site_values)
        check_site(text, site_out, board)
    if receiver_url is not None:
        assert user is not None
        secret = password if password is not None else console_password(user)
        unit = register_over_http(receiver_url, unit_id, user, secret)
        where = receiver_url
    else:
        assert receiver_keys is not None
        unit = register_unit(unit_id, receiver_keys)
        where = str(receiver_keys / "units" / unit_id)
    write_unit_context(unit, context_dir)
    if site_out is not None and text is not None:
        site_out.parent.mkdir(parents=True, exist_ok=True)
        site_out.write_text(text)
    logger.info("unit %s provisioned: key id %s, registered at %s", unit_id, unit.kid.hex(), where)
    return Provisioned(unit_id, unit.kid, context_dir, site_out, where)
