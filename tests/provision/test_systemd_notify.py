"""sd_notify over a real unix datagram socket, and the health file the A/B check reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware import systemd
from host_tools.provision.slots import Slots


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing where systemd's NOTIFY_SOCKET would be."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def _messages(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            out.append(sock.recv(4096).decode())
    return out


def test_notify_reaches_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert systemd.notify("READY=1", path) is True
    assert sock.recv(100) == b"READY=1"


def test_notify_in_the_abstract_namespace() -> None:
    name = f"polewatch-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert systemd.notify("WATCHDOG=1", "@" + name) is True
        assert sock.recv(100) == b"WATCHDOG=1"


def test_without_systemd_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval_s() is None


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval_s() is None


async def test_companion_says_ready_pings_and_reports_health(
    tmp_path: Path, notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 0.05 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    acked = [0]
    task = asyncio.create_task(systemd.companion(lambda: acked[0], tmp_path, health_every_s=0.05))
    health_path = tmp_path / systemd.HEALTH_FILE
    for _ in range(200):
        await asyncio.sleep(0.01)
        if health_path.exists():
            break
    first = json.loads(health_path.read_text())
    assert first["pid"] == os.getpid() and first["heartbeats_acknowledged"] == 0
    assert first["code"] == str(systemd.CODE_DIR)
    acked[0] = 2
    for _ in range(200):
        await asyncio.sleep(0.01)
        if json.loads(health_path.read_text())["heartbeats_acknowledged"] == 2:
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    messages = _messages(sock)
    assert messages[0] == "READY=1"
    assert messages.count("WATCHDOG=1") >= 2
    assert "STATUS=running; 2 heartbeat(s) acknowledged" in messages
    assert messages[-1] == "STOPPING=1"


async def test_companion_health_commits_a_release_on_trial(tmp_path: Path) -> None:
    """What the running unit writes is what the A/B health check takes as proof."""
    slots = Slots(tmp_path)
    for slot, release in (("a", "r1"), ("b", "r2")):
        slots.slot_dir(slot).mkdir(parents=True)
        (slots.slot_dir(slot) / "manifest.json").write_text(json.dumps({"release": release}))
    slots.activate("a", now=time.time() - 100)
    slots.activate("b", now=time.time() - 1)
    slots.data_dir.mkdir(parents=True)
    # the slot's code would name its own folder; this test's code stands in for it
    code = slots.slot_dir("b")
    task = asyncio.create_task(systemd.companion(lambda: 1, slots.data_dir, code_dir=code))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if (slots.data_dir / systemd.HEALTH_FILE).exists():
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert slots.health_check().outcome == "committed"
    assert slots.link("committed") == "b"
