"""The operator console: a web page that lists alarms and follows them live, and its JSON API.

The page loads the alarm queue from ``/api/alarms`` and then listens to ``/api/events``
(Server-Sent Events), which carries every alarm the receiver commits and every operator action.
One forwarder per application subscribes to the receiver's :class:`EventBus` and fans each event
out to the open streams, so that each alarm gives one log line saying how many consoles it
reached. Everything under ``/api/`` needs a login (:mod:`.auth`); the alarm workflow is in
:mod:`.workflow_api`, reports in :mod:`.reports`, users and the audit log in :mod:`.admin_api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from firmware.clock import Clock, SystemClock
from firmware.errors import ConfigError, StorageError
from firmware.uplink.protocol import CommandOp
from host_tools.console import admin_api, auth, reports, workflow_api
from host_tools.console.auth import requires, session_of
from host_tools.console.checklists import OVERRIDE_NAME, load_checklists
from host_tools.console.registration import add_registration_routes
from host_tools.console.state import CONSOLE, Console, LoginLimiter
from host_tools.console.users import Users
from host_tools.receiver.audit import AuditLog
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import CommandRecord, ReceiverStore
from host_tools.receiver.workflow import Workflow

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
STREAMED = ("alarm", "command")  # bus event types the page is sent
# Browsers wait this long before reconnecting a dropped stream (the page then re-fetches the list).
RETRY_MS = 1000
# Events queued for one stream; a client this far behind is disconnected, and on reconnecting
# its page re-fetches the list, so it misses nothing (dropping events silently would).
CLIENT_BACKLOG = 256

# Everything the page needs comes from this origin; nothing may be framed or loaded from elsewhere.
_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Stream:
    """One open event stream: the events waiting to be written to it."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        # Unbounded on purpose: the hub enforces CLIENT_BACKLOG and can always queue the
        # end-of-stream marker (None).
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()

    def end(self) -> None:
        """Make the stream's handler finish after what is already queued."""
        self.queue.put_nowait(None)


