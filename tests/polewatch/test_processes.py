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
from typing import Any

from polewatch.netutil import free_port
from tests.host_tools.console_helpers import PASSWORD

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


def _get_logged_in(base: str, path: str, user: str) -> Any:
    """GET ``path`` as ``user``: log in, carry the session cookie, read the JSON answer."""
    login = urllib.request.Request(
        f"{base}/api/login",
        data=json.dumps({"name": user, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=5) as resp:
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    request = urllib.request.Request(f"{base}{path}", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.load(resp)


def test_receiver_and_sim_unit_as_processes(tmp_path: Path) -> None:
    provisioned = subprocess.run(
        polewatch("provision", "pole-0001", "--unit-dir", str(tmp_path / "unit" / "oscore"),
                  "--receiver-keys", str(tmp_path)),
        cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    assert "OSCORE key id 0001" in provisioned.stdout
    assert "secret" not in provisioned.stdout.lower()
    # The console has no default user: the first is made from the command line.
    made = subprocess.run(
        polewatch("user", "add", "viewer", "--role", "viewer", "--db", str(tmp_path / "r.sqlite")),
        input=PASSWORD + "\n", cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
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
        alarms = _get_logged_in(f"http://127.0.0.1:{http}", "/api/alarms", "viewer")
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
