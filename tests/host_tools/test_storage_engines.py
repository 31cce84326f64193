"""The receiver's storage contract, on SQLite and on PostgreSQL alike (the ``engine`` fixture runs
each test on both), and what several receivers sharing one PostgreSQL need: concurrent ingest
of one message stores it once, concurrent supervision raises one offline entry, and console
events reach the other receivers."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from firmware.errors import StorageError
from firmware.uplink import protocol
from host_tools.console.users import UserError, Users
from host_tools.receiver.audit import AuditLog
from host_tools.receiver.bus import EventBus
from host_tools.receiver.database import is_postgres
from host_tools.receiver.store import ReceiverStore
from host_tools.receiver.workflow import Step, Workflow
from tests.helpers import poll_until

T0 = 1_800_000_000.0


def alarm(msg_id: int, alarm_id: int = 1, phase: protocol.Phase = protocol.Phase.OPEN,
          unit: str = "pole-1", **fields: Any) -> protocol.Alarm:  # fmt: skip
    values: dict[str, Any] = {
        "unit_id": unit, "msg_id": msg_id, "time_s": int(T0) + msg_id, "alarm_id": alarm_id,
        "phase": phase, "event": protocol.EventKind.FIRE, "priority": 1, "zone": "lot",
        "rule": "fire-in-lot", "max_temp_dc": 1402, "box": (40, 60, 52, 71),
    }  # fmt: skip
    values.update(fields)
    return protocol.Alarm(**values)


def heartbeat(msg_id: int, unit: str = "pole-1", reporting_s: int = 60) -> protocol.Heartbeat:
    return protocol.Heartbeat(unit_id=unit, msg_id=msg_id, time_s=int(T0), next_due_s=30,
                              reporting_s=reporting_s, rssi_dbm=-80)  # fmt: skip


@pytest.fixture
def store(receiver_db: Path | str) -> Any:
    s = ReceiverStore(receiver_db)
    yield s
    s.close()


def test_a_resent_message_is_stored_once_and_acknowledged_again(store: ReceiverStore) -> None:
    first = store.ingest(alarm(1), T0)
    again = store.ingest(alarm(1), T0 + 1)
    assert not first.duplicate and first.alarm is not None and again.duplicate
    assert store.message_count() == 1 and len(store.alarms()) == 1
    assert store.timeline(first.alarm.id) == [
        {"msg_id": 1, "phase": "open", "unit_time": T0 + 1, "received_at": T0}
    ]


def test_an_alarm_is_built_from_its_phases_in_any_order(store: ReceiverStore) -> None:
    closed = store.ingest(alarm(3, phase=protocol.Phase.CLOSE, max_temp_dc=900), T0).alarm
    assert closed is not None and closed.unit_state == "closed"
    store.ingest(alarm(2, phase=protocol.Phase.UPDATE, max_temp_dc=2500, box=None), T0 + 1)
    record = store.alarm(closed.id)
    assert record is not None
    assert record.unit_state == "closed" and record.max_temp_c == 250.0
    assert record.updated_at == T0 + 3 and record.box == [40, 60, 52, 71]
    assert [e["phase"] for e in store.timeline(record.id)] == ["close", "update"]


def test_faults_open_and_restores_close_queue_entries(store: ReceiverStore) -> None:
    fault = protocol.Fault(
        unit_id="pole-1", msg_id=1, time_s=int(T0), fault_id=4,
        code=protocol.FaultCode.CAMERA, subject="thermal", detail="no frames",
    )  # fmt: skip
    opened = store.ingest(fault, T0).alarm
    assert opened is not None and opened.ref == "pole-1/F4" and opened.detail == "thermal no frames"
    restore = protocol.Restore(unit_id="pole-1", msg_id=2, time_s=int(T0) + 9, fault_id=4,
                               code=protocol.FaultCode.CAMERA)  # fmt: skip
    closed = store.ingest(restore, T0 + 9).alarm
    assert closed is not None and closed.id == opened.id and closed.unit_state == "closed"


def test_a_silent_unit_goes_offline_once_and_comes_back(store: ReceiverStore) -> None:
    store.ingest(heartbeat(1), T0)
    assert store.overdue(T0 + 30) == []
    raised = store.overdue(T0 + 61)
    assert [r.ref for r in raised] == ["pole-1/L1"]
    assert store.overdue(T0 + 120) == []  # already offline: not raised again
    back = store.ingest(heartbeat(2), T0 + 130)
    assert back.restored is not None and back.restored.unit_state == "closed"
    (unit,) = store.units()
    assert unit["online"] is True and unit["health"]["rssi_dbm"] == -80


def test_commands_ride_on_acknowledgements_until_their_result(store: ReceiverStore) -> None:
    cmd = store.queue_command("pole-1", protocol.CommandOp.SILENCE, None, T0, 600)
    expired = store.queue_command("pole-1", protocol.CommandOp.ARM, None, T0, 5)
    taken = store.ingest(heartbeat(1), T0 + 10).commands
    assert [c.command_id for c in taken] == [cmd.id]
    assert [c.command_id for c in store.ingest(heartbeat(2), T0 + 20).commands] == [cmd.id]
    result = protocol.CommandResult(
        unit_id="pole-1", msg_id=3, time_s=int(T0) + 21, command_id=cmd.id,
        status=protocol.CommandStatus.DONE,
    )  # fmt: skip
    done = store.ingest(result, T0 + 21)
    assert done.command is not None and done.command.state == "done"
    assert {c.id: c.state for c in store.commands("pole-1")} == {
        cmd.id: "done",
        expired.id: "expired",
    }
    assert store.ingest(heartbeat(4), T0 + 30).commands == ()


def test_site_configs_are_versioned_per_unit(store: ReceiverStore) -> None:
    assert store.put_config("pole-1", "a = 1", T0) == 1
    assert store.put_config("pole-1", "a = 2", T0) == 2
    assert store.put_config("pole-2", "b = 1", T0) == 1
    assert store.config("pole-1", 2) == "a = 2" and store.config("pole-1", 3) is None


def test_users_sessions_audit_and_workflow_keep_their_rows(store: ReceiverStore) -> None:
    users = Users(store)
    users.add("ada", "supervisor", "correct horse battery", T0)
    with pytest.raises(UserError, match="exists already"):
        users.add("ada", "operator", "another long password", T0)
    users.add("bo", "operator", "a long enough password", T0)
    token, _ = users.open_session(users.get("bo"), T0, "127.0.0.1")  # type: ignore[arg-type]
    session = users.session(token, T0 + 1)
    assert session is not None and session.user.name == "bo"
    AuditLog(store).record(T0, "login", user="ada", role="supervisor")
    assert [r.user for r in AuditLog(store).records()] == ["ada"]
    pk = store.ingest(alarm(1), T0).alarm.id  # type: ignore[union-attr]
    flow = Workflow(store, {"fire": ["called the fire service"]})
    assert flow.act(pk, "ada", Step("acknowledge"), T0 + 5) is not None
    detail = flow.detail(pk)
    assert detail is not None and detail["state"] == "acknowledged"
    assert {a["user"] for a in detail["operator_actions"]} == {"ada"}  # took it, acknowledged
    users.update("bo", disabled=True)  # ends its sessions (rows with a foreign key on users)
    assert users.session(token, T0 + 7) is None


def test_an_engine_error_names_the_database(store: ReceiverStore) -> None:
    with pytest.raises(StorageError, match="receiver database"):
        store.read(lambda c: c.execute("SELECT * FROM no_such_table").fetchall())
    assert store.message_count() == 0  # the store goes on working


# --- several receivers on one PostgreSQL ---------------------------------------------------------


@pytest.fixture
def two_stores(postgres_url: str) -> Any:
    """Two receivers' stores on one PostgreSQL database."""
    a, b = ReceiverStore(postgres_url), ReceiverStore(postgres_url)
    yield a, b
    a.close()
    b.close()


