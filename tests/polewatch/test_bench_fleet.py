"""The fleet bench: a small fleet against one receiver (SQLite) or two (PostgreSQL) loses and
duplicates nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from firmware.errors import ConfigError
from polewatch.bench_fleet import FleetPlan, main, run_fleet
from polewatch.scratch_postgres import PostgresUnavailable, find_binaries

KEYS = (
    "fleet_ingest_msgs_per_s",
    "fleet_ack_p50_ms",
    "fleet_ack_p99_ms",
    "fleet_lost",
    "fleet_duplicates",
    "fleet_console_load_p50_ms",
    "fleet_console_load_p99_ms",
    "fleet_units",
    "fleet_duration_s",
)


@pytest.mark.parametrize("receivers", [1, 2])
def test_small_fleet_loses_and_duplicates_nothing(tmp_path: Path, receivers: int) -> None:
    if receivers > 1:
        try:
            find_binaries()
        except PostgresUnavailable as exc:
            pytest.skip(f"two receivers need PostgreSQL: {exc}")
    lines: list[str] = []
    plan = FleetPlan(
        units=20, receivers=receivers, duration_s=4.0, alarm_every_s=1.0, processes=2,
        drain_s=30.0, ramp_s=1.0,
    )  # fmt: skip
    figures = asyncio.run(run_fleet(plan, tmp_path, lines.append))
    assert set(KEYS) <= set(figures)
    assert figures["fleet_lost"] == 0
    assert figures["fleet_duplicates"] == 0
    assert figures["fleet_units"] == 20 and figures["fleet_receivers"] == receivers
    assert figures["fleet_duration_s"] == 4.0
    assert figures["fleet_ingest_msgs_per_s"] > 0
    assert 0 < figures["fleet_ack_p50_ms"] <= figures["fleet_ack_p99_ms"]
    assert 0 < figures["fleet_console_load_p50_ms"] <= figures["fleet_console_load_p99_ms"]
    assert any("lost 0, duplicated 0" in line for line in lines)  # the closing progress line


def test_an_impossible_plan_is_refused_before_anything_is_set_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--receivers: must be at least 1, not 0"):
        asyncio.run(run_fleet(FleetPlan(units=4, receivers=0), tmp_path))
    assert not (tmp_path / "units").exists()


def test_command_line_refuses_no_receivers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other_bench_ms": 1.0}))
    with pytest.raises(SystemExit) as exc:
        main(["--units", "4", "--receivers", "0", "--out", str(out)])
    assert exc.value.code == 2
    assert "--receivers: must be at least 1" in capsys.readouterr().err
    assert json.loads(out.read_text()) == {"other_bench_ms": 1.0}  # nothing written
