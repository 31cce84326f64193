"""The durable outbox: ids never reused, priority order, backoff, survives reopening."""

from __future__ import annotations

import contextlib
from pathlib import Path

from firmware.uplink.outbox import Outbox


def test_priority_then_age_order_and_ack_removes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.commit(5, "u/1", lambda m: b"low%d" % m, now=1.0)
    box.commit(1, "u/2", lambda m: b"fire%d" % m, now=2.0)
    box.commit(1, "u/3", lambda m: b"fire%d" % m, now=3.0)
    first = box.next_due(10.0)
    assert first is not None and first.payload == b"fire2" and first.ref == "u/2"
    box.acknowledged(first.msg_id)
    nxt = box.next_due(10.0)
    assert nxt is not None and nxt.ref == "u/3"
    assert box.depth() == 2


def test_ids_survive_reopen_and_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    m1 = box.commit(1, "u/1", lambda m: b"x", now=0)
    a1 = box.next_alarm_id()
    box.acknowledged(m1)
    box.close()
    box = Outbox(path)
    assert box.commit(1, "u/2", lambda m: b"y", now=0) == m1 + 1
    assert box.next_alarm_id() == a1 + 1


def test_a_failing_builder_commits_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")

    def broken(msg_id: int) -> bytes:
        raise ValueError("boom")

    with contextlib.suppress(ValueError):
        box.commit(1, "u/1", broken, now=0)
    assert box.depth() == 0


def test_defer_backs_off_with_jitter_and_caps(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    mid = box.commit(1, "u/1", lambda m: b"x", now=0)
    delays = [box.defer(mid, 100.0, initial_s=1.0, max_s=8.0) for _ in range(8)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert box.next_due(100.0) is None  # waiting for its retry time
    assert box.next_due(100.0 + 8.0) is not None