class _Hub:
    """Fans bus events out to the open event streams."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.streams: set[_Stream] = set()
        self.closing = False

    def connect(self, peer: str) -> _Stream:
        """Register a new stream (already ended if the application is shutting down)."""
        stream = _Stream(peer)
        if self.closing:
            stream.end()
        else:
            self.streams.add(stream)
            logger.info("console client %s connected (%d open)", peer, len(self.streams))
        return stream

    def disconnect(self, stream: _Stream) -> None:
        """Forget a stream whose client went away or whose handler finished."""
        if stream in self.streams:
            self.streams.discard(stream)
            logger.info("console client %s disconnected (%d open)", stream.peer, len(self.streams))

    def close_all(self) -> None:
        """End every open stream and refuse new ones, so that shutdown does not wait on them."""
        self.closing = True
        for stream in list(self.streams):
            self.disconnect(stream)
            stream.end()

    def dispatch(self, event: dict[str, Any]) -> None:
        """Queue one bus event (an alarm, or a command's progress) on every open stream."""
        kind = event.get("type")
        if kind not in STREAMED or not isinstance(event.get(kind), dict):
            logger.debug("not for consoles: bus event of type %r", kind)
            return
        data: dict[str, Any] = event[kind]
        pushed = 0
        for stream in list(self.streams):
            if stream.queue.qsize() >= CLIENT_BACKLOG:
                logger.warning(
                    "console client %s is %d events behind; disconnecting it",
                    stream.peer,
                    stream.queue.qsize(),
                )
                self.disconnect(stream)
                stream.end()
                continue
            stream.queue.put_nowait((kind, data))
            pushed += 1
        if kind == "alarm":
            logger.info("%s: pushed to %d console client(s)", data.get("ref"), pushed)

    async def forward(self) -> None:
        """Move events from the bus to the streams until cancelled."""
        q = self.bus.subscribe()
        try:
            while True:
                self.dispatch(await q.get())
        finally:
            self.bus.unsubscribe(q)


_STORE = web.AppKey("store", ReceiverStore)
_HUB = web.AppKey("hub", _Hub)
_KEEPALIVE = web.AppKey("keepalive_s", float)
_OPS = {op.name.lower().replace("_", "-"): op for op in CommandOp}
MAX_TTL_S = 86400.0
MAX_CONFIG_BYTES = 64 * 1024


class Commander(Protocol):
    """Queues operator commands for units (the receiver does)."""

    def queue_command(
        self, unit_id: str, op: CommandOp, arg: str | None = None, ttl_s: float = 600.0
    ) -> CommandRecord:
        """Queue one command; it rides on the unit's next acknowledgement."""
        ...

    def update_config(self, unit_id: str, text: str, ttl_s: float = 3600.0) -> CommandRecord:
        """Check and store a new site config, and queue the unit's config update."""
        ...


_COMMANDER = web.AppKey("commander", Commander)


def create_app(
    store: ReceiverStore,
    bus: EventBus,
    commander: Commander | None = None,
    *,
    keepalive_s: float = KEEPALIVE_S,
    clock: Clock | None = None,
    checklists: Path | None = None,
    secure_cookies: bool = False,
    limiter: LoginLimiter | None = None,
    keys_dir: Path | None = None,
) -> web.Application:
    """The console's web application, serving alarms from ``store`` and live events from ``bus``.

    ``clock`` timestamps operator actions (the receiver's clock, so that response times compare
    with receipt times). ``checklists`` is a TOML file overriding the default checklists (default:
    ``checklists.toml`` next to the database, if there is one). ``secure_cookies`` marks the
    session cookie Secure even where the console cannot see that it is served over HTTPS.
    ``keys_dir`` (the receiver's key directory) adds the unit registration API, ``POST /api/units``.
    """
    app = web.Application(middlewares=[_errors, auth.auth_middleware])
    app[_STORE] = store
    # Next to an SQLite file; with PostgreSQL, in the receiver's key directory.
    local = store.directory or keys_dir
    lists = load_checklists(checklists or (local / OVERRIDE_NAME if local else None))
    app[CONSOLE] = Console(
        store=store,
        bus=bus,
        users=Users(store),
        audit=AuditLog(store),
        workflow=Workflow(store, lists),
        clock=clock or SystemClock(),
        secure_cookies=secure_cookies,
        limiter=limiter or LoginLimiter(),
    )
    if commander is not None:
        app[_COMMANDER] = commander
        app.router.add_post("/api/units/{unit}/commands", _queue_command)
        app.router.add_post("/api/units/{unit}/config", _update_config)
    app[_HUB] = _Hub(bus)
    app[_KEEPALIVE] = keepalive_s
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    auth.add_routes(app)
    workflow_api.add_routes(app)
    reports.add_routes(app)
    admin_api.add_routes(app)
    if keys_dir is not None:
        add_registration_routes(app, keys_dir)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/units", _units)
    app.router.add_get("/api/commands", _commands)
    app.router.add_static("/static", STATIC_DIR)
    app.cleanup_ctx.append(_forwarder)
    app.on_startup.append(_check_users)
    app.on_shutdown.append(_end_streams)
    app.on_response_prepare.append(_headers)
    return app


async def _check_users(app: web.Application) -> None:
    if not await asyncio.to_thread(app[CONSOLE].users.count):
        logger.warning(
            "the console has no users: create the first with "
            "'polewatch user add NAME --role supervisor --db %s'",
            app[_STORE].where,
        )


def client_count(app: web.Application) -> int:
    """How many live event streams the console application has open."""
    return len(app[_HUB].streams)


async def _forwarder(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[_HUB].forward(), name="console-forwarder")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _end_streams(app: web.Application) -> None:
    app[_HUB].close_all()


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.app[CONSOLE].secure_cookies or request.secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    # The API is live data; the page and its files may be cached but must be revalidated, so
    # that a new version reaches consoles that stay open for days.
    cache = "no-store" if request.path.startswith("/api/") else "no-cache"
    response.headers.setdefault("Cache-Control", cache)


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (StorageError, sqlite3.Error):
        logger.exception("console request %s %s failed", request.method, request.path)
        return _error(503, "the alarm store is unavailable")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _units(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[_STORE].units))


async def _commands(request: web.Request) -> web.Response:
    unit = request.query.get("unit")
    records = await asyncio.to_thread(request.app[_STORE].commands, unit)
    return web.json_response([r.to_json() for r in records])


