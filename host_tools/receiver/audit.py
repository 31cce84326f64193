"""The audit log: every action a console user takes (or is refused), kept in the receiver database.

Records are only ever appended; retention (deleting old ones) is the only other write.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from host_tools.receiver.database import Connection
from host_tools.receiver.store import ReceiverStore

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    "user"      TEXT,
    role        TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    remote      TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"""


@dataclass(frozen=True)
class AuditRecord:
    """One audited action."""

    id: int
    at: float
    user: str | None
    role: str | None
    action: str  # e.g. "login", "alarm.acknowledge", "unit.command", "user.add"
    target: str | None  # what it acted on: an alarm ref, a unit, a user name
    outcome: str  # "ok", "denied", "failed", "invalid"
    detail: dict[str, Any] | None
    remote: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class AuditLog:
    """Appends to and reads the audit table of a receiver store."""

    def __init__(self, store: ReceiverStore) -> None:
        self.store = store
        store.migrate(_SCHEMA)

    def record(
        self,
        at: float,
        action: str,
        *,
        user: str | None = None,
        role: str | None = None,
        target: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        remote: str | None = None,
    ) -> int:
        """Append one record; return its id."""

        def insert(db: Connection) -> int:
            cur = db.execute(
                'INSERT INTO audit (at, "user", role, action, target, outcome, detail, remote) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    at,
                    user,
                    role,
                    action,
                    target,
                    outcome,
                    json.dumps(detail, separators=(",", ":")) if detail else None,
                    remote,
                ),
            )
            return int(cur.fetchone()[0])

        pk = self.store.write(insert)
        logger.info(
            "audit #%d: %s %s %s%s",
            pk,
            user or "-",
            action,
            outcome,
            f" {target}" if target else "",
        )
        return pk

    def records(
        self,
        limit: int = 200,
        before: int | None = None,
        user: str | None = None,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """Newest first; ``before`` pages back from a record id."""

        def query(db: Connection) -> list[Any]:
            return db.execute(
                'SELECT * FROM audit WHERE (? IS NULL OR id < ?) AND (? IS NULL OR "user" = ?) '
                "AND (? IS NULL OR action LIKE ? || '%') ORDER BY id DESC LIMIT ?",
                (before, before, user, user, action, action, limit),
            ).fetchall()

        return [_audit(r) for r in self.store.read(query)]

    def delete_before(self, when: float) -> int:
        """Retention: delete records older than ``when``; return how many went."""
        return self.store.write(
            lambda db: db.execute("DELETE FROM audit WHERE at < ?", (when,)).rowcount
        )


def _audit(row: Any) -> AuditRecord:
    data = dict(row)
    data["detail"] = json.loads(data["detail"]) if data["detail"] else None
    return AuditRecord(**data)
