"""Webhooks: each alarm event POSTed as JSON, signed with HMAC-SHA256 over timestamp and body.

Headers: ``X-Polewatch-Timestamp`` (Unix seconds at sending), ``X-Polewatch-Signature``
(``sha256=`` and the lower-case hex HMAC-SHA256, keyed with the shared secret, of the timestamp,
a ``.``, and the raw body), and ``X-Polewatch-Delivery`` (the queue item's id: the same on every
retry, so that the other side can drop a repeat). A 2xx takes the item; 408, 429 and 5xx or no
answer are retried with backoff; any other answer (the endpoint refuses it) makes it a dead
letter.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable

import aiohttp

from host_tools.forward.config import WebhookTarget
from host_tools.forward.queue import ForwardQueue, Item
from host_tools.forward.sender import Outcome, Result, Worker

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Polewatch-Signature"
TIMESTAMP_HEADER = "X-Polewatch-Timestamp"
DELIVERY_HEADER = "X-Polewatch-Delivery"
RETRY_STATUSES = {408, 425, 429}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex of HMAC-SHA256(secret, ts + "." + body)>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """Check a delivery's signature, and that its timestamp is within ``tolerance_s`` of now."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSender(Worker):
    """POSTs one target's queue in order."""

    kind = "webhook"

    def __init__(
        self, target: WebhookTarget, queue: ForwardQueue, wall: Callable[[], float] = time.time
    ) -> None:
        super().__init__(target.name, queue, target)
        self.target = target
        self.wall = wall
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, item: Item) -> Result:
        """POST one item; say what the answer means."""
        body = item.payload.encode()
        stamp = str(int(self.wall()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self.target.secret, stamp, body),
            DELIVERY_HEADER: str(item.id),
        }
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.target.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.post(self.target.url, data=body, headers=headers) as resp:
                status = resp.status
                text = (await resp.text(errors="replace"))[:200]
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result(Outcome.RETRY, f"{self.target.url}: {exc.__class__.__name__}: {exc}")
        if 200 <= status < 300:
            return Result(Outcome.DELIVERED)
        detail = f"{self.target.url}: HTTP {status} {text}".strip()
        if status >= 500 or status in RETRY_STATUSES:
            return Result(Outcome.RETRY, detail)
        return Result(Outcome.DEAD, detail)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
