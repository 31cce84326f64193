"""The operator workflow of an alarm-queue entry, as alarm receiving centres work alarms.

States: ``new`` -> ``acknowledged`` (by whom) -> ``on_hold`` <-> back -> ``dispatched`` (to a
guard, the police, the fire service; several may be sent) -> ``resolved`` (outcome real, false or
test). Resolving needs the alarm kind's checklist done. The operator who first opens or acts on
an alarm owns it; anyone else must say so (``take_over``) to act on it, and then owns it.

The queue entry's ``state`` column (in ``alarms``) carries the workflow state, so the receiver's
own events show it; the rest lives in this module's tables. Every step is timestamped with the
caller's clock, which is what the response-time reports are computed from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from firmware.errors import PolewatchError
from host_tools.receiver.database import Connection
from host_tools.receiver.store import AlarmRecord, ReceiverStore, _record

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_workflow (
    alarm           INTEGER PRIMARY KEY REFERENCES alarms (id),
    owner           TEXT,
    owned_at        REAL,
    acknowledged_by TEXT,
    acknowledged_at REAL,
    held_from       TEXT,
    dispatched_to   TEXT NOT NULL DEFAULT '[]',
    dispatched_by   TEXT,
    dispatched_at   REAL,
    resolved_by     TEXT,
    resolved_at     REAL,
    outcome         TEXT,
    checklist       TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS alarm_actions (
    id          INTEGER PRIMARY KEY,
    alarm       INTEGER NOT NULL REFERENCES alarms (id),
    at          REAL NOT NULL,
    "user"      TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS alarm_actions_alarm ON alarm_actions (alarm);
"""

STATES = ("new", "acknowledged", "on_hold", "dispatched", "resolved")
DISPATCH_TO = ("guard", "police", "fire_service")
OUTCOMES = ("real", "false", "test")
ACTIONS = (
    "open",
    "acknowledge",
    "hold",
    "resume",
    "dispatch",
    "check",
    "resolve",
    "note",
)
# Where each action may start from. "open" and "note" are allowed in every state.
_FROM: dict[str, tuple[str, ...]] = {
    "acknowledge": ("new",),
    "hold": ("acknowledged", "dispatched"),
    "resume": ("on_hold",),
    "dispatch": ("acknowledged", "on_hold", "dispatched"),
    "check": ("acknowledged", "on_hold", "dispatched"),
    "resolve": ("acknowledged", "on_hold", "dispatched"),
}
_WF_COLUMNS = (
    "owner",
    "owned_at",
    "acknowledged_by",
    "acknowledged_at",
    "held_from",
    "dispatched_to",
    "dispatched_by",
    "dispatched_at",
    "resolved_by",
    "resolved_at",
    "outcome",
    "checklist",
)
DEFAULT_KIND = "default"


class WorkflowConflict(PolewatchError, RuntimeError):
    """An action that the alarm's state or owner does not allow now (HTTP 409)."""

    def __init__(self, message: str, code: str, owner: str | None = None) -> None:
        super().__init__(message)
        self.code = code  # "state", "owned", "checklist"
        self.owner = owner


@dataclass(frozen=True)
class Step:
    """What one call to :meth:`Workflow.act` asks for."""

    action: str
    to: str | None = None  # dispatch
    outcome: str | None = None  # resolve
    item: int | None = None  # check: the checklist item's index
    done: bool = True  # check: ticked or unticked
    text: str | None = None  # note, hold reason, resolve remark
    take_over: bool = False  # act although another operator owns the alarm


def kind_of(record: AlarmRecord) -> str:
    """The checklist kind of a queue entry: the event, or ``fault`` / ``offline``."""
    return record.event if record.source == "alarm" else record.source


