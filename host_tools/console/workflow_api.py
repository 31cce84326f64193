"""The alarm workflow over HTTP: the queue, an alarm's detail, and the operators' actions.

``POST /api/alarms/{id}/{action}`` with a JSON object or form fields:

=============  ==========================================================
open           (nothing) - takes ownership if nobody owns the alarm
acknowledge    take_over
hold           text (reason), take_over
resume         take_over
dispatch       to (guard, police, fire_service), text, take_over
check          item (index), done (default true), take_over
resolve        outcome (real, false, test), text, take_over
note           text, take_over
=============  ==========================================================

Answers: 200 with the alarm; 400 naming a bad field; 404; 409 when the state does not allow the
action, the checklist is not complete, or another operator owns the alarm (``code`` says which,
``owner`` who) - sending ``take_over: true`` after the operator confirmed then takes it over.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiohttp import web

from host_tools.console.auth import requires, session_of
from host_tools.console.forms import InputError, choice, error_response, flag, integer, read_body
from host_tools.console.forms import text as text_field
from host_tools.console.state import CONSOLE
from host_tools.receiver.workflow import (
    ACTIONS,
    DISPATCH_TO,
    OUTCOMES,
    Step,
    WorkflowConflict,
)

logger = logging.getLogger(__name__)

_INT_RE = re.compile(r"-?[0-9]{1,30}")
_MAX_ROWID = 2**63 - 1  # SQLite's INTEGER range; larger ids cannot exist (and would not bind)
FIELDS: dict[str, tuple[str, ...]] = {
    "open": (),
    "acknowledge": ("take_over",),
    "hold": ("text", "take_over"),
    "resume": ("take_over",),
    "dispatch": ("to", "text", "take_over"),
    "check": ("item", "done", "take_over"),
    "resolve": ("outcome", "text", "take_over"),
    "note": ("text", "take_over"),
}


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def alarm_pk(request: web.Request) -> int | web.Response:
    """The alarm id in the path, or the error response to give."""
    raw = request.match_info["id"]
    if not _INT_RE.fullmatch(raw):
        return _error(400, f"id: the alarm id must be an integer, got {raw!r}", field="id")
    pk = int(raw)
    if not 0 < pk <= _MAX_ROWID:
        return _error(404, f"no alarm {pk}")
    return pk


async def alarms(request: web.Request) -> web.Response:
    """``GET /api/alarms[?view=resolved]``: the queue (unresolved, priority then age)."""
    view = request.query.get("view", "queue")
    if view not in ("queue", "resolved"):
        return _error(400, "view: expected queue or resolved", field="view")
    wf = request.app[CONSOLE].workflow
    return web.json_response(await asyncio.to_thread(wf.queue, view == "resolved"))


async def alarm(request: web.Request) -> web.Response:
    """``GET /api/alarms/{id}``: the alarm, its unit timeline, checklist and operator actions."""
    pk = alarm_pk(request)
    if isinstance(pk, web.Response):
        return pk
    data = await asyncio.to_thread(request.app[CONSOLE].workflow.detail, pk)
    if data is None:
        return _error(404, f"no alarm {pk}")
    return web.json_response(data)


async def checklists(request: web.Request) -> web.Response:
    """``GET /api/checklists``: the checklist of every alarm kind."""
    return web.json_response(request.app[CONSOLE].workflow.checklists)


def _step(action: str, body: dict[str, Any]) -> Step:
    take_over = flag(body, "take_over")
    if action == "dispatch":
        to = choice(body, "to", DISPATCH_TO)
        return Step(
            action, to=to, text=text_field(body, "text", required=False), take_over=take_over
        )
    if action == "resolve":
        outcome = choice(body, "outcome", OUTCOMES)
        return Step(
            action,
            outcome=outcome,
            text=text_field(body, "text", required=False),
            take_over=take_over,
        )
    if action == "check":
        return Step(
            action,
            item=integer(body, "item", 0, 99),
            done=flag(body, "done", True),
            take_over=take_over,
        )
    if action == "note":
        return Step(action, text=text_field(body, "text"), take_over=take_over)
    if action == "hold":
        return Step(action, text=text_field(body, "text", required=False), take_over=take_over)
    return Step(action, take_over=take_over)


@requires("workflow")
async def act(request: web.Request) -> web.Response:
    """``POST /api/alarms/{id}/{action}``."""
    console = request.app[CONSOLE]
    action = request.match_info["action"]
    if action not in ACTIONS:
        return _error(404, f"no action {action[:40]!r} (expected one of {', '.join(ACTIONS)})")
    pk = alarm_pk(request)
    if isinstance(pk, web.Response):
        return pk
    audit_action = f"alarm.{action}"
    try:
        body = await read_body(request, FIELDS[action])
        step = _step(action, body)
    except InputError as exc:
        await console.record(
            request, audit_action, target=f"#{pk}", outcome="invalid", detail={"error": str(exc)}
        )
        return error_response(exc)
    user = session_of(request).user.name
    now = console.clock.now()
    try:
        data = await asyncio.to_thread(console.workflow.act, pk, user, step, now)
    except WorkflowConflict as exc:
        await console.record(
            request, audit_action, target=f"#{pk}", outcome="refused", detail={"error": str(exc)}
        )
        return _error(409, str(exc), code=exc.code, owner=exc.owner)
    except ValueError as exc:  # a checklist index past the end of this alarm's list
        field, _, message = str(exc).partition(": ")
        return error_response(InputError(field, message))
    if data is None:
        return _error(404, f"no alarm {pk}")
    detail = {k: v for k, v in vars(step).items() if v not in (None, False) and k != "action"}
    if action != "open" or data["workflow"]["owned_at"] == now:
        await console.record(request, audit_action, target=data["ref"], detail=detail or None)
    console.bus.publish({"type": "alarm", "alarm": data})
    return web.json_response(data)


def add_routes(app: web.Application) -> None:
    """Add the queue, detail, checklist and action routes."""
    app.router.add_get("/api/alarms", alarms)
    app.router.add_get("/api/alarms/{id}", alarm)
    app.router.add_post("/api/alarms/{id}/{action}", act)
    app.router.add_get("/api/checklists", checklists)
