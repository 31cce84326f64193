"""``polewatch unit``: runs on the sim board until SIGTERM, then switches everything off."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from host_tools.provision.oscore import provision_oscore

REPO = Path(__file__).resolve().parents[2]
SITE = "sim/sites/parking_lot.toml"


def unit_cmd(board: str, site: str, data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "polewatch",
        "unit",
        "--board",
        board,
        "--site",
        site,
        "--data-dir",
        str(data_dir),
    ]


def run_unit(
    board: str, site: str, data_dir: Path, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        unit_cmd(board, site, data_dir), cwd=REPO, capture_output=True, text=True, timeout=60, **kw
    )  # type: ignore[call-overload]


def test_unit_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    provision_oscore("pole-0001", tmp_path / "oscore", tmp_path / "receiver")
    cmd = unit_cmd("board_configs/sim.toml", SITE, tmp_path)
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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
    result = run_unit(
        "board_configs/rpi4-lepton35.toml",
        SITE,
        tmp_path,
        env={"GPIOZERO_PIN_FACTORY": "mock", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "thermal backend 'purethermal' (for 'thermal') is not available in this build" in (
        result.stderr
    )


def test_unit_with_an_invalid_config_exits_2(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text((REPO / SITE).read_text().replace("priority = 1", "priority = 0"))
    result = run_unit("board_configs/sim.toml", str(site), tmp_path)
    assert result.returncode == 2
    assert f"{site}: rules[0].priority: Input should be greater than or equal to 1" in result.stderr
