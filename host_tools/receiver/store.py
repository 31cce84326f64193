"""The receiver's storage: SQLite in WAL mode.

A message is acknowledged only after :meth:`ReceiverStore.ingest` has committed it. Deduplication
is by (unit, message id): a unit that resends after a lost acknowledgement gets a second
acknowledgement, and nothing is stored twice.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from firmware.errors import StorageError
from firmware.storage import open_sqlite
from firmware.uplink import protocol

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    unit_id     TEXT NOT NULL,
    msg_id      INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (unit_id, msg_id)
);
CREATE TABLE IF NOT EXISTS alarms (
    id          INTEGER PRIMARY KEY,
    unit_id     TEXT NOT NULL,
    alarm_id    INTEGER NOT NULL,
    event       TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    zone        TEXT NOT NULL,
    rule        TEXT,
    state       TEXT NOT NULL,
    unit_state  TEXT NOT NULL,
    opened_at   REAL NOT NULL,
    received_at REAL NOT NULL,
    updated_at  REAL NOT NULL,
    closed_at   REAL,
    max_temp_c  REAL,
    box         TEXT,
    actions     TEXT,
    UNIQUE (unit_id, alarm_id)
);
CREATE TABLE IF NOT EXISTS alarm_events (
    id          INTEGER PRIMARY KEY,
    alarm       INTEGER NOT NULL REFERENCES alarms (id),
    msg_id      INTEGER NOT NULL,
    phase       TEXT NOT NULL,
    unit_time   REAL NOT NULL,
    received_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class AlarmRecord:
    """An alarm as the receiver holds it."""

    id: int
    unit_id: str
    alarm_id: int
    event: str
    priority: int
    zone: str
    rule: str | None
    state: str  # operator workflow state: "new" until an operator acts on it
    unit_state: str  # what the unit says: "open" or "closed"
    opened_at: float
    received_at: float
    updated_at: float
    closed_at: float | None
    max_temp_c: float | None
    box: list[int] | None
    actions: list[list[Any]]

    @property
    def ref(self) -> str:
        """``unit/alarm_id``, as in the unit's logs."""
        return f"{self.unit_id}/{self.alarm_id}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the reference added."""
        return {**asdict(self), "ref": self.ref}


@dataclass(frozen=True)
class Ingested:
    """What ingesting a message did."""

    duplicate: bool
    alarm: AlarmRecord | None = None


class ReceiverStore:
    """SQLite storage of messages and alarms. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_sqlite(path, _SCHEMA, "receiver database")
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def ingest(self, msg: protocol.Message, received_at: float) -> Ingested:
        """Commit one message (deduplicated); return whether it was new and the alarm it touched."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO messages (unit_id, msg_id, kind, received_at) "
                    "VALUES (?, ?, ?, ?)",
                    (msg.unit_id, msg.msg_id, int(msg.KIND), received_at),
                )
                if cur.rowcount == 0:
                    self._db.execute("ROLLBACK")
                    return Ingested(duplicate=True)
                alarm_pk = None
                if isinstance(msg, protocol.Alarm):
                    alarm_pk = self._apply_alarm(msg, received_at)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StorageError(f"receiver database {self.path}: {exc}") from exc
            record = self._get(alarm_pk) if alarm_pk is not None else None
        return Ingested(duplicate=False, alarm=record)

    def _apply_alarm(self, msg: protocol.Alarm, received_at: float) -> int:
        unit_time = msg.time_ms / 1000
        closed = msg.phase == protocol.Phase.CLOSE
        row = self._db.execute(
            "SELECT id FROM alarms WHERE unit_id = ? AND alarm_id = ?", (msg.unit_id, msg.alarm_id)
        ).fetchone()
        box = json.dumps(list(msg.box)) if msg.box else None
        temp = msg.max_temp_dc / 10 if msg.max_temp_dc is not None else None
        if row is None:
            # Any phase may arrive first (reordering): the alarm is created from what it carries.
            opened = (msg.started_ms or msg.time_ms) / 1000
            cur = self._db.execute(
                "INSERT INTO alarms (unit_id, alarm_id, event, priority, zone, rule, state, "
                "unit_state, opened_at, received_at, updated_at, closed_at, max_temp_c, box, "
                "actions) VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    msg.unit_id,
                    msg.alarm_id,
                    msg.event.name.lower(),
                    msg.priority,
                    msg.zone,
                    msg.rule,
                    "closed" if closed else "open",
                    opened,
                    received_at,
                    unit_time,
                    unit_time if closed else None,
                    temp,
                    box,
                    json.dumps([list(a) for a in msg.actions]),
                ),
            )
            pk = int(cur.lastrowid or 0)
        else:
            pk = int(row["id"])
            self._db.execute(
                "UPDATE alarms SET updated_at = MAX(updated_at, ?), "
                "max_temp_c = MAX(COALESCE(max_temp_c, ?), COALESCE(?, max_temp_c)), "
                "unit_state = CASE WHEN ? THEN 'closed' ELSE unit_state END, "
                "closed_at = CASE WHEN ? THEN ? ELSE closed_at END, "
                "actions = CASE WHEN ? != '[]' THEN ? ELSE actions END WHERE id = ?",
                (
                    unit_time,
                    temp,
                    temp,
                    closed,
                    closed,
                    unit_time,
                    json.dumps([list(a) for a in msg.actions]),
                    json.dumps([list(a) for a in msg.actions]),
                    pk,
                ),
            )
        self._db.execute(
            "INSERT INTO alarm_events (alarm, msg_id, phase, unit_time, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (pk, msg.msg_id, msg.phase.name.lower(), unit_time, received_at),
        )
        return pk

    def _get(self, pk: int) -> AlarmRecord:
        row = self._db.execute("SELECT * FROM alarms WHERE id = ?", (pk,)).fetchone()
        return _record(row)

    def alarm(self, pk: int) -> AlarmRecord | None:
        """One alarm by its receiver id."""
        with self._lock:
            row = self._db.execute("SELECT * FROM alarms WHERE id = ?", (pk,)).fetchone()
        return _record(row) if row else None

    def alarms(self, limit: int = 200) -> list[AlarmRecord]:
        """Alarms for the queue: by priority, then oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM alarms ORDER BY priority, received_at, id LIMIT ?", (limit,)
            ).fetchall()
        return [_record(r) for r in rows]

    def timeline(self, pk: int) -> list[dict[str, Any]]:
        """The messages an alarm was built from, in order of receipt."""
        with self._lock:
            rows = self._db.execute(
                "SELECT msg_id, phase, unit_time, received_at FROM alarm_events "
                "WHERE alarm = ? ORDER BY id",
                (pk,),
            ).fetchall()
        return [dict(r) for r in rows]

    def message_count(self) -> int:
        """How many distinct messages were stored."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def _record(row: sqlite3.Row) -> AlarmRecord:
    data = dict(row)
    data["box"] = json.loads(data["box"]) if data["box"] else None
    data["actions"] = json.loads(data["actions"] or "[]")
    return AlarmRecord(**data)
