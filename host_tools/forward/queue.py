"""The forwarder's durable queue: SQLite in WAL mode, one FIFO per target.

An alarm is committed here, for every target, before the unit gets its acknowledgement, and an
item leaves only when its target has taken it; a target that refuses it for good (DC-09 ``DUH``,
an HTTP 4xx) moves it to the dead letters, where it stays to be looked at. It reuses the unit's
way of opening SQLite (:func:`firmware.storage.open_sqlite`) but not the unit's outbox: that one
orders by priority and allocates message ids, where each target here needs strict arrival order,
a dead-letter state, and a DC-09 sequence number that is kept across restarts.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from firmware.errors import StorageError
from firmware.storage import in_transaction, open_sqlite
from host_tools.forward.dc09 import MAX_SEQUENCE

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id        INTEGER PRIMARY KEY,
    target    TEXT NOT NULL,
    ref       TEXT NOT NULL,
    payload   TEXT NOT NULL,
    created   REAL NOT NULL,
    state     TEXT NOT NULL DEFAULT 'queued',
    attempts  INTEGER NOT NULL DEFAULT 0,
    sequence  INTEGER,
    detail    TEXT
);
CREATE INDEX IF NOT EXISTS items_fifo ON items (target, state, id);
CREATE TABLE IF NOT EXISTS sequences (target TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    alarm  INTEGER NOT NULL,
    phase  TEXT NOT NULL,
    at     REAL NOT NULL,
    PRIMARY KEY (alarm, phase)
);
CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""


@dataclass(frozen=True)
class Item:
    """One thing to deliver to one target."""

    id: int
    target: str
    ref: str
    payload: str
    created: float
    attempts: int
    sequence: int | None


class ForwardQueue:
    """Durable per-target FIFO queues with dead letters. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_sqlite(path, _SCHEMA, "forward queue")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _write(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return in_transaction(self._db, fn, f"forward queue {self.path}")

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"forward queue {self.path}: {exc}") from exc

    def put(
        self,
        entries: Iterable[tuple[str, str, str]],
        now: float,
        seen: tuple[int, str] | None = None,
    ) -> list[int]:
        """Commit (target, ref, payload) entries in one transaction; return their ids.

        ``seen`` (alarm id, phase) is recorded in the same transaction, so that an opening or a
        closing is queued once however often it is offered.
        """
        rows = list(entries)

        def insert() -> list[int]:
            if seen is not None:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO seen (alarm, phase, at) VALUES (?, ?, ?)",
                    (*seen, now),
                )
                if cur.rowcount == 0:
                    return []
            self._db.execute(
                "INSERT INTO marks (name, value) VALUES ('last_put', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                (now,),
            )
            return [
                int(
                    self._db.execute(
                        "INSERT INTO items (target, ref, payload, created) VALUES (?, ?, ?, ?)",
                        (target, ref, payload, now),
                    ).lastrowid
                    or 0
                )
                for target, ref, payload in rows
            ]

        return self._write(insert)

    def was_seen(self, alarm: int, phase: str) -> bool:
        """Whether an alarm's opening or closing was queued already."""
        rows = self._read("SELECT 1 FROM seen WHERE alarm = ? AND phase = ?", (alarm, phase))
        return bool(rows)

    def last_put(self) -> float | None:
        """When (receiver clock) the last entry was queued; None for a new queue."""
        rows = self._read("SELECT value FROM marks WHERE name = 'last_put'")
        return float(rows[0][0]) if rows else None

    def mark(self, now: float) -> None:
        """Record ``now`` as the last time the queue was brought up to date."""
        self._write(
            lambda: self._db.execute(
                "INSERT INTO marks (name, value) VALUES ('last_put', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                (now,),
            )
        )

    def head(self, target: str) -> Item | None:
        """The oldest item waiting for ``target``."""
        rows = self._read(
            "SELECT id, target, ref, payload, created, attempts, sequence FROM items "
            "WHERE target = ? AND state = 'queued' ORDER BY id LIMIT 1",
            (target,),
        )
        return Item(*rows[0]) if rows else None

    def sequence_for(self, item: Item) -> int:
        """The item's DC-09 sequence number: allocated at its first attempt, kept for retries."""
        if item.sequence is not None:
            return item.sequence

        def allocate() -> int:
            row = self._db.execute(
                "INSERT INTO sequences (target, value) VALUES (?, 1) ON CONFLICT (target) DO "
                f"UPDATE SET value = value % {MAX_SEQUENCE} + 1 RETURNING value",
                (item.target,),
            ).fetchone()
            seq = int(row[0])
            self._db.execute("UPDATE items SET sequence = ? WHERE id = ?", (seq, item.id))
            return seq

        return self._write(allocate)

    def failed(self, item_id: int, detail: str) -> None:
        """Count a failed attempt (the item stays at the head of its queue)."""
        self._write(
            lambda: self._db.execute(
                "UPDATE items SET attempts = attempts + 1, detail = ? WHERE id = ?",
                (detail, item_id),
            )
        )

    def delivered(self, item_id: int) -> None:
        """Delete an item its target has taken."""
        self._write(lambda: self._db.execute("DELETE FROM items WHERE id = ?", (item_id,)))

    def dead(self, item_id: int, detail: str) -> None:
        """Move an item its target refuses for good to the dead letters."""
        self._write(
            lambda: self._db.execute(
                "UPDATE items SET state = 'dead', attempts = attempts + 1, detail = ? WHERE id = ?",
                (detail, item_id),
            )
        )

    def depths(self) -> dict[tuple[str, str], int]:
        """How many items wait ('queued') or lie dead ('dead'), per (target, state)."""
        rows = self._read("SELECT target, state, COUNT(*) FROM items GROUP BY target, state")
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def dead_letters(self, target: str | None = None) -> list[tuple[Item, str]]:
        """The dead letters, oldest first, with why each was refused."""
        rows = self._read(
            "SELECT id, target, ref, payload, created, attempts, sequence, detail FROM items "
            "WHERE state = 'dead' AND (? IS NULL OR target = ?) ORDER BY id",
            (target, target),
        )
        return [(Item(*r[:7]), str(r[7])) for r in rows]

    def forget_seen(self, before: float) -> int:
        """Drop the record of openings and closings queued before ``before``."""
        return self._write(
            lambda: self._db.execute("DELETE FROM seen WHERE at < ?", (before,)).rowcount
        )