class Workflow:
    """Carries out operator actions on queue entries and reads the queue with their state."""

    def __init__(self, store: ReceiverStore, checklists: Mapping[str, Sequence[str]]) -> None:
        self.store = store
        self.checklists = {k: list(v) for k, v in checklists.items()}
        store.migrate(_SCHEMA)

    def checklist_for(self, record: AlarmRecord) -> list[str]:
        """The checklist items (standard operating procedure) for this entry's kind."""
        return self.checklists.get(kind_of(record), self.checklists.get(DEFAULT_KIND, []))

    # --- reading -------------------------------------------------------------------------------

    def queue(self, resolved: bool = False, limit: int = 500) -> list[dict[str, Any]]:
        """Unresolved entries by priority then age; or (``resolved``) the latest resolved ones."""
        order = "w.resolved_at DESC, a.id DESC" if resolved else "a.priority, a.received_at, a.id"
        where = "a.state = 'resolved'" if resolved else "a.state != 'resolved'"

        def query(db: Connection) -> list[Any]:
            return db.execute(
                "SELECT a.*, " + ", ".join(f"w.{c}" for c in _WF_COLUMNS) + " FROM alarms a "
                f"LEFT JOIN alarm_workflow w ON w.alarm = a.id WHERE {where} "
                f"ORDER BY {order} LIMIT ?",
                (limit,),
            ).fetchall()

        return [self._json_of_joined(r) for r in self.store.read(query)]

    def alarm_json(self, pk: int) -> dict[str, Any] | None:
        """One entry as the queue lists it (with its workflow summary)."""

        def query(db: Connection) -> Any:
            row: Any = db.execute(
                "SELECT a.*, " + ", ".join(f"w.{c}" for c in _WF_COLUMNS) + " FROM alarms a "
                "LEFT JOIN alarm_workflow w ON w.alarm = a.id WHERE a.id = ?",
                (pk,),
            ).fetchone()
            return row

        row = self.store.read(query)
        return None if row is None else self._json_of_joined(row)

    def detail(self, pk: int) -> dict[str, Any] | None:
        """An entry with its unit timeline, checklist and the operators' actions."""
        data = self.alarm_json(pk)
        if data is None:
            return None

        def query(db: Connection) -> list[Any]:
            return db.execute(
                'SELECT at, "user", action, detail FROM alarm_actions WHERE alarm = ? ORDER BY id',
                (pk,),
            ).fetchall()

        data["timeline"] = self.store.timeline(pk)
        data["operator_actions"] = [
            {**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None}
            for r in self.store.read(query)
        ]
        return data

    def _json_of_joined(self, row: Any) -> dict[str, Any]:
        data = dict(row)
        wf = {c: data.pop(c) for c in _WF_COLUMNS}
        record = _record(data)
        out = record.to_json()
        checklist = json.loads(wf["checklist"]) if wf["checklist"] else []
        if not checklist:  # never acted on: the kind's checklist as it stands now
            checklist = [_item(text) for text in self.checklist_for(record)]
        wf["checklist"] = checklist
        wf["dispatched_to"] = json.loads(wf["dispatched_to"] or "[]")
        out["workflow"] = wf
        return out

    # --- acting --------------------------------------------------------------------------------

    def act(self, pk: int, user: str, step: Step, now: float) -> dict[str, Any] | None:
        """Carry out ``step`` by ``user`` at ``now``; the entry afterwards (None: no such entry).

        Raises :class:`WorkflowConflict` when the state, the owner or the checklist forbid it.
        """
        if step.action not in ACTIONS:
            raise ValueError(f"action: expected one of {', '.join(ACTIONS)}")
        done = self.store.write(lambda db: self._act(db, pk, user, step, now))
        return self.alarm_json(pk) if done else None

    def log_action(
        self, pk: int, user: str, action: str, detail: dict[str, Any] | None, now: float
    ) -> None:
        """Add an entry to an alarm's operator actions without changing its state."""
        self.store.write(
            lambda db: db.execute(
                'INSERT INTO alarm_actions (alarm, at, "user", action, detail) '
                "VALUES (?, ?, ?, ?, ?)",
                (pk, now, user, action, json.dumps(detail) if detail else None),
            )
        )

    def _act(self, db: Connection, pk: int, user: str, step: Step, now: float) -> bool:
        row = db.execute("SELECT * FROM alarms WHERE id = ?", (pk,)).fetchone()
        if row is None:
            return False
        record = _record(row)
        wf_row = db.execute("SELECT * FROM alarm_workflow WHERE alarm = ?", (pk,)).fetchone()
        if wf_row is None:
            checklist = [_item(text) for text in self.checklist_for(record)]
            db.execute(
                "INSERT INTO alarm_workflow (alarm, checklist) VALUES (?, ?)",
                (pk, json.dumps(checklist)),
            )
            wf_row = db.execute("SELECT * FROM alarm_workflow WHERE alarm = ?", (pk,)).fetchone()
        wf: dict[str, Any] = dict(wf_row)
        wf["dispatched_to"] = json.loads(wf["dispatched_to"])
        wf["checklist"] = json.loads(wf["checklist"])
        state = record.state
        log: list[tuple[str, dict[str, Any] | None]] = []

        owner = wf["owner"]
        if owner is not None and owner != user and step.action != "open":
            if not step.take_over:
                raise WorkflowConflict(
                    f"alarm {record.ref} is owned by {owner}; confirm to take it over",
                    "owned",
                    owner,
                )
            log.append(("take_over", {"from": owner}))
            wf["owner"], wf["owned_at"] = user, now
        elif owner is None and (step.action != "open" or state != "resolved"):
            wf["owner"], wf["owned_at"] = user, now
            log.append(("own", None))

        if state == "resolved" and step.action not in ("open", "note"):
            raise WorkflowConflict(f"alarm {record.ref} is already resolved", "state")
        allowed = _FROM.get(step.action)
        if allowed is not None and state not in allowed:
            raise WorkflowConflict(
                f"cannot {step.action} alarm {record.ref}: it is {state.replace('_', ' ')}"
                + (", acknowledge it first" if state == "new" else ""),
                "state",
            )

        new_state = state
        if step.action == "acknowledge":
            new_state = "acknowledged"
            wf["acknowledged_by"], wf["acknowledged_at"] = user, now
            log.append(("acknowledge", None))
        elif step.action == "hold":
            new_state, wf["held_from"] = "on_hold", state
            log.append(("hold", _text(step)))
        elif step.action == "resume":
            new_state = wf["held_from"] or "acknowledged"
            wf["held_from"] = None
            log.append(("resume", None))
        elif step.action == "dispatch":
            if step.to not in DISPATCH_TO:
                raise ValueError(f"to: expected one of {', '.join(DISPATCH_TO)}")
            new_state = "dispatched"
            if step.to not in wf["dispatched_to"]:
                wf["dispatched_to"].append(step.to)
            if wf["dispatched_at"] is None:  # time to dispatch counts the first one
                wf["dispatched_at"], wf["dispatched_by"] = now, user
            log.append(("dispatch", {"to": step.to, **(_text(step) or {})}))
        elif step.action == "check":
            items = wf["checklist"]
            if step.item is None or not 0 <= step.item < len(items):
                raise ValueError(f"item: expected a checklist index 0..{len(items) - 1}")
            entry = items[step.item]
            entry.update(done=step.done, by=user if step.done else None)
            entry["at"] = now if step.done else None
            log.append(("check" if step.done else "uncheck", {"item": entry["text"]}))
        elif step.action == "resolve":
            if step.outcome not in OUTCOMES:
                raise ValueError(f"outcome: expected one of {', '.join(OUTCOMES)}")
            missing = [i["text"] for i in wf["checklist"] if not i["done"]]
            if missing:
                raise WorkflowConflict(
                    f"complete the checklist before resolving: {'; '.join(missing)}", "checklist"
                )
            new_state = "resolved"
            wf["resolved_by"], wf["resolved_at"], wf["outcome"] = user, now, step.outcome
            log.append(("resolve", {"outcome": step.outcome, **(_text(step) or {})}))
        elif step.action == "note":
            if not step.text:
                raise ValueError("text: a note needs text")
            log.append(("note", {"text": step.text}))
        # "open" only claims ownership (above).

        db.execute(
            "UPDATE alarm_workflow SET "
            + ", ".join(f"{c} = ?" for c in _WF_COLUMNS)
            + " WHERE alarm = ?",
            (
                *(
                    json.dumps(wf[c]) if c in ("dispatched_to", "checklist") else wf[c]
                    for c in _WF_COLUMNS
                ),
                pk,
            ),
        )
        if new_state != state:
            db.execute("UPDATE alarms SET state = ? WHERE id = ?", (new_state, pk))
        for action, detail in log:
            db.execute(
                'INSERT INTO alarm_actions (alarm, at, "user", action, detail) '
                "VALUES (?, ?, ?, ?, ?)",
                (pk, now, user, action, json.dumps(detail) if detail else None),
            )
        logger.info("%s: %s by %s (%s -> %s)", record.ref, step.action, user, state, new_state)
        return True


def _item(text: str) -> dict[str, Any]:
    return {"text": text, "done": False, "by": None, "at": None}


def _text(step: Step) -> dict[str, Any] | None:
    return {"text": step.text} if step.text else None
