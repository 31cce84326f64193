"""A/B slots: a release on trial is committed when healthy and rolled back when not."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from firmware.systemd import HEALTH_FILE, write_health
from host_tools.provision.slots import STALE_S, SlotError, Slots
from polewatch.cli import main

T0 = 1_800_000_000.0


def _release(slots: Slots, slot: str, release: str) -> None:
    """A minimal installed release (what the installer leaves in a slot)."""
    d = slots.slot_dir(slot)
    if d.exists():
        for p in sorted(d.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "manifest.json").write_text(json.dumps({"release": release, "board": "sim"}))


def _two_releases(tmp_path: Path, timeout_s: float = 300.0, t0: float = T0) -> Slots:
    """r1 committed in slot a, r2 switched to in slot b (on trial since t0)."""
    slots = Slots(tmp_path)
    _release(slots, "a", "r1")
    assert slots.activate("a", now=t0 - 1000) is False
    _release(slots, "b", "r2")
    assert slots.activate("b", now=t0, trial_timeout_s=timeout_s, max_boots=3) is True
    return slots


def _health(slots: Slots, slot: str, started: float, acked: int, updated: float) -> None:
    slots.data_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "pid": 1234,
        "code": str(slots.base / "slots" / slot),
        "started_s": started,
        "updated_s": updated,
        "heartbeats_acknowledged": acked,
    }
    write_health(slots.data_dir / HEALTH_FILE, info)


def test_failed_health_check_rolls_back_to_the_previous_release(tmp_path: Path) -> None:
    slots = _two_releases(tmp_path)
    # the new release started but the receiver never acknowledged a heartbeat
    _health(slots, "b", started=T0 + 5, acked=0, updated=T0 + 60)
    verdict = slots.health_check(now=T0 + 60)
    assert verdict.outcome == "waiting" and "no heartbeat acknowledged" in verdict.detail
    assert slots.link("current") == "b"
    _health(slots, "b", started=T0 + 5, acked=0, updated=T0 + 300)  # still running, still alone
    verdict = slots.health_check(now=T0 + 301)
    assert verdict.rolled_back and "back to a" in verdict.detail
    assert slots.link("current") == "a" and slots.link("committed") == "a"
    assert slots.link("previous") == "b"
    st = slots.state()
    assert st["trial"] is None
    assert st["failed"]["release"] == "r2" and "no heartbeat" in st["failed"]["reason"]
    assert [e["event"] for e in st["history"]][-3:] == ["installed", "switched", "rolled back"]


def test_healthy_release_is_committed(tmp_path: Path) -> None:
    slots = _two_releases(tmp_path)
    _health(slots, "b", started=T0 + 5, acked=1, updated=T0 + 20)
    verdict = slots.health_check(now=T0 + 20)
    assert verdict.outcome == "committed"
    assert slots.link("committed") == "b" and slots.link("current") == "b"
    assert slots.state()["trial"] is None
    assert slots.health_check(now=T0 + 40).outcome == "steady"


@pytest.mark.parametrize(
    ("slot", "started", "acked", "updated", "why"),
    [
        ("a", T0 + 5, 9, T0 + 20, "runs"),  # the old code still runs
        ("b", T0 - 50, 9, T0 + 20, "not restarted"),  # a process from before the switch
        ("b", T0 + 5, 9, T0 + 20 - STALE_S - 1, "stale"),  # hung, or stopped
    ],
)
def test_evidence_that_does_not_count(
    tmp_path: Path, slot: str, started: float, acked: int, updated: float, why: str
) -> None:
    slots = _two_releases(tmp_path)
    _health(slots, slot, started, acked, updated)
    verdict = slots.health_check(now=T0 + 20)
    assert verdict.outcome == "waiting" and why in verdict.detail
    assert slots.health_check(now=T0 + 400).rolled_back


def test_no_health_report_at_all_rolls_back_after_the_deadline(tmp_path: Path) -> None:
    slots = _two_releases(tmp_path, timeout_s=60)
    assert slots.health_check(now=T0 + 59).outcome == "waiting"
    assert slots.health_check(now=T0 + 60).rolled_back
    assert slots.link("current") == "a"


def test_crash_looping_release_rolls_back_on_its_fourth_start(tmp_path: Path) -> None:
    slots = _two_releases(tmp_path)
    for n in (1, 2, 3):
        assert f"on trial (start {n})" in slots.boot(now=T0 + n)
        assert slots.link("current") == "b"
    message = slots.boot(now=T0 + 4)
    assert "rolled back to slot a" in message and "started 3 times" in message
    assert slots.link("current") == "a"
    assert "committed" in slots.boot(now=T0 + 5)


def test_power_cut_between_state_and_link_heals(tmp_path: Path) -> None:
    """state.json says b is on trial but the link never moved: the check goes back to a."""
    slots = _two_releases(tmp_path)
    os.replace(tmp_path / "opt/polewatch/current", tmp_path / "opt/polewatch/x")
    os.symlink("slots/a", tmp_path / "opt/polewatch/current")
    _health(slots, "a", started=T0 + 5, acked=3, updated=T0 + 20)
    assert "runs" in slots.health_check(now=T0 + 20).detail
    assert slots.health_check(now=T0 + 301).rolled_back
    assert slots.link("current") == "a" and slots.state()["trial"] is None


def test_manual_rollback_and_its_limits(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    _release(slots, "a", "r1")
    slots.activate("a", now=T0)
    with pytest.raises(SlotError, match="no previous release"):
        slots.rollback("by hand", now=T0)
    with pytest.raises(SlotError, match="no release is on trial"):
        slots.commit(now=T0)
    _release(slots, "b", "r2")
    slots.activate("b", now=T0 + 1)
    slots.commit(now=T0 + 2)
    assert slots.rollback("by hand", now=T0 + 3) == "a"
    assert slots.link("current") == "a" and slots.link("committed") == "a"
    assert slots.link("previous") == "b"


def test_slot_cli_health_check_and_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slots = _two_releases(tmp_path, timeout_s=60, t0=time.time() - 61)  # its time is up
    assert main(["slot", "health-check", "--root", str(tmp_path)]) == 1
    assert "rolled-back: release r2 failed (no health report" in capsys.readouterr().out
    assert main(["slot", "status", "--root", str(tmp_path)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"] == {"slot": "a", "release": "r1"}
    assert status["failed"]["release"] == "r2"
    assert slots.link("current") == "a"