def _at_once(*calls: Any) -> list[Any]:
    """Run the calls in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_receivers_taking_one_message_store_it_once(two_stores: Any) -> None:
    a, b = two_stores
    for n in range(1, 21):  # a unit that resends to the other instance while the first commits
        msg = alarm(n, alarm_id=n)
        first, second = _at_once(lambda: a.ingest(msg, T0), lambda: b.ingest(msg, T0))  # noqa: B023
        assert sorted([first.duplicate, second.duplicate]) == [False, True]
    assert a.message_count() == 20 and len(b.alarms()) == 20
    assert all(len(a.timeline(r.id)) == 1 for r in a.alarms())


def test_two_receivers_supervising_raise_one_offline_entry(two_stores: Any) -> None:
    a, b = two_stores
    for n in range(10):
        a.ingest(heartbeat(1, unit=f"pole-{n}"), T0)
    raised_a, raised_b = _at_once(lambda: a.overdue(T0 + 100), lambda: b.overdue(T0 + 100))
    assert len(raised_a) + len(raised_b) == 10
    assert sorted(r.ref for r in a.alarms()) == sorted(f"pole-{n}/L1" for n in range(10))


async def test_console_events_reach_the_other_receivers(postgres_url: str) -> None:
    from host_tools.receiver.postgres import EventRelay

    assert is_postgres(postgres_url)
    bus_a, bus_b = EventBus(), EventBus()
    relay_a, relay_b = EventRelay(postgres_url, bus_a), EventRelay(postgres_url, bus_b)
    await relay_a.start()
    await relay_b.start()
    try:
        seen_a, seen_b = bus_a.subscribe(), bus_b.subscribe()
        bus_a.publish({"type": "alarm", "alarm": {"id": 7, "ref": "pole-1/1"}})
        got = await asyncio.wait_for(seen_b.get(), 10)
        assert got == {"type": "alarm", "alarm": {"id": 7, "ref": "pole-1/1"}}
        assert (await seen_a.get())["alarm"]["id"] == 7  # delivered here once, not echoed back
        await poll_until(lambda: relay_b.relayed_in == 1)
        await asyncio.sleep(0.2)
        assert seen_a.empty() and seen_b.empty()
    finally:
        await relay_a.stop()
        await relay_b.stop()


def test_a_postgres_url_that_cannot_connect_is_a_clear_error(unused_tcp_port: int) -> None:
    with pytest.raises(StorageError, match=r"postgresql://nobody@127\.0\.0\.1:\d+/x.*connect"):
        ReceiverStore(f"postgresql://nobody:secret@127.0.0.1:{unused_tcp_port}/x?connect_timeout=1")


def test_each_receiver_instance_numbers_its_replies_from_its_own_range(tmp_path: Path) -> None:
    """Copies of one unit context on two receivers never share a nonce."""
    from host_tools.provision.oscore import provision_oscore
    from host_tools.receiver.rejects import Rejects
    from host_tools.receiver.units import INSTANCE_RANGE, UnitKeys, close_all

    provision_oscore("pole-1", tmp_path / "unit", tmp_path / "rx")
    keys = UnitKeys(tmp_path / "rx", Rejects(), instance=3)
    try:
        ((_, ctx),) = keys.by_kid.values()
        assert 3 * INSTANCE_RANGE <= ctx.sender_sequence_number < 4 * INSTANCE_RANGE
    finally:
        close_all(keys)
    keys = UnitKeys(tmp_path / "rx", Rejects(), instance=3)  # again: stays where it got to
    try:
        ((_, ctx),) = keys.by_kid.values()
        assert 3 * INSTANCE_RANGE <= ctx.sender_sequence_number < 4 * INSTANCE_RANGE
    finally:
        close_all(keys)
