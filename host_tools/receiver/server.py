"""The receiver process: CoAP endpoint, verification, dedupe, storage, and the console.

A message is decoded and checked against the protocol, committed, and only then acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiocoap
import aiocoap.resource as resource
from aiocoap import oscore
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
from aiohttp import web

from firmware.clock import Clock, SystemClock
from firmware.config.load import validate_model
from firmware.config.site import SiteConfig
from firmware.errors import ConfigError, NetworkError, ProtocolError, StorageError
from firmware.uplink import protocol
from host_tools.receiver import rejects as R
from host_tools.receiver.bus import EventBus
from host_tools.receiver.database import is_postgres
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.rejects import Rejects, UnparsableFilter
from host_tools.receiver.retention import RetentionConfig, run_retention
from host_tools.receiver.store import AlarmRecord, CommandRecord, Ingested, ReceiverStore
from host_tools.receiver.units import UnitKeys, close_all, unit_of

if TYPE_CHECKING:
    from host_tools.forward.config import ForwardConfig
    from host_tools.forward.forwarder import Forwarder
    from host_tools.receiver.postgres import EventRelay

logger = logging.getLogger(__name__)

FILTERED_LOGGERS = ("coap-server", "asyncio")  # see rejects.UnparsableFilter

# Called with each queue entry the receiver commits, and the message that did it (None when the
# receiver itself raised it: a unit offline or back).
AlarmHook = Callable[[AlarmRecord, protocol.Message | None], None]
# The same, awaited before the unit is acknowledged (durable hand-offs: the forwarder's queue).
DurableHook = Callable[[AlarmRecord, protocol.Message | None], Awaitable[None]]
Changed = list[tuple[AlarmRecord, protocol.Message | None]]


class RequireOscore(OscoreSiteWrapper):  # type: ignore[misc]
    """aiocoap's OSCORE site wrapper, refusing (and counting) every unprotected request.

    The stock wrapper passes unprotected requests through to the site; here nothing is served
    without OSCORE, whatever the path or method.
    """

    def __init__(self, site: resource.Site, keys: UnitKeys, rejects: Rejects) -> None:
        super().__init__(site, keys)
        self.rejects = rejects

    async def render_to_pipe(self, pipe: Any) -> None:
        """Unprotected: 4.01 and counted. Protected: verified by the stock wrapper."""
        request = pipe.request
        try:
            oscore.verify_start(request)
        except oscore.NotAProtectedMessage:
            path = "/".join(request.opt.uri_path)
            self.rejects.reject(R.UNPROTECTED, request.remote, f"{request.code} /{path}")
            if request.mtype == aiocoap.CON:
                pipe.add_response(_error(aiocoap.UNAUTHORIZED, "OSCORE required"), is_last=True)
            return
        except Exception as exc:  # any malformed OSCORE option
            self.rejects.reject(R.FORGED, request.remote, f"bad OSCORE option: {exc}")
            if request.mtype == aiocoap.CON:
                pipe.add_response(_error(aiocoap.BAD_OPTION, "bad OSCORE option"), is_last=True)
            return
        await super().render_to_pipe(pipe)


class ConfigResource(resource.Resource):  # type: ignore[misc]
    """``GET /c?v=N``: version N of the requesting unit's site config (TOML), for a config update.

    Only the unit the OSCORE context identifies gets its own config; blockwise transfer carries
    configs larger than one datagram.
    """

    def __init__(self, receiver: Receiver) -> None:
        super().__init__()
        self.receiver = receiver

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        """The config text, or 4.04."""
        unit = unit_of(list(request.remote.authenticated_claims))
        if unit is None:
            self.receiver.rejects.reject(R.UNPROTECTED, request.remote, "GET /c without OSCORE")
            return _error(aiocoap.UNAUTHORIZED, "OSCORE required")
        query = dict(q.partition("=")[::2] for q in request.opt.uri_query)
        if not query.get("v", "").isdigit():
            return _error(aiocoap.BAD_REQUEST, "give the version: ?v=N")
        store = self.receiver.require_store()
        text = await asyncio.to_thread(store.config, unit, int(query["v"]))
        if text is None:
            return _error(aiocoap.NOT_FOUND, f"no config version {query['v']} for {unit}")
        logger.info("%s: site config v%s fetched", unit, query["v"])
        return aiocoap.Message(code=aiocoap.CONTENT, payload=text.encode())


class UplinkResource(resource.Resource):  # type: ignore[misc]
    """``POST /a``: one protocol message per request, OSCORE-verified, acknowledged after commit.

    aiocoap's OSCORE site wrapper passes unprotected requests through unchanged, so this resource
    checks the authenticated claims itself: no verified unit, no service.
    """

    def __init__(self, receiver: Receiver) -> None:
        super().__init__()
        self.receiver = receiver

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        """Verify, commit, then acknowledge (with any commands waiting for the unit)."""
        rejects = self.receiver.rejects
        unit = unit_of(list(request.remote.authenticated_claims))
        if unit is None:
            rejects.reject(R.UNPROTECTED, request.remote, "no OSCORE protection")
            return _error(aiocoap.UNAUTHORIZED, "OSCORE required")
        fmt = request.opt.content_format
        if fmt is not None and int(fmt) != protocol.CONTENT_FORMAT_CBOR:
            rejects.reject(R.MALFORMED, unit, f"content-format {fmt}")
            return _error(aiocoap.UNSUPPORTED_CONTENT_FORMAT, "expected application/cbor (60)")
        if len(request.payload) > protocol.MAX_MESSAGE_BYTES:
            rejects.reject(R.OVERSIZED, unit, f"{len(request.payload)} bytes")
            return _error(aiocoap.REQUEST_ENTITY_TOO_LARGE, "message too large")
        try:
            msg = protocol.decode(request.payload, unit_id=unit)
            if isinstance(msg, protocol.Ack):
                raise ProtocolError("acknowledgements are not accepted here")
        except ProtocolError as exc:
            rejects.reject(R.MALFORMED, unit, str(exc))
            return _error(aiocoap.BAD_REQUEST, str(exc))
        store = self.receiver.require_store()
        received = self.receiver.clock.now()
        try:
            result = await asyncio.to_thread(store.ingest, msg, received)
        except StorageError as exc:
            logger.error("cannot store msg %d of %s: %s", msg.msg_id, unit, exc)
            return _error(aiocoap.INTERNAL_SERVER_ERROR, "storage unavailable; retry")
        await self.receiver.hand_on(self.receiver.took(msg, result))
        for cmd in result.commands:
            logger.info(
                "%s: command %d (%s) delivered on the ack of msg %d",
                unit,
                cmd.command_id,
                cmd.op.name.lower(),
                msg.msg_id,
            )
        status = protocol.AckStatus.DUPLICATE if result.duplicate else protocol.AckStatus.STORED
        ack = protocol.Ack(
            msg_id=msg.msg_id,
            time_s=round(received),
            status=status,
            commands=result.commands,
        )
        return aiocoap.Message(
            code=aiocoap.CHANGED,
            payload=protocol.encode(ack),
            content_format=protocol.CONTENT_FORMAT_CBOR,
        )


def _check_udp_free(ep: Endpoint) -> None:
    """Fail if another process holds the UDP port.

    aiocoap binds with SO_REUSEPORT, so a second receiver on the same port would start without
    complaint and then share (split) the units' traffic. A plain bind notices.
    """
    family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((ep.host, ep.port))


def _error(code: aiocoap.numbers.codes.Code, text: str) -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=text.encode()[:200])


class Receiver:
    """The receiving-centre process: CoAP+OSCORE endpoint, supervision, and the web console."""

    def __init__(
        self,
        db_path: Path | str,
        coap: Endpoint,
        http: Endpoint | None,
        keys_dir: Path | None = None,
        supervise_every_s: float = 1.0,
        clock: Clock | None = None,
        forward: ForwardConfig | None = None,
        instance: int = 0,
    ) -> None:
        self.db_path, self.coap, self.http = db_path, coap, http
        if keys_dir is None:
            if is_postgres(db_path):
                raise ConfigError("a receiver on PostgreSQL needs its key directory (--keys)")
            keys_dir = Path(db_path).parent
        self.keys_dir = keys_dir
        self.instance = instance  # this receiver's number among those sharing a database
        self.supervise_every_s = supervise_every_s  # real seconds between supervision checks
        self.clock: Clock = clock or SystemClock()  # a simulated one in simulations
        self.store: ReceiverStore | None = None
        self.bus = EventBus()
        self.hooks: list[AlarmHook] = []
        self.durable_hooks: list[DurableHook] = []
        self.rejects = Rejects()
        self.keys: UnitKeys | None = None
        self._filter = UnparsableFilter(self.rejects)
        self._coap_ctx: aiocoap.Context | None = None
        self._web: web.AppRunner | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.relay: EventRelay | None = None  # console events to and from other receivers
        # Onward delivery and retention, from the --forward file (retention defaults without it).
        self.forward = forward
        self.retention: RetentionConfig = forward.retention if forward else RetentionConfig()
        self.forwarder: Forwarder | None = None
        self._retention: asyncio.Task[None] | None = None
        self.ingested: Counter[str] = Counter()  # messages committed since start, by kind
        self.duplicates = 0

    @property
    def console_url(self) -> str | None:
        """Where the console listens, once started."""
        return None if self.http is None else f"http://{self.http}/"

    def require_store(self) -> ReceiverStore:
        """The open store (the receiver must be started)."""
        if self.store is None:
            raise RuntimeError("the receiver is not started")
        return self.store

    def took(self, msg: protocol.Message, result: Ingested) -> Changed:
        """Log and publish what a committed message changed; return it for :meth:`hand_on`."""
        changed: Changed = []
        if result.duplicate:
            self.duplicates += 1
        else:
            self.ingested[msg.KIND.name.lower()] += 1
        if result.restored is not None:
            self._publish(result.restored, f"unit {msg.unit_id} is back (restore)")
            changed.append((result.restored, None))
        if result.duplicate:
            logger.info("%s: msg %d is a duplicate; acknowledged again", msg.unit_id, msg.msg_id)
            return changed
        if result.alarm is not None:
            phase = (
                msg.phase.name.lower() if isinstance(msg, protocol.Alarm) else msg.KIND.name.lower()
            )
            ref = result.alarm.ref
            logger.info(
                "%s: msg %d (%s) committed to receiver database as alarm #%d",
                ref,
                msg.msg_id,
                phase,
                result.alarm.id,
            )
            self.bus.publish({"type": "alarm", "alarm": result.alarm.to_json()})
            for hook in self.hooks:
                hook(result.alarm, msg)
            changed.append((result.alarm, msg))
        if result.command is not None:
            cmd = result.command
            logger.info(
                "%s: command %d (%s) %s%s",
                msg.unit_id,
                cmd.id,
                cmd.op,
                cmd.state,
                f": {cmd.detail}" if cmd.detail else "",
            )
            self.bus.publish({"type": "command", "command": cmd.to_json()})
        return changed

    async def hand_on(self, changed: Changed) -> None:
        """Await the durable hooks for each changed alarm (before the unit is acknowledged)."""
        for record, msg in changed:
            for hook in self.durable_hooks:
                await hook(record, msg)

    def _publish(self, record: AlarmRecord, what: str) -> None:
        logger.warning("%s: %s", record.ref, what)
        self.bus.publish({"type": "alarm", "alarm": record.to_json()})
        for hook in self.hooks:
            hook(record, None)

    def queue_command(
        self, unit_id: str, op: protocol.CommandOp, arg: str | None = None, ttl_s: float = 600.0
    ) -> CommandRecord:
        """Queue an operator command; it rides on the unit's next acknowledgement."""
        cmd = self.require_store().queue_command(unit_id, op, arg, self.clock.now(), ttl_s)
        logger.info(
            "%s: command %d (%s%s) queued, expires in %.0f s",
            unit_id,
            cmd.id,
            cmd.op,
            f" {arg}" if arg else "",
            ttl_s,
        )
        self.bus.publish({"type": "command", "command": cmd.to_json()})
        return cmd

    def update_config(self, unit_id: str, text: str, ttl_s: float = 3600.0) -> CommandRecord:
        """Check a new site config for a unit, store it, and queue the update command.

        The receiver checks what it can (syntax, keys, types, references within the site, the
        unit's id); the unit checks it again against its board before it takes it.
        """
        where = Path(f"site config for {unit_id}")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
        site = validate_model(SiteConfig, data, where)
        if site.unit.id != unit_id:
            raise ConfigError(f"{where}: unit.id: is {site.unit.id!r}, not {unit_id!r}")
        version = self.require_store().put_config(unit_id, text, self.clock.now())
        logger.info("%s: site config v%d stored", unit_id, version)
        return self.queue_command(unit_id, protocol.CommandOp.CONFIG_UPDATE, str(version), ttl_s)

    async def _supervise(self) -> None:
        store = self.require_store()
        while True:
            await asyncio.sleep(self.supervise_every_s)
            try:
                for record in await asyncio.to_thread(store.overdue, self.clock.now()):
                    self._publish(record, f"unit {record.unit_id} is offline ({record.detail})")
                    await self.hand_on([(record, None)])
            except StorageError as exc:
                logger.error("supervision: %s", exc)

    async def _start_forwarding(self) -> None:
        """Start the forwarder (when the --forward file names targets) and the retention job."""
        store = self.require_store()
        if self.forward is not None and self.forward.targets:
            from host_tools.forward.forwarder import Forwarder

            # Each receiver's own outbox: it forwards what it took in itself.
            local = store.directory or self.keys_dir
            stem = Path(self.db_path).stem if store.directory else "receiver"
            queue = local / f"{stem}.forward.sqlite"
            self.forwarder = Forwarder(self.forward, queue, self.clock)
            await self.forwarder.start(store)
            self.durable_hooks.append(self.forwarder.hand_on)
        from host_tools.receiver.audit import AuditLog

        audit = [("audit", AuditLog(store).delete_before)]
        self._retention = asyncio.create_task(
            run_retention(store, self.retention, self.clock, audit), name="retention"
        )

    async def _stop_forwarding(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
            self._retention = None
        if self.forwarder is not None:
            self.durable_hooks.remove(self.forwarder.hand_on)
            await self.forwarder.stop()
            self.forwarder = None

    async def start(self) -> None:
        """Open the database and the units' keys, bind CoAP, start supervision and the console."""
        self.store = ReceiverStore(self.db_path)
        try:
            self.keys = UnitKeys(self.keys_dir, self.rejects, self.instance)
            site = resource.Site()
            site.add_resource([], UplinkResource(self))  # the root: no Uri-Path bytes
            site.add_resource(["c"], ConfigResource(self))
            _check_udp_free(self.coap)
            self._coap_ctx = await aiocoap.Context.create_server_context(
                RequireOscore(site, self.keys, self.rejects), bind=(self.coap.host, self.coap.port)
            )
        except OSError as exc:
            self.store.close()
            self.store = None
            raise NetworkError(
                f"cannot listen for CoAP on {self.coap}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            self.store.close()
            self.store = None
            raise
        for name in FILTERED_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        try:
            if self.store.db.shared:
                from host_tools.receiver.postgres import EventRelay

                self.relay = EventRelay(str(self.db_path), self.bus)
                await self.relay.start()
            await self._start_forwarding()
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="supervision")
        logger.info(
            "receiver listening on coap://%s/ (OSCORE), database %s", self.coap, self.store.where
        )
        if self.http is not None:
            from host_tools.console.app import create_app
            from host_tools.receiver.metrics import add_metrics_route

            app = create_app(self.store, self.bus, self, clock=self.clock, keys_dir=self.keys_dir)
            # Outside /api/, so without a login (Prometheus scrapes it): counts, no personal data.
            add_metrics_route(app, self)
            self._web = web.AppRunner(app, access_log=None)
            await self._web.setup()
            tcp = web.TCPSite(self._web, self.http.host, self.http.port)
            try:
                await tcp.start()
            except OSError as exc:
                await self.stop()
                raise NetworkError(
                    f"cannot serve the console on {self.http}: {exc.strerror or exc}"
                ) from exc
            logger.info("console at %s", self.console_url)

    async def stop(self) -> None:
        """Stop serving and close the database."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        if self._web is not None:
            await self._web.cleanup()
            self._web = None
        if self._coap_ctx is not None:
            await self._coap_ctx.shutdown()
            self._coap_ctx = None
        for name in FILTERED_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        if self.keys is not None:
            close_all(self.keys)
            self.keys = None
        await self._stop_forwarding()
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.rejects.total:
            logger.info("rejected during this run: %s", dict(self.rejects.counts))
        logger.info("receiver stopped")

    async def serve_forever(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
