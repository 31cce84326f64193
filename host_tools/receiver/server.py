"""The receiver process: CoAP endpoint, verification, dedupe, storage, and the console.

A message is decoded and checked against the protocol, committed, and only then acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiocoap
import aiocoap.resource as resource
from aiohttp import web

from firmware.errors import NetworkError, ProtocolError, StorageError
from firmware.uplink import protocol
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import AlarmRecord, ReceiverStore

logger = logging.getLogger(__name__)

AlarmHook = Callable[[AlarmRecord, protocol.Alarm], None]


@dataclass(frozen=True)
class Endpoint:
    """A host and port to bind or reach."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> Endpoint:
        """Parse ``host``, ``host:port`` or ``[v6]:port``."""
        host, sep, port = text.rpartition(":")
        if not sep or host.endswith(":"):
            return cls(text.strip("[]"), default_port)
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bad port in {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class AlarmResource(resource.Resource):  # type: ignore[misc]
    """``POST /a``: one protocol message per request, acknowledged after commit."""

    def __init__(self, store: ReceiverStore, bus: EventBus, hooks: list[AlarmHook]) -> None:
        super().__init__()
        self.store, self.bus, self.hooks = store, bus, hooks

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        """Verify, commit, then acknowledge."""
        fmt = request.opt.content_format
        if fmt is not None and int(fmt) != protocol.CONTENT_FORMAT_CBOR:
            return _error(aiocoap.UNSUPPORTED_CONTENT_FORMAT, "expected application/cbor (60)")
        try:
            msg = protocol.decode(request.payload)
        except ProtocolError as exc:
            logger.warning("rejected message from %s: %s", request.remote, exc)
            return _error(aiocoap.BAD_REQUEST, str(exc))
        if isinstance(msg, protocol.Ack):
            return _error(aiocoap.BAD_REQUEST, "acknowledgements are not accepted here")
        received = time.time()
        try:
            result = await asyncio.to_thread(self.store.ingest, msg, received)
        except StorageError as exc:
            logger.error("cannot store msg %d of %s: %s", msg.msg_id, msg.unit_id, exc)
            return _error(aiocoap.INTERNAL_SERVER_ERROR, "storage unavailable; retry")
        ref = msg.ref if isinstance(msg, protocol.Alarm) else msg.unit_id
        if result.duplicate:
            logger.info("%s: msg %d is a duplicate; acknowledged again", ref, msg.msg_id)
        elif result.alarm is not None and isinstance(msg, protocol.Alarm):
            logger.info(
                "%s: msg %d (%s) committed to receiver database as alarm #%d",
                ref,
                msg.msg_id,
                msg.phase.name.lower(),
                result.alarm.id,
            )
            self.bus.publish({"type": "alarm", "alarm": result.alarm.to_json()})
            for hook in self.hooks:
                hook(result.alarm, msg)
        status = protocol.AckStatus.DUPLICATE if result.duplicate else protocol.AckStatus.STORED
        ack = protocol.Ack(
            unit_id=msg.unit_id, msg_id=msg.msg_id, time_ms=round(received * 1000), status=status
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
    """The receiving-centre process: CoAP endpoint plus (optionally) the web console."""

    def __init__(self, db_path: Path, coap: Endpoint, http: Endpoint | None) -> None:
        self.db_path, self.coap, self.http = db_path, coap, http
        self.store: ReceiverStore | None = None
        self.bus = EventBus()
        self.hooks: list[AlarmHook] = []
        self._coap_ctx: aiocoap.Context | None = None
        self._web: web.AppRunner | None = None

    @property
    def console_url(self) -> str | None:
        """Where the console listens, once started."""
        return None if self.http is None else f"http://{self.http}/"

    async def start(self) -> None:
        """Open the database, bind CoAP and start the console."""
        self.store = ReceiverStore(self.db_path)
        site = resource.Site()
        site.add_resource(["a"], AlarmResource(self.store, self.bus, self.hooks))
        try:
            _check_udp_free(self.coap)
            self._coap_ctx = await aiocoap.Context.create_server_context(
                site, bind=(self.coap.host, self.coap.port)
            )
        except OSError as exc:
            self.store.close()
            raise NetworkError(
                f"cannot listen for CoAP on {self.coap}: {exc.strerror or exc}"
            ) from exc
        logger.info("receiver listening on coap://%s/a, database %s", self.coap, self.db_path)
        if self.http is not None:
            from host_tools.console.app import create_app

            self._web = web.AppRunner(create_app(self.store, self.bus), access_log=None)
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
        if self._web is not None:
            await self._web.cleanup()
            self._web = None
        if self._coap_ctx is not None:
            await self._coap_ctx.shutdown()
            self._coap_ctx = None
        if self.store is not None:
            self.store.close()
            self.store = None
        logger.info("receiver stopped")

    async def serve_forever(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
