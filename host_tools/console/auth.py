"""Login, sessions, roles and CSRF protection of the console.

- Every ``/api/`` route needs a session unless marked :func:`public`; :func:`requires` names the
  permission a route needs, and :data:`PERMISSIONS` says which roles have it.
- Every request that changes something (POST) must carry the session's CSRF token in the
  ``X-CSRF-Token`` header (or a ``csrf_token`` form field), and an ``Origin``, if the browser sends
  one, of this console. The session cookie is HttpOnly and SameSite=Strict as well.
- Logins are rate-limited per address and per name. Every refusal is audited.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from host_tools.console.forms import InputError, error_response, read_body
from host_tools.console.state import CONSOLE, SESSION
from host_tools.console.users import NAME_RE, ROLES, SESSION_MAX_S, Session

logger = logging.getLogger(__name__)

COOKIE = "polewatch_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")

# Permission -> roles that have it. A viewer (a police liaison, for instance) only reads.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "workflow": frozenset({"operator", "supervisor"}),
    "command": frozenset({"operator", "supervisor", "technician"}),
    "config": frozenset({"technician", "supervisor"}),
    "reports": frozenset({"operator", "supervisor"}),
    "audit": frozenset({"supervisor"}),
    "users": frozenset({"supervisor"}),
}

_H = TypeVar("_H", bound=Callable[..., Awaitable[web.StreamResponse]])
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(permission: str) -> Callable[[_H], _H]:
    """Mark a route handler as needing ``permission`` (routes default to ``read``)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def mark(handler: _H) -> _H:
        handler.permission = permission  # type: ignore[attr-defined]
        return handler

    return mark


def public(handler: _H) -> _H:
    """Mark a route handler as open to anyone (the login)."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


def permissions_of(role: str) -> list[str]:
    """The permissions a role has."""
    return sorted(p for p, roles in PERMISSIONS.items() if role in roles)


def session_of(request: web.Request) -> Session:
    """The request's session (the middleware has checked there is one)."""
    session: Session = request[SESSION]
    return session


def _denied(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _origin_ok(request: web.Request) -> bool:
    """A cross-site request is refused whatever it carries."""
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or a same-origin GET-like request
        return True
    return urlsplit(origin).netloc == request.host


@web.middleware
async def auth_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Check the session, the CSRF token and the role before any ``/api/`` handler runs."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    route_handler = request.match_info.handler
    console = request.app[CONSOLE]
    unsafe = request.method in UNSAFE
    if unsafe and not _origin_ok(request):
        await console.record(
            request,
            "csrf",
            target=request.path,
            outcome="denied",
            detail={"origin": request.headers.get("Origin")},
        )
        return _denied(403, "cross-origin request refused")
    if getattr(route_handler, "public", False):
        return await handler(request)
    token = request.cookies.get(COOKIE)
    session = None
    if token:
        session = await asyncio.to_thread(console.users.session, token, console.wall())
    if session is None:
        return _denied(401, "log in first")
    request[SESSION] = session
    if unsafe:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.post()
            field = form.get(CSRF_FIELD)
            sent = field if isinstance(field, str) else None
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            await console.record(request, "csrf", target=request.path, outcome="denied")
            return _denied(403, f"missing or wrong CSRF token ({CSRF_HEADER} header)")
    permission = getattr(route_handler, "permission", "read")
    if session.user.role not in PERMISSIONS[permission]:
        await console.record(
            request,
            request.method.lower() + " " + request.path,
            outcome="denied",
            detail={"needs": permission},
        )
        return _denied(403, f"the role {session.user.role} may not do this (it needs {permission})")
    return await handler(request)


def _cookie_secure(request: web.Request) -> bool:
    console = request.app[CONSOLE]
    forwarded = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    return console.secure_cookies or request.secure or forwarded


def _who(session: Session) -> dict[str, Any]:
    return {
        "user": session.user.name,
        "role": session.user.role,
        "csrf": session.csrf,
        "permissions": permissions_of(session.user.role),
    }


@public
async def login(request: web.Request) -> web.Response:
    """``POST /api/login`` with ``name`` and ``password``: opens a session (sets the cookie)."""
    console = request.app[CONSOLE]
    try:
        body = await read_body(request, ("name", "password"))
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not name:
            raise InputError("name", "required")
        if not isinstance(password, str) or not password:
            raise InputError("password", "required")
    except InputError as exc:
        return error_response(exc)
    name = name.strip().lower()
    keys = [f"ip:{request.remote}", f"user:{name}"]
    wait = console.limiter.retry_after(keys)
    if wait > 0:
        await console.record(
            request,
            "login",
            target=name,
            outcome="denied",
            user=name,
            detail={"reason": "rate limited"},
        )
        return web.json_response(
            {"error": f"too many failed logins; try again in {wait:.0f} s"},
            status=429,
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    user = None
    if NAME_RE.fullmatch(name) and len(password) <= 1024:
        user = await asyncio.to_thread(console.users.authenticate, name, password)
    if user is None:
        console.limiter.failed(keys)
        await console.record(request, "login", target=name[:40], outcome="failed")
        return _denied(401, "wrong name or password")
    console.limiter.succeeded(f"user:{name}")
    token, session = await asyncio.to_thread(
        console.users.open_session, user, console.wall(), request.remote
    )
    request[SESSION] = session
    await console.record(request, "login")
    response = web.json_response(_who(session))
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=_cookie_secure(request),
        path="/",
        max_age=int(SESSION_MAX_S),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """``POST /api/logout``: ends the session."""
    console = request.app[CONSOLE]
    token = request.cookies.get(COOKIE, "")
    await asyncio.to_thread(console.users.close_session, token)
    await console.record(request, "logout")
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    """``GET /api/me``: who is logged in, their permissions and the CSRF token."""
    return web.json_response(_who(session_of(request)))


def add_routes(app: web.Application) -> None:
    """Add the login, logout and who-am-I routes."""
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
