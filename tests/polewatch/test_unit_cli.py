"""``polewatch unit``: runs on the sim board until SIGTERM, then switches everything off."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_unit_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polewatch",
            "unit",
            "--board",
            "board_configs/sim.toml",
            "--site",
            "sim/sites/parking_lot.toml",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)  # let it take frames
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "unit pole-0001 starting: board sim" in out
    assert "all outputs off (shutdown)" in out
    frames = int(out.split("stopped after ")[1].split(" frames")[0])
    assert frames > 0
    assert (tmp_path / "outbox.sqlite").exists()


def test_unit_with_a_backend_this_build_lacks_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "polewatch",
            "unit",
            "--board",
            "board_configs/rpi4-lepton35.toml",
            "--site",
            "sim/sites/parking_lot.toml",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"GPIOZERO_PIN_FACTORY": "mock", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "thermal backend 'purethermal' (for 'thermal') is not available in this build" in (
        result.stderr
    )


def test_unit_with_an_invalid_config_exits_2(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        (REPO / "sim/sites/parking_lot.toml").read_text().replace("priority = 1", "priority = 0")
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "polewatch",
            "unit",
            "--board",
            "board_configs/sim.toml",
            "--site",
            str(site),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{site}: rules[0].priority: Input should be greater than or equal to 1" in result.stderr
