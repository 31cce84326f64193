"""The unit's durable outbox: SQLite in WAL mode.

An alarm message is committed here before it is sent and deleted only when the receiver has
acknowledged it, so a crash or power loss at any moment loses nothing. Message and alarm ids come
from counters committed in the same transaction as the message, so they are never reused.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware.storage import in_transaction, open_sqlite

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    msg_id       INTEGER PRIMARY KEY,
    priority     INTEGER NOT NULL,
    created      REAL NOT NULL,
    ref          TEXT NOT NULL,
    payload      BLOB NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, msg_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands_seen (command_id INTEGER PRIMARY KEY, at REAL NOT NULL);
"""


@dataclass(frozen=True)
class Pending:
    """A message waiting for its acknowledgement."""

    msg_id: int
    priority: int
    ref: str
    payload: bytes
    attempts: int
    next_attempt: float


class Outbox:
    """Durable, priority-ordered queue of messages awaiting acknowledgement. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_sqlite(path, _SCHEMA, "outbox")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _next(self, name: str) -> int:
        row = self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (name,),
        ).fetchone()
        return int(row[0])

    def _allocate(self, name: str) -> int:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return self._next(name)

    def next_alarm_id(self) -> int:
        """Allocate an alarm id (committed at once, never reused)."""
        return self._allocate("alarm")

    def next_fault_id(self) -> int:
        """Allocate a fault id (committed at once, never reused)."""
        return self._allocate("fault")

    def next_msg_id(self) -> int:
        """Allocate a message id for a message that is not queued (a heartbeat)."""
        return self._allocate("msg")

    def first_sight_of_command(self, command_id: int) -> bool:
        """Record a command id; False when it was recorded before (already carried out)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO commands_seen (command_id, at) VALUES (?, julianday('now'))",
                (command_id,),
            )
        return cur.rowcount == 1

    def commit(self, priority: int, ref: str, build: Callable[[int], bytes], now: float) -> int:
        """Allocate a message id, build the payload with it, and commit both; return the id."""

        def write() -> tuple[int, bytes]:
            msg_id = self._next("msg")
            payload = build(msg_id)
            self._db.execute(
                "INSERT INTO outbox (msg_id, priority, created, ref, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                (msg_id, priority, now, ref, payload),
            )
            return msg_id, payload

        with self._lock:
            msg_id, payload = in_transaction(self._db, write, f"outbox {self.path}")
        logger.info(
            "%s: committed to outbox as msg %d (priority %d, %d bytes)",
            ref,
            msg_id,
            priority,
            len(payload),
        )
        return msg_id

    def next_due(self, now: float) -> Pending | None:
        """The most urgent message whose retry time has come (fire first, then oldest)."""
        with self._lock:
            row = self._db.execute(
                "SELECT msg_id, priority, ref, payload, attempts, next_attempt FROM outbox "
                "WHERE next_attempt <= ? ORDER BY priority, msg_id LIMIT 1",
                (now,),
            ).fetchone()
        return Pending(*row) if row else None

    def next_attempt_time(self) -> float | None:
        """When the earliest waiting message may be tried again."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) FROM outbox").fetchone()
        return None if row[0] is None else float(row[0])

    def acknowledged(self, msg_id: int) -> None:
        """Delete a message the receiver has committed."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE msg_id = ?", (msg_id,))

    def defer(self, msg_id: int, now: float, initial_s: float, max_s: float) -> float:
        """Schedule a retry with exponential backoff and full jitter; return the delay."""
        with self._lock:
            row = self._db.execute(
                "SELECT attempts FROM outbox WHERE msg_id = ?", (msg_id,)
            ).fetchone()
            attempts = (row[0] if row else 0) + 1
            ceiling = min(max_s, initial_s * 2 ** min(attempts - 1, 30))
            delay = random.uniform(initial_s / 2, ceiling)  # jitter spreads a fleet's retries
            self._db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt = ? WHERE msg_id = ?",
                (attempts, now + delay, msg_id),
            )
        return delay

    def depth(self) -> int:
        """How many messages wait for acknowledgement."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
