"""The receiver's storage: SQLite in WAL mode for one receiver, PostgreSQL for several.

A message is acknowledged only after :meth:`ReceiverStore.ingest` has committed it. Deduplication
is by (unit, message id): a unit that resends after a lost acknowledgement gets a second
acknowledgement, and nothing is stored twice. The store also keeps each unit's supervision state
and the operator commands waiting for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from firmware.uplink import protocol
from host_tools.receiver.database import Connection, Database, SqliteDatabase, open_database

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

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
    source      TEXT NOT NULL DEFAULT 'alarm',
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
    suppressed  TEXT,
    detail      TEXT,
    test        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (unit_id, source, alarm_id)
);
CREATE TABLE IF NOT EXISTS alarm_events (
    id          INTEGER PRIMARY KEY,
    alarm       INTEGER NOT NULL REFERENCES alarms (id),
    msg_id      INTEGER NOT NULL,
    phase       TEXT NOT NULL,
    unit_time   REAL NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS units (
    unit_id     TEXT PRIMARY KEY,
    last_heard  REAL NOT NULL,
    next_due    REAL,
    reporting_s REAL NOT NULL,
    online      INTEGER NOT NULL DEFAULT 1,
    offline_n   INTEGER NOT NULL DEFAULT 0,
    health      TEXT
);
CREATE TABLE IF NOT EXISTS commands (
    id          INTEGER PRIMARY KEY,
    unit_id     TEXT NOT NULL,
    op          INTEGER NOT NULL,
    arg         TEXT,
    created     REAL NOT NULL,
    expires     REAL NOT NULL,
    state       TEXT NOT NULL,
    sent_count  INTEGER NOT NULL DEFAULT 0,
    detail      TEXT,
    done_at     REAL
);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (unit_id, state);
CREATE TABLE IF NOT EXISTS unit_configs (
    unit_id     TEXT NOT NULL,
    version     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    created     REAL NOT NULL,
    PRIMARY KEY (unit_id, version)
);
"""

DEFAULT_REPORTING_S = 180.0
# Alarm-queue entries raised from other sources than a unit's alarm, and their reference letter.
SOURCE_PREFIX = {"alarm": "", "fault": "F", "offline": "L"}
FAULT_PRIORITY = 3
OFFLINE_PRIORITY = 2
MAX_COMMANDS_PER_ACK = 4


@dataclass(frozen=True)
class AlarmRecord:
    """An entry of the alarm queue as the receiver holds it."""

    id: int
    unit_id: str
    source: str  # "alarm" from a unit's alarm, "fault" from its fault report, "offline" from us
    alarm_id: int
    event: str
    priority: int
    zone: str
    rule: str | None
    state: str  # operator workflow state: "new" until an operator acts on it
    unit_state: str  # "open" or "closed", as the unit (or supervision) says
    opened_at: float
    received_at: float
    updated_at: float
    closed_at: float | None
    max_temp_c: float | None
    box: list[int] | None
    actions: list[list[Any]]
    suppressed: list[list[Any]]
    detail: str | None
    test: bool

    @property
    def ref(self) -> str:
        """``unit/alarm_id`` as in the unit's logs (``unit/F3`` for faults, ``unit/L1`` offline)."""
        return f"{self.unit_id}/{SOURCE_PREFIX[self.source]}{self.alarm_id}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the reference added."""
        return {**asdict(self), "ref": self.ref}


@dataclass(frozen=True)
class CommandRecord:
    """An operator command and how far it got."""

    id: int
    unit_id: str
    op: str
    arg: str | None
    created: float
    expires: float
    state: str  # queued, sent, done, rejected, failed, expired
    sent_count: int
    detail: str | None
    done_at: float | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Ingested:
    """What ingesting a message did."""

    duplicate: bool
    alarm: AlarmRecord | None = None  # the queue entry it opened, updated or closed
    restored: AlarmRecord | None = None  # the unit had been offline and is back
    command: CommandRecord | None = None  # the command whose result it carried
    commands: tuple[protocol.Command, ...] = ()  # pending commands to ride on the acknowledgement


