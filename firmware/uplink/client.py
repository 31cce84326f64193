"""CoAP client for the uplink: confirmable POSTs of protocol messages, acknowledged in the response.

aiocoap retransmits confirmable messages by itself (RFC 7252 exponential back-off); the outbox adds
retries across longer outages and restarts.
"""

from __future__ import annotations

import asyncio
import logging

import aiocoap
from aiocoap.error import Error as CoapError

from firmware.config.site import ReceiverEndpoint
from firmware.errors import PolewatchError, ProtocolError
from firmware.uplink import protocol

logger = logging.getLogger(__name__)


class UplinkError(PolewatchError, ConnectionError):
    """A message could not be delivered this time (timeout, refusal, bad answer)."""


class UplinkClient:
    """Sends encoded messages to the receiver and returns its acknowledgement."""

    def __init__(self, endpoint: ReceiverEndpoint, timeout_s: float) -> None:
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        self.uri = f"coap://{host}:{endpoint.port}/{endpoint.path}"
        self.timeout_s = timeout_s
        self._ctx: aiocoap.Context | None = None

    async def _context(self) -> aiocoap.Context:
        if self._ctx is None:
            self._ctx = await aiocoap.Context.create_client_context()
        return self._ctx

    async def send(self, payload: bytes) -> protocol.Ack:
        """POST one message; return the receiver's decoded acknowledgement."""
        ctx = await self._context()
        request = aiocoap.Message(
            code=aiocoap.POST,
            uri=self.uri,
            payload=payload,
            content_format=protocol.CONTENT_FORMAT_CBOR,
        )
        try:
            response = await asyncio.wait_for(ctx.request(request).response, self.timeout_s)
        except TimeoutError as exc:
            raise UplinkError(f"no answer from {self.uri} within {self.timeout_s:g} s") from exc
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

    async def close(self) -> None:
        """Shut the CoAP context down."""
        if self._ctx is not None:
            await self._ctx.shutdown()
            self._ctx = None
