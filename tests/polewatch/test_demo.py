"""The demo end to end: ``demo --once`` passes, and fails when its expectation is removed."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polewatch.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "sim" / "scenarios" / "car_fire.toml"


def polewatch(
    *args: str, cwd: Path = REPO, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polewatch", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def test_demo_once_passes(tmp_path: Path) -> None:
    result = polewatch("demo", "--once", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scenario outcome: OK (1 alarm(s) as expected)" in result.stdout
    assert re.search(r"ALARM pole-0001/\d+ OPEN P1 fire zone=lot", result.stdout)


def test_demo_once_fails_without_the_expected_alarm(tmp_path: Path) -> None:
    text = SCENARIO.read_text()
    block = re.search(r"\[\[expect\.alarms\]\].*?latest_s = \d+\n", text, re.S)
    assert block is not None
    edited = tmp_path / "car_fire_no_alarm.toml"
    edited.write_text(
        text.replace(block.group(0), "").replace(
            '"../sites/parking_lot.toml"',
            f'"{SCENARIO.parent.parent / "sites" / "parking_lot.toml"}"',
        )
    )
    result = polewatch(
        "demo", "--once", "--scenario", str(edited), "--data-dir", str(tmp_path / "data")
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "scenario outcome: FAILED" in result.stdout
    assert "unexpected alarm pole-0001/1: P1 fire in zone lot" in result.stdout


def test_validate_config_cli(tmp_path: Path) -> None:
    boards = sorted(str(p) for p in (REPO / "board_configs").glob("*.toml"))
    ok = polewatch("validate-config", *boards)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "board_configs" / "sim.toml").read_text() + "\nshiny = true\n")
    result = polewatch("validate-config", boards[0], str(bad))
    assert result.returncode == 1
    assert f"{bad}: modem.shiny: unknown key" in result.stderr  # appended to the last table


def test_every_subcommand_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(sub.choices) >= 11
    for cmd in sub.choices:
        with pytest.raises(SystemExit) as exit_:
            main([cmd, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: polewatch " + cmd), cmd
        _, found, examples = text.partition("example")
        assert found and f"\n  polewatch {cmd}" in examples, f"{cmd}: no example in --help"


def test_demo_prints_the_console_and_alarms_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "polewatch",
            "demo",
            "--http-port",
            "0",
            "--speed",
            "4",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "ALARM pole-0001/1 OPEN" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + out
    assert re.search(r"console at http://127\.0\.0\.1:\d+/", text)
    assert "ALARM pole-0001/1 OPEN P1 fire zone=lot" in text
    assert "outcome not checked" in text
    assert "polewatch demo: stopped" in text
    assert proc.returncode == 0
