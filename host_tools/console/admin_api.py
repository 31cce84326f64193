"""User administration and the audit log over HTTP (supervisors only)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from host_tools.console.auth import requires, session_of
from host_tools.console.forms import InputError, choice, error_response, flag, integer, read_body
from host_tools.console.state import CONSOLE
from host_tools.console.users import ROLES, UserError, check_name

logger = logging.getLogger(__name__)


@requires("users")
async def list_users(request: web.Request) -> web.Response:
    """``GET /api/users``."""
    users = await asyncio.to_thread(request.app[CONSOLE].users.list)
    return web.json_response([u.to_json() for u in users])


@requires("users")
async def add_user(request: web.Request) -> web.Response:
    """``POST /api/users`` with name, role and password (201, or 400 naming the field)."""
    console = request.app[CONSOLE]
    try:
        body = await read_body(request, ("name", "role", "password"))
        name = check_name(body.get("name"))
        role = choice(body, "role", ROLES)
        password = body.get("password")
        if not isinstance(password, str):
            raise InputError("password", "required")
        assert role is not None
        user = await asyncio.to_thread(console.users.add, name, role, password, console.clock.now())
    except (InputError, UserError) as exc:
        await console.record(request, "user.add", outcome="invalid", detail={"error": str(exc)})
        return error_response(InputError(exc.field, str(exc).partition(": ")[2]))
    await console.record(request, "user.add", target=name, detail={"role": role})
    return web.json_response(user.to_json(), status=201)


@requires("users")
async def change_user(request: web.Request) -> web.Response:
    """``POST /api/users/{name}`` with any of role, password, disabled."""
    console = request.app[CONSOLE]
    name = request.match_info["name"]
    try:
        body = await read_body(request, ("role", "password", "disabled"))
        if not body:
            raise InputError("body", "give role, password or disabled")
        role = choice(body, "role", ROLES, required=False)
        disabled = flag(body, "disabled") if "disabled" in body else None
        password = body.get("password")
        if password is not None and not isinstance(password, str):
            raise InputError("password", "expected text")
        if name == session_of(request).user.name and (disabled or role not in (None, "supervisor")):
            raise InputError("name", "you cannot disable yourself or drop your own role")
        user = await asyncio.to_thread(
            console.users.update, name, role=role, password=password, disabled=disabled
        )
    except (InputError, UserError) as exc:
        await console.record(
            request, "user.change", target=name[:40], outcome="invalid", detail={"error": str(exc)}
        )
        status = 404 if str(exc).startswith("name: no user") else 400
        return web.json_response({"error": str(exc), "field": exc.field}, status=status)
    changes = {k: v for k, v in (("role", role), ("disabled", disabled)) if v is not None}
    if password is not None:
        changes["password"] = "changed"
    await console.record(request, "user.change", target=name, detail=changes)
    return web.json_response(user.to_json())


@requires("audit")
async def audit_log(request: web.Request) -> web.Response:
    """``GET /api/audit?limit=N&before=ID&user=U&action=A``: newest first."""
    console = request.app[CONSOLE]
    query = dict(request.query)
    try:
        limit = integer(query, "limit", 1, 1000) if "limit" in query else 200
        before = integer(query, "before", 1, 2**63 - 1) if "before" in query else None
    except InputError as exc:
        return error_response(exc)
    records = await asyncio.to_thread(
        console.audit.records, limit, before, query.get("user"), query.get("action")
    )
    return web.json_response([r.to_json() for r in records])


def add_routes(app: web.Application) -> None:
    """Add the user administration and audit routes."""
    app.router.add_get("/api/users", list_users)
    app.router.add_post("/api/users", add_user)
    app.router.add_post("/api/users/{name}", change_user)
    app.router.add_get("/api/audit", audit_log)