@requires("command")
async def _queue_command(request: web.Request) -> web.Response:
    """``POST /api/units/{unit}/commands`` with JSON ``{"op": ..., "arg": ..., "ttl_s": ...}``.

    An optional ``alarm`` (its id) records the command among that alarm's operator actions.
    """
    if request.content_type != "application/json":
        return _error(415, "send application/json")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "expected an object with op, and optionally arg, ttl_s and alarm")
    unknown = sorted(set(body) - {"op", "arg", "ttl_s", "alarm"})
    if unknown:
        return _error(400, f"{unknown[0][:40]}: unknown field (expected op, arg, ttl_s, alarm)")
    op = _OPS.get(str(body.get("op")))
    if op is None:
        return _error(400, f"op: expected one of {', '.join(sorted(_OPS))}")
    arg = body.get("arg")
    if arg is not None and (not isinstance(arg, str) or not 1 <= len(arg) <= 64):
        return _error(400, "arg: expected text of 1..64 characters")
    if op in (CommandOp.TRIGGER, CommandOp.CONFIG_UPDATE) and arg is None:
        return _error(400, f"arg: {op.name.lower()} needs an argument")
    ttl = body.get("ttl_s", 600)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= MAX_TTL_S:
        return _error(400, f"ttl_s: expected seconds 1..{MAX_TTL_S:.0f}")
    unit = request.match_info["unit"]
    known = {u["unit_id"] for u in await asyncio.to_thread(request.app[_STORE].units)}
    if unit not in known:
        return _error(404, f"no unit {unit!r} has reported to this receiver")
    alarm = body.get("alarm")
    if alarm is not None and (isinstance(alarm, bool) or not isinstance(alarm, int)):
        return _error(400, "alarm: expected the alarm's id (an integer)")
    console = request.app[CONSOLE]
    if alarm is not None and await asyncio.to_thread(console.store.alarm, alarm) is None:
        return _error(400, f"alarm: no alarm {alarm}")
    commander = request.app[_COMMANDER]
    record = await asyncio.to_thread(commander.queue_command, unit, op, arg, float(ttl))
    detail = {"op": record.op, "arg": arg, "command": record.id}
    await console.record(request, "unit.command", target=unit, detail=detail)
    if alarm is not None:
        user = session_of(request).user.name
        await asyncio.to_thread(
            console.workflow.log_action,
            alarm,
            user,
            "command",
            {**detail, "unit": unit},
            console.clock.now(),
        )
        data = await asyncio.to_thread(console.workflow.alarm_json, alarm)
        if data is not None:
            console.bus.publish({"type": "alarm", "alarm": data})
    return web.json_response(record.to_json(), status=201)


@requires("config")
async def _update_config(request: web.Request) -> web.Response:
    """``POST /api/units/{unit}/config`` with the new site config (TOML) as the body."""
    if request.content_type not in ("application/toml", "text/plain"):
        return _error(415, "send the site config as application/toml")
    if (request.content_length or 0) > MAX_CONFIG_BYTES:
        return _error(413, f"a site config is at most {MAX_CONFIG_BYTES} bytes")
    text = await request.text()
    unit = request.match_info["unit"]
    known = {u["unit_id"] for u in await asyncio.to_thread(request.app[_STORE].units)}
    if unit not in known:
        return _error(404, f"no unit {unit!r} has reported to this receiver")
    try:
        record = await asyncio.to_thread(request.app[_COMMANDER].update_config, unit, text)
    except ConfigError as exc:
        problems = str(exc).splitlines()
        await request.app[CONSOLE].record(
            request,
            "unit.config",
            target=unit,
            outcome="invalid",
            detail={"problems": problems[:5]},
        )
        return web.json_response({"error": "invalid site config", "problems": problems}, status=400)
    await request.app[CONSOLE].record(
        request, "unit.config", target=unit, detail={"version": record.arg}
    )
    return web.json_response(record.to_json(), status=201)


async def _events(request: web.Request) -> web.StreamResponse:
    hub = request.app[_HUB]
    keepalive_s = request.app[_KEEPALIVE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "X-Accel-Buffering": "no",  # a buffering reverse proxy would hold events back
        }
    )
    # Registered before the headers go out: once a client sees the stream open, it gets every
    # later event, so a list fetched after that point plus the stream misses nothing.
    stream = hub.connect(request.remote or "?")
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        while True:
            try:
                async with asyncio.timeout(keepalive_s):
                    item = await stream.queue.get()
            except TimeoutError:
                # Besides keeping proxies from timing the stream out, this write is how a
                # client that went away is noticed.
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            await response.write(_frame(*item))
    except ConnectionResetError:
        logger.debug("console client %s went away", stream.peer)
    finally:
        hub.disconnect(stream)
    return response


def _frame(event: str, data: dict[str, Any]) -> bytes:
    # json.dumps never emits a raw newline, so the payload is a single data: line.
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()
