"""Retention: closed alarms and the records about them go after their site's period."""

from __future__ import annotations

import asyncio
import time

from firmware.clock import SystemClock
from firmware.uplink import protocol
from host_tools.receiver.retention import DAY_S, RetentionConfig, purge, run_retention
from host_tools.receiver.store import ReceiverStore
from tests.forward.forward_helpers import AlarmMaker, until

CLOSE = protocol.Phase.CLOSE


def refs(store: ReceiverStore) -> set[str]:
    return {a.ref for a in store.alarms()}


def test_old_closed_alarms_go_recent_and_open_ones_stay(
    store: ReceiverStore, commit: AlarmMaker
) -> None:
    now = time.time()
    old = now - 100 * DAY_S
    commit(1, received_at=old)
    commit(1, phase=CLOSE, received_at=old + 60)  # closed 100 days ago: goes
    commit(2, received_at=old)  # open for 100 days: still being worked, stays
    commit(3, received_at=now - 10 * DAY_S)
    commit(3, phase=CLOSE, received_at=now - 10 * DAY_S)  # closed 10 days ago: stays
    commit(4, received_at=old)
    commit(4, phase=CLOSE, received_at=now - DAY_S)  # closed yesterday after 100 days: stays
    config = RetentionConfig.model_validate({"days": 90})
    deleted = purge(store, config, now)
    assert refs(store) == {"pole-7/2", "pole-7/3", "pole-7/4"}
    assert deleted["alarms"] == 1 and deleted["alarm_events"] == 2
    # Message ids older than the period go too (their alarm may still be open).
    assert deleted["messages"] == 4 and store.message_count() == 3
    assert store.timeline(store.alarms()[0].id)  # the kept alarms keep their timeline
    assert not any(purge(store, config, now).values())


def test_each_site_has_its_own_period(store: ReceiverStore, commit: AlarmMaker) -> None:
    now = time.time()
    for unit in ("pole-1", "pole-2", "pole-9"):
        commit(1, unit=unit, received_at=now - 20 * DAY_S)
        commit(1, phase=CLOSE, unit=unit, received_at=now - 20 * DAY_S)
    config = RetentionConfig.model_validate(
        {"days": 30, "sites": {"station": {"days": 14, "units": ["pole-1", "pole-2"]}}}
    )
    purge(store, config, now)
    assert refs(store) == {"pole-9/1"}


def test_finished_commands_go_pending_ones_stay(store: ReceiverStore) -> None:
    now = time.time()
    old = now - 100 * DAY_S
    store.queue_command("pole-7", protocol.CommandOp.SILENCE, None, old, 600)
    store.queue_command("pole-7", protocol.CommandOp.ARM, None, old, 200 * DAY_S)  # still pending
    # The first expired long ago: the receiver marks it so when the unit next calls.
    store.ingest(
        protocol.Heartbeat(unit_id="pole-7", msg_id=1, time_s=int(old), next_due_s=60), old + 700
    )
    assert sorted(c.state for c in store.commands()) == ["expired", "sent"]
    deleted = purge(store, RetentionConfig(), now)
    assert deleted["commands"] == 1
    assert [c.op for c in store.commands()] == ["arm"]


async def test_the_job_runs_in_the_background(store: ReceiverStore, commit: AlarmMaker) -> None:
    old = time.time() - 400 * DAY_S
    commit(1, received_at=old)
    commit(1, phase=CLOSE, received_at=old)
    config = RetentionConfig.model_validate({"days": 365, "every_s": 0.05})
    task = asyncio.create_task(run_retention(store, config, SystemClock()))
    try:
        await until(lambda: not store.alarms(), what="the purge")
        commit(2, received_at=old)
        commit(2, phase=CLOSE, received_at=old)
        await until(lambda: not store.alarms(), what="the next scheduled purge")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_rows_that_reference_an_alarm_go_with_it(store: ReceiverStore, commit: AlarmMaker) -> None:
    """Tables added later (an operator's notes, say) that point at alarms lose those rows too."""
    now = time.time()
    old, _ = commit(1, received_at=now - 100 * DAY_S)
    commit(1, phase=CLOSE, received_at=now - 100 * DAY_S)
    kept, _ = commit(2, received_at=now)
    store.migrate("CREATE TABLE notes (id INTEGER PRIMARY KEY, alarm INTEGER REFERENCES alarms)")
    for pk in (old.id, kept.id):
        store.write(lambda c, pk=pk: c.execute("INSERT INTO notes (alarm) VALUES (?)", (pk,)))
    audit_cutoffs: list[float] = []
    deleted = purge(
        store,
        RetentionConfig(),
        now,
        also=[("audit", lambda cutoff: audit_cutoffs.append(cutoff) or 3)],
    )
    assert deleted["notes"] == 1 and deleted["alarms"] == 1 and deleted["audit"] == 3
    assert audit_cutoffs == [now - 90 * DAY_S]
    notes = store.read(lambda c: c.execute("SELECT alarm FROM notes").fetchall())
    assert [n[0] for n in notes] == [kept.id]