class ReceiverStore:
    """Storage of messages, alarms, units and commands. Thread-safe.

    ``location`` is an SQLite file's path or a ``postgresql://`` URL (see
    :func:`~host_tools.receiver.database.open_database`).
    """

    def __init__(self, location: Path | str) -> None:
        self.location = location
        self.db: Database = open_database(location)
        try:
            self.db.migrate(_SCHEMA)
        except BaseException:
            self.db.close()
            raise

    @property
    def where(self) -> str:
        """The database file, or its URL without the password (what ``--db`` takes)."""
        return self.db.where

    @property
    def directory(self) -> Path | None:
        """The SQLite file's directory (where its companion files go); None for PostgreSQL."""
        return self.db.path.parent if isinstance(self.db, SqliteDatabase) else None

    @property
    def label(self) -> str:
        """Where the database is, for messages (no password)."""
        return self.db.label

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # --- for modules that keep their own tables in this database (workflow, users, audit) ---

    def migrate(self, schema: str) -> None:
        """Apply a module's ``CREATE TABLE IF NOT EXISTS`` script."""
        self.db.migrate(schema)

    def write(self, fn: Callable[[Connection], _T]) -> _T:
        """Run ``fn(connection)`` in one transaction; roll back on any error."""
        return self.db.write(fn)

    def read(self, fn: Callable[[Connection], _T]) -> _T:
        """Run ``fn(connection)`` for reading (rows by index or column name)."""
        return self.db.read(fn)

    # --- ingest --------------------------------------------------------------------------------

    def ingest(self, msg: protocol.Message, received_at: float) -> Ingested:
        """Commit one message from ``msg.unit_id`` (deduplicated); say what it changed.

        Commands waiting for the unit are taken in the same transaction, for its acknowledgement.
        """

        def both(c: Connection) -> Ingested:
            result = self._ingest(c, msg, received_at)
            commands = self._take(c, msg.unit_id, received_at, limit=MAX_COMMANDS_PER_ACK)
            return replace(result, commands=tuple(commands)) if commands else result

        return self.db.write(both)

    def _ingest(self, c: Connection, msg: protocol.Message, received_at: float) -> Ingested:
        restored = self._heard(c, msg, received_at)
        if isinstance(msg, protocol.Heartbeat):
            return Ingested(duplicate=False, restored=restored)  # not stored: the next one comes
        cur = c.execute(
            "INSERT INTO messages (unit_id, msg_id, kind, received_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (msg.unit_id, msg.msg_id, int(msg.KIND), received_at),
        )
        if cur.rowcount == 0:
            return Ingested(duplicate=True, restored=restored)
        alarm = command = None
        if isinstance(msg, protocol.Alarm):
            alarm = self._apply_alarm(c, msg, received_at)
        elif isinstance(msg, protocol.Fault | protocol.Restore):
            alarm = self._apply_fault(c, msg, received_at)
        elif isinstance(msg, protocol.CommandResult):
            command = self._apply_result(c, msg, received_at)
        return Ingested(duplicate=False, alarm=alarm, restored=restored, command=command)

    def _heard(self, c: Connection, msg: protocol.Message, now: float) -> AlarmRecord | None:
        """Any message is a sign of life; a heartbeat also says when the next is due."""
        unit = msg.unit_id
        row = c.execute("SELECT * FROM units WHERE unit_id = ?", (unit,)).fetchone()
        reporting = float(row["reporting_s"]) if row else DEFAULT_REPORTING_S
        next_due = row["next_due"] if row else None
        health = row["health"] if row else None
        if isinstance(msg, protocol.Heartbeat):
            reporting = float(msg.reporting_s or reporting)
            next_due = now + msg.next_due_s
            fields = ("queued", "rssi_dbm", "drift_s", "mode", "faults", "modem_resets")
            report = {k: getattr(msg, k) for k in fields}
            report["modem"] = msg.modem.name.lower().replace("_", "-")  # registered, no-sim, ...
            health = json.dumps(report)
        c.execute(
            "INSERT INTO units (unit_id, last_heard, next_due, reporting_s, online, health) "
            "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (unit_id) DO UPDATE SET "
            "last_heard = excluded.last_heard, next_due = excluded.next_due, "
            "reporting_s = excluded.reporting_s, online = 1, health = excluded.health",
            (unit, now, next_due, reporting, health),
        )
        if row is not None and not row["online"]:
            return self._close_queue_entry(c, unit, "offline", int(row["offline_n"]), now)
        return None

    def _apply_alarm(self, c: Connection, msg: protocol.Alarm, received_at: float) -> AlarmRecord:
        unit_time = float(msg.time_s)
        closed = msg.phase == protocol.Phase.CLOSE
        row = c.execute(
            "SELECT id FROM alarms WHERE unit_id = ? AND source = 'alarm' AND alarm_id = ?",
            (msg.unit_id, msg.alarm_id),
        ).fetchone()
        box = json.dumps(list(msg.box)) if msg.box else None
        temp = msg.max_temp_dc / 10 if msg.max_temp_dc is not None else None
        actions = json.dumps([list(a) for a in msg.actions]) if msg.actions else None
        suppressed = json.dumps([list(a) for a in msg.suppressed]) if msg.suppressed else None
        if row is None:
            # Any phase may arrive first (reordering): the alarm is built from what it carries.
            opened = float(msg.started_s or msg.time_s)
            pk = int(
                c.execute(
                    "INSERT INTO alarms (unit_id, source, alarm_id, event, priority, zone, rule, "
                    "state, unit_state, opened_at, received_at, updated_at, closed_at, "
                    "max_temp_c, box, actions, suppressed, test) "
                    "VALUES (?, 'alarm', ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING id",
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
                        actions or "[]",
                        suppressed or "[]",
                        int(msg.test),
                    ),
                ).fetchone()[0]
            )
        else:
            pk = int(row["id"])
            greatest = self.db.greatest
            c.execute(
                f"UPDATE alarms SET updated_at = {greatest('updated_at', '?')}, "
                "max_temp_c = "
                f"{greatest('COALESCE(max_temp_c, ?)', 'COALESCE(?, max_temp_c)')}, "
                "box = COALESCE(?, box), "
                "unit_state = CASE WHEN ? THEN 'closed' ELSE unit_state END, "
                "closed_at = CASE WHEN ? THEN ? ELSE closed_at END, "
                "actions = COALESCE(?, actions), suppressed = COALESCE(?, suppressed) "
                "WHERE id = ?",
                (unit_time, temp, temp, box, closed, closed, unit_time, actions, suppressed, pk),
            )
        c.execute(
            "INSERT INTO alarm_events (alarm, msg_id, phase, unit_time, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (pk, msg.msg_id, msg.phase.name.lower(), unit_time, received_at),
        )
        return self._get(c, pk)

    def _apply_fault(
        self, c: Connection, msg: protocol.Fault | protocol.Restore, received_at: float
    ) -> AlarmRecord:
        unit_time = float(msg.time_s)
        if isinstance(msg, protocol.Restore):
            return self._close_queue_entry(
                c,
                msg.unit_id,
                "fault",
                msg.fault_id,
                unit_time,
                event=f"fault:{msg.code.name.lower()}",
            )
        detail = " ".join(x for x in (msg.subject, msg.detail) if x) or None
        cur = c.execute(
            "INSERT INTO alarms (unit_id, source, alarm_id, event, priority, zone, state, "
            "unit_state, opened_at, received_at, updated_at, actions, suppressed, detail) "
            "VALUES (?, 'fault', ?, ?, ?, '-', 'new', 'open', ?, ?, ?, '[]', '[]', ?) "
            "ON CONFLICT (unit_id, source, alarm_id) DO UPDATE SET detail = excluded.detail "
            "RETURNING id",
            (
                msg.unit_id,
                msg.fault_id,
                f"fault:{msg.code.name.lower()}",
                FAULT_PRIORITY,
                unit_time,
                received_at,
                unit_time,
                detail,
            ),
        )
        return self._get(c, int(cur.fetchone()[0]))

    def _close_queue_entry(
        self,
        c: Connection,
        unit: str,
        source: str,
        number: int,
        when: float,
        event: str = "offline",
    ) -> AlarmRecord:
        cur = c.execute(
            "UPDATE alarms SET unit_state = 'closed', closed_at = ?, updated_at = ? "
            "WHERE unit_id = ? AND source = ? AND alarm_id = ? RETURNING id",
            (when, when, unit, source, number),
        ).fetchone()
        if cur is None:  # a restore whose fault never arrived (or was deleted): record both
            cur = c.execute(
                "INSERT INTO alarms (unit_id, source, alarm_id, event, priority, zone, state, "
                "unit_state, opened_at, received_at, updated_at, closed_at, actions, "
                "suppressed) VALUES (?, ?, ?, ?, ?, '-', 'new', 'closed', ?, ?, ?, ?, '[]', "
                "'[]') RETURNING id",
                (unit, source, number, event, FAULT_PRIORITY, when, when, when, when),
            ).fetchone()
        return self._get(c, int(cur[0]))

    def _apply_result(
        self, c: Connection, msg: protocol.CommandResult, now: float
    ) -> CommandRecord | None:
        state = msg.status.name.lower()
        row = c.execute(
            "UPDATE commands SET state = ?, detail = ?, done_at = ? "
            "WHERE id = ? AND unit_id = ? RETURNING id",
            (state, msg.detail, now, msg.command_id, msg.unit_id),
        ).fetchone()
        if row is None:
            logger.warning("%s: result for unknown command %d", msg.unit_id, msg.command_id)
            return None
        return _command_by_id(c, int(row[0]))

    # --- supervision ---------------------------------------------------------------------------

    def overdue(self, now: float) -> list[AlarmRecord]:
        """Mark units silent past their reporting time offline; return the queue entries raised.

        With several receivers each one runs this; the database lets one raise each entry.
        """

        def sweep(c: Connection) -> list[AlarmRecord]:
            rows = c.execute(
                "SELECT unit_id, last_heard, offline_n FROM units "
                "WHERE online = 1 AND last_heard + reporting_s < ?",
                (now,),
            ).fetchall()
            raised = []
            for row in rows:
                n = int(row["offline_n"]) + 1
                c.execute(
                    "UPDATE units SET online = 0, offline_n = ? WHERE unit_id = ?",
                    (n, row["unit_id"]),
                )
                cur = c.execute(
                    "INSERT INTO alarms (unit_id, source, alarm_id, event, priority, zone, "
                    "state, unit_state, opened_at, received_at, updated_at, actions, "
                    "suppressed, detail) VALUES (?, 'offline', ?, 'offline', ?, '-', 'new', "
                    "'open', ?, ?, ?, '[]', '[]', ?) RETURNING id",
                    (
                        row["unit_id"],
                        n,
                        OFFLINE_PRIORITY,
                        now,
                        now,
                        now,
                        f"silent since {row['last_heard']:.0f}",
                    ),
                )
                raised.append(self._get(c, int(cur.fetchone()[0])))
            return raised

        return self.db.write(sweep)

    def units(self) -> list[dict[str, Any]]:
        """Every unit's supervision state and last reported health."""
        rows = self.db.read(lambda c: c.execute("SELECT * FROM units ORDER BY unit_id").fetchall())
        return [
            {
                **dict(r),
                "online": bool(r["online"]),
                "health": json.loads(r["health"]) if r["health"] else None,
            }
            for r in rows
        ]

    # --- commands ------------------------------------------------------------------------------

    def queue_command(
        self, unit_id: str, op: protocol.CommandOp, arg: str | None, now: float, ttl_s: float
    ) -> CommandRecord:
        """Queue an operator command for a unit's next uplink."""

        def insert(c: Connection) -> CommandRecord:
            cur = c.execute(
                "INSERT INTO commands (unit_id, op, arg, created, expires, state) "
                "VALUES (?, ?, ?, ?, ?, 'queued') RETURNING id",
                (unit_id, int(op), arg, now, now + ttl_s),
            )
            return _command_by_id(c, int(cur.fetchone()[0]))

        return self.db.write(insert)

    def _take(self, c: Connection, unit_id: str, now: float, limit: int) -> list[protocol.Command]:
        """Pending commands to ride on this unit's acknowledgement; expired ones are closed.

        A command stays pending until its result arrives, so a lost acknowledgement only delays
        it; the unit recognises a command it already carried out by its id.
        """
        c.execute(
            "UPDATE commands SET state = 'expired', done_at = ? "
            "WHERE unit_id = ? AND state IN ('queued', 'sent') AND expires <= ?",
            (now, unit_id, now),
        )
        rows = c.execute(
            "SELECT id, op, arg, expires FROM commands WHERE unit_id = ? AND state IN "
            "('queued', 'sent') ORDER BY id LIMIT ?",
            (unit_id, limit),
        ).fetchall()
        for r in rows:
            c.execute(
                "UPDATE commands SET state = 'sent', sent_count = sent_count + 1 WHERE id = ?",
                (r["id"],),
            )
        return [
            protocol.Command(
                int(r["id"]), protocol.CommandOp(r["op"]), int(r["expires"] - now), r["arg"]
            )
            for r in rows
        ]

    def commands(self, unit_id: str | None = None, limit: int = 100) -> list[CommandRecord]:
        """Recent commands, newest first."""
        rows = self.db.read(
            lambda c: c.execute(
                "SELECT * FROM commands WHERE ? IS NULL OR unit_id = ? ORDER BY id DESC LIMIT ?",
                (unit_id, unit_id, limit),
            ).fetchall()
        )
        return [_command(r) for r in rows]

    def put_config(self, unit_id: str, text: str, now: float) -> int:
        """Store a new site config version for a unit; return its version number."""

        def insert(c: Connection) -> int:
            row = c.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM unit_configs WHERE unit_id = ?",
                (unit_id,),
            ).fetchone()
            version = int(row[0])
            c.execute(
                "INSERT INTO unit_configs (unit_id, version, text, created) VALUES (?, ?, ?, ?)",
                (unit_id, version, text, now),
            )
            return version

        return self.db.write(insert)

    def config(self, unit_id: str, version: int) -> str | None:
        """A stored site config version of a unit."""
        row = self.db.read(
            lambda c: c.execute(
                "SELECT text FROM unit_configs WHERE unit_id = ? AND version = ?",
                (unit_id, version),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    # --- reading -------------------------------------------------------------------------------

    def _get(self, c: Connection, pk: int) -> AlarmRecord:
        return _record(c.execute("SELECT * FROM alarms WHERE id = ?", (pk,)).fetchone())

    def alarm(self, pk: int) -> AlarmRecord | None:
        """One queue entry by its receiver id."""
        row = self.db.read(
            lambda c: c.execute("SELECT * FROM alarms WHERE id = ?", (pk,)).fetchone()
        )
        return _record(row) if row else None

    def alarms(self, limit: int = 200) -> list[AlarmRecord]:
        """The alarm queue: by priority, then oldest first."""
        rows = self.db.read(
            lambda c: c.execute(
                "SELECT * FROM alarms ORDER BY priority, received_at, id LIMIT ?", (limit,)
            ).fetchall()
        )
        return [_record(r) for r in rows]

    def timeline(self, pk: int) -> list[dict[str, Any]]:
        """The messages an alarm was built from, in order of receipt."""
        rows = self.db.read(
            lambda c: c.execute(
                "SELECT msg_id, phase, unit_time, received_at FROM alarm_events "
                "WHERE alarm = ? ORDER BY id",
                (pk,),
            ).fetchall()
        )
        return [dict(r) for r in rows]

    def message_count(self, unit_id: str | None = None) -> int:
        """How many distinct (non-heartbeat) messages were stored."""
        row = self.db.read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM messages WHERE ? IS NULL OR unit_id = ?", (unit_id, unit_id)
            ).fetchone()
        )
        return int(row[0])

    # --- forwarding, metrics and retention -----------------------------------------------------

    def alarms_since(self, since: float) -> list[AlarmRecord]:
        """Queue entries received, updated or closed at or after ``since``, oldest first."""
        rows = self.db.read(
            lambda c: c.execute(
                "SELECT * FROM alarms WHERE received_at >= ? OR updated_at >= ? "
                "OR closed_at >= ? ORDER BY id",
                (since, since, since),
            ).fetchall()
        )
        return [_record(r) for r in rows]

    def alarm_counts(self) -> dict[tuple[str, str], int]:
        """How many queue entries there are per (workflow state, unit state)."""
        rows = self.db.read(
            lambda c: c.execute(
                "SELECT state, unit_state, COUNT(*) FROM alarms GROUP BY state, unit_state"
            ).fetchall()
        )
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def delete_older_than(
        self, cutoff: float, units: list[str] | None = None, exclude: list[str] | None = None
    ) -> dict[str, int]:
        """Delete closed alarms (with the rows of every table that references them), message
        ids and finished commands whose last activity is before ``cutoff``, of ``units`` (None:
        all) less ``exclude``.

        Returns how many rows went from each table. Open alarms are kept however old.
        """
        clauses, args = [], []
        if units is not None:
            clauses.append(f"unit_id IN ({','.join('?' * len(units))})" if units else "FALSE")
            args.extend(units)
        if exclude:
            clauses.append(f"unit_id NOT IN ({','.join('?' * len(exclude))})")
            args.extend(exclude)
        which = " AND ".join(clauses) or "TRUE"
        last = self.db.greatest("received_at", "updated_at", "COALESCE(closed_at, 0)")
        # Every table whose rows belong to an alarm (its timeline, the operators' workflow and
        # actions on it) loses them first.
        dependants = self.db.references("alarms")

        def delete(c: Connection) -> dict[str, int]:
            old = f"SELECT id FROM alarms WHERE {which} AND unit_state = 'closed' AND {last} < ?"
            counts: dict[str, int] = {"alarm_events": 0}
            for table, column in dependants:
                n = c.execute(
                    f'DELETE FROM "{table}" WHERE "{column}" IN ({old})', (*args, cutoff)
                ).rowcount
                counts[table] = counts.get(table, 0) + n
            counts["alarms"] = c.execute(
                f"DELETE FROM alarms WHERE id IN ({old})", (*args, cutoff)
            ).rowcount
            counts |= {
                "messages": c.execute(
                    f"DELETE FROM messages WHERE {which} AND received_at < ?", (*args, cutoff)
                ).rowcount,
                "commands": c.execute(
                    f"DELETE FROM commands WHERE {which} AND state NOT IN ('queued', 'sent') "
                    "AND COALESCE(done_at, expires) < ?",
                    (*args, cutoff),
                ).rowcount,
            }
            return counts

        return self.db.write(delete)


def _record(row: Any) -> AlarmRecord:
    data = dict(row)
    data["box"] = json.loads(data["box"]) if data["box"] else None
    data["actions"] = json.loads(data["actions"] or "[]")
    data["suppressed"] = json.loads(data["suppressed"] or "[]")
    data["test"] = bool(data["test"])
    return AlarmRecord(**data)


def _command(row: Any) -> CommandRecord:
    data = dict(row)
    data["op"] = protocol.CommandOp(data["op"]).name.lower()
    return CommandRecord(**data)


def _command_by_id(c: Connection, pk: int) -> CommandRecord:
    return _command(c.execute("SELECT * FROM commands WHERE id = ?", (pk,)).fetchone())
