"""Checking a scenario's outcome: the expected alarms and output steps, and nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from firmware.hal.base import HistoryEntry
from host_tools.receiver.store import AlarmRecord
from sim.scenario import Expect

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnInterval:
    """An output's time on, in scenario seconds."""

    output: str
    on_s: float
    off_s: float | None


def on_intervals(output: str, history: list[HistoryEntry], start: float) -> list[OnInterval]:
    """Pair an output's recorded on/off switches into intervals."""
    out: list[OnInterval] = []
    on_at: float | None = None
    for entry in history:
        if entry.what == "on" and on_at is None:
            on_at = entry.t - start
        elif entry.what == "off" and on_at is not None:
            out.append(OnInterval(output, on_at, entry.t - start))
            on_at = None
    if on_at is not None:
        out.append(OnInterval(output, on_at, None))
    return out


def check_outcome(
    expect: Expect,
    alarms: list[AlarmRecord],
    outputs: dict[str, list[HistoryEntry]],
    start: float,
    undelivered: int,
) -> list[str]:
    """Compare what happened with what was expected; return the differences (empty = pass)."""
    problems: list[str] = []
    remaining = list(alarms)
    for exp in expect.alarms:
        match = next(
            (
                a
                for a in remaining
                if a.event == exp.event
                and a.zone == exp.zone
                and a.priority == exp.priority
                and exp.earliest_s <= a.opened_at - start <= exp.latest_s
            ),
            None,
        )
        if match is None:
            problems.append(
                f"expected a P{exp.priority} {exp.event} alarm in zone {exp.zone} "
                f"opened between {exp.earliest_s:g} s and {exp.latest_s:g} s: none"
            )
        else:
            remaining.remove(match)
    for a in remaining:
        problems.append(
            f"unexpected alarm {a.ref}: P{a.priority} {a.event} in zone {a.zone} "
            f"at {a.opened_at - start:.1f} s"
        )
    intervals = [iv for name, hist in outputs.items() for iv in on_intervals(name, hist, start)]
    for exp_out in expect.outputs:
        found = next(
            (
                iv
                for iv in intervals
                if iv.output == exp_out.output
                and exp_out.on_earliest_s <= iv.on_s <= exp_out.on_latest_s
            ),
            None,
        )
        if found is None:
            problems.append(
                f"expected {exp_out.output} on between {exp_out.on_earliest_s:g} s "
                f"and {exp_out.on_latest_s:g} s: it was not"
            )
            continue
        intervals.remove(found)
        if found.off_s is None:
            problems.append(f"{exp_out.output} went on at {found.on_s:.1f} s and never went off")
        elif abs((found.off_s - found.on_s) - exp_out.on_for_s) > exp_out.tolerance_s:
            problems.append(
                f"{exp_out.output} was on for {found.off_s - found.on_s:.1f} s, "
                f"expected {exp_out.on_for_s:g} s ± {exp_out.tolerance_s:g}"
            )
    for iv in intervals:
        problems.append(f"unexpected: {iv.output} on at {iv.on_s:.1f} s")
    if undelivered:
        problems.append(f"{undelivered} message(s) still in the outbox, never acknowledged")
    return problems
