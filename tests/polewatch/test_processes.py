"""The parts as separate processes: ``polewatch receiver`` and ``polewatch sim`` over loopback."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from polewatch.netutil import free_port

REPO = Path(__file__).resolve().parents[2]


def polewatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "polewatch", *args]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_receiver_and_sim_unit_as_processes(tmp_path: Path) -> None:
    provisioned = subprocess.run(
        polewatch("provision", "pole-0001", "--unit-dir", str(tmp_path / "unit" / "oscore"),
                  "--receiver-keys", str(tmp_path)),
        cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    assert "OSCORE key id 0001" in provisioned.stdout
    assert "secret" not in provisioned.stdout.lower()
    coap, http = free_port(), free_port(socket.SOCK_STREAM)
    receiver = subprocess.Popen(
        polewatch(
            "receiver",
            "--db",
            str(tmp_path / "r.sqlite"),
            "--coap",
            f"127.0.0.1:{coap}",
            "--http",
            f"127.0.0.1:{http}",
        ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{http}/healthz")
        unit = subprocess.run(
            polewatch(
                "sim",
                "car_fire",
                "--receiver",
                f"127.0.0.1:{coap}",
                "--data-dir",
                str(tmp_path / "unit"),
            ),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert unit.returncode == 0, unit.stdout + unit.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/alarms", timeout=5) as resp:
            alarms = json.load(resp)
        assert [(a["ref"], a["event"], a["priority"], a["zone"]) for a in alarms] == [
            ("pole-0001/1", "fire", 1, "lot")
        ]
        assert [a for a in alarms[0]["actions"]] == [["floodlight", 120], ["siren", 60]]
        # A second receiver on the same CoAP port is refused, not silently sharing it.
        clash = subprocess.run(
            polewatch(
                "receiver",
                "--db",
                str(tmp_path / "r2.sqlite"),
                "--coap",
                f"127.0.0.1:{coap}",
                "--no-console",
            ),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert clash.returncode == 2
        assert f"cannot listen for CoAP on 127.0.0.1:{coap}" in clash.stderr
    finally:
        receiver.send_signal(signal.SIGTERM)
        out, _ = receiver.communicate(timeout=30)
    assert receiver.returncode == 0
    assert re.search(
        r"pole-0001/1: msg \d+ \(open\) committed to receiver database as alarm #1", out
    )
