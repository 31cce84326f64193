"""What the console's request handlers share: the stores, the clock and the login limiter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from firmware.clock import Clock
from host_tools.console.users import Session, Users
from host_tools.receiver.audit import AuditLog
from host_tools.receiver.bus import EventBus
from host_tools.receiver.store import ReceiverStore
from host_tools.receiver.workflow import Workflow

logger = logging.getLogger(__name__)

LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_S = 300.0


class LoginLimiter:
    """Refuses logins from an address, or for a name, after too many recent failures."""

    def __init__(
        self,
        max_failures: int = LOGIN_MAX_FAILURES,
        window_s: float = LOGIN_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until a login for ``keys`` is accepted again (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            q = self._recent(key, now)
            if len(q) >= self.max_failures:
                wait = max(wait, q[0] + self.window_s - now)
        return wait

    def failed(self, keys: list[str]) -> None:
        """Count a failed login against every key."""
        now = self.clock()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        """Forget the failures of a name that has now logged in."""
        self._failures.pop(key, None)


@dataclass
class Console:
    """The console's shared state."""

    store: ReceiverStore
    bus: EventBus
    users: Users
    audit: AuditLog
    workflow: Workflow
    clock: Clock  # timestamps of operator actions and audit records (the receiver's clock)
    secure_cookies: bool = False  # always mark cookies Secure (the console is behind TLS)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    wall: Callable[[], float] = time.time  # session lifetimes: always real time

    async def record(
        self,
        request: web.Request,
        action: str,
        *,
        target: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        user: str | None = None,
        role: str | None = None,
    ) -> None:
        """Audit one action of the request's user (or of ``user`` where nobody is logged in)."""
        session: Session | None = request.get(SESSION)
        if session is not None:
            user, role = session.user.name, session.user.role
        await asyncio.to_thread(
            self.audit.record,
            self.clock.now(),
            action,
            user=user,
            role=role,
            target=target,
            outcome=outcome,
            detail=detail,
            remote=request.remote,
        )


CONSOLE = web.AppKey("console", Console)
# Where the auth middleware leaves the request's session (a plain name before aiohttp 3.12).
SESSION: Any = getattr(web, "RequestKey", lambda name, _t: name)("session", Session)
