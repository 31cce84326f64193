"""CoAP+OSCORE client for the uplink: confirmable POSTs, acknowledged in the response.

aiocoap retransmits confirmable messages by itself (RFC 7252 exponential back-off) and protects
every request to the receiver with the unit's OSCORE context; the outbox adds retries across
longer outages and restarts.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap.error import Error as CoapError
from aiocoap.numbers.constants import TransportTuning

from firmware.config.site import ReceiverEndpoint
from firmware.errors import PolewatchError, ProtocolError
from firmware.uplink import protocol
from firmware.uplink.security import close_context, load_context

logger = logging.getLogger(__name__)


class UplinkError(PolewatchError, ConnectionError):
    """A message could not be delivered this time (timeout, refusal, bad answer)."""


class ScaledTuning(TransportTuning):  # type: ignore[misc]
    """RFC 7252's transmission parameters, with time scaled for a simulation ``speed`` times
    faster than real time (1.0: the standard's own values)."""

    def __init__(self, speed: float = 1.0, reliable: bool = True) -> None:
        super().__init__()
        self.ACK_TIMEOUT = TransportTuning.ACK_TIMEOUT / speed
        self.reliability = reliable


class UplinkClient:
    """Sends encoded messages to the receiver and returns its acknowledgement.

    One attempt lasts as long as CoAP retransmits (MAX_TRANSMIT_WAIT, 93 s by the standard's
    values): CoAP lets one confirmable exchange at a time run per server (NSTART = 1), so giving
    up sooner would only queue the next message behind one still being retransmitted.
    """

    def __init__(self, endpoint: ReceiverEndpoint, security_dir: Path, speed: float = 1.0) -> None:
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        self.origin = f"coap://{host}:{endpoint.port}"
        self.uri = f"{self.origin}/{endpoint.path}"
        self.security_dir = security_dir
        self._ctx: aiocoap.Context | None = None
        self._security: Any = None
        self._opening = asyncio.Lock()  # the sender and the heartbeats may both start first
        self.tuning = ScaledTuning(speed)
        # aiocoap gives up (ConRetransmitsExceeded) after MAX_TRANSMIT_WAIT; the margin is ours.
        self.timeout_s = float(self.tuning.MAX_TRANSMIT_WAIT) + 2 * float(self.tuning.ACK_TIMEOUT)
        # Non-confirmable requests (heartbeats) are sent once; their answer is awaited this long.
        self.unreliable = ScaledTuning(speed, reliable=False)
        self.unreliable_timeout_s = 4 * float(self.tuning.ACK_TIMEOUT)

    async def _context(self) -> aiocoap.Context:
        async with self._opening:
            if self._ctx is None:
                self._security = load_context(self.security_dir)
                ctx = await aiocoap.Context.create_client_context()
                ctx.client_credentials[f"{self.origin}/*"] = self._security
                self._ctx = ctx
        return self._ctx

    async def send(self, payload: bytes, reliable: bool = True) -> protocol.Ack:
        """POST one message; return the receiver's decoded acknowledgement.

        ``reliable=False`` sends it non-confirmable, once: for heartbeats, which must never hold
        an alarm back (CoAP runs one confirmable exchange at a time per server).
        """
        ctx = await self._context()
        timeout_s = self.timeout_s if reliable else self.unreliable_timeout_s
        request = aiocoap.Message(
            code=aiocoap.POST,
            uri=self.uri,
            payload=payload,  # CBOR, the only format: no Content-Format option (2 bytes)
            transport_tuning=self.tuning if reliable else self.unreliable,
        )
        try:
            async with asyncio.timeout(timeout_s):
                response = await ctx.request(request).response
        except TimeoutError as exc:
            raise UplinkError(f"no answer from {self.uri} within {timeout_s:g} s") from exc
        except CoapError as exc:
            raise UplinkError(f"{self.uri}: {exc}") from exc
        if not response.code.is_successful():
            detail = response.payload.decode("utf-8", "replace")[:200]
            raise UplinkError(f"{self.uri} refused the message: {response.code} {detail}")
        try:
            ack = protocol.decode(response.payload)
        except ProtocolError as exc:
            raise UplinkError(f"{self.uri} answered with a bad acknowledgement: {exc}") from exc
        if not isinstance(ack, protocol.Ack):
            raise UplinkError(f"{self.uri} answered with a {type(ack).__name__}, not an Ack")
        return ack

    async def fetch_config(self, version: str) -> str:
        """GET version ``version`` of this unit's site config from the receiver."""
        ctx = await self._context()
        request = aiocoap.Message(
            code=aiocoap.GET, uri=f"{self.origin}/c?v={version}", transport_tuning=self.tuning
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await ctx.request(request).response
        except TimeoutError as exc:
            raise UplinkError(f"no config from {self.origin} within {self.timeout_s:g} s") from exc
        except CoapError as exc:
            raise UplinkError(f"{self.origin}: {exc}") from exc
        if not response.code.is_successful():
            raise UplinkError(
                f"config v{version}: {response.code} "
                f"{response.payload.decode('utf-8', 'replace')[:200]}"
            )
        try:
            return str(response.payload.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UplinkError(f"config v{version} is not UTF-8 text") from exc

    async def close(self) -> None:
        """Shut the CoAP context down and release the security context."""
        if self._ctx is not None:
            await self._ctx.shutdown()
            self._ctx = None
        if self._security is not None:
            close_context(self._security)
            self._security = None
