"""Telling systemd how the unit runs: sd_notify READY/WATCHDOG/STATUS, and the health file.

``polewatch.service`` is ``Type=notify`` with ``WatchdogSec=``: the unit says READY=1 when it
runs and WATCHDOG=1 from its asyncio loop at half the watchdog interval, so a hung loop is killed
and restarted by systemd. The protocol is one datagram per message to the unix socket named by
``$NOTIFY_SOCKET`` (``@`` for the abstract namespace); without that variable (not under systemd)
every call is a no-op.

The health file (``DATA_DIR/health.json``) tells the A/B health check (``polewatch slot
health-check``) which release's code is running, since when, and how many heartbeats the
receiver has acknowledged; a release on trial is committed only on that evidence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
# The folder the running code was imported from (a release slot on a unit), fixed at import:
# the 'current' link may be switched to another slot while this process still runs the old one.
CODE_DIR = Path(__file__).resolve().parents[1]
HEALTH_EVERY_S = 15.0  # the health file is rewritten at least this often (staleness = hung)


def notify(message: str, socket_path: str | None = None) -> bool:
    """Send one sd_notify message (e.g. ``READY=1``); False when not under systemd."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        logger.warning("sd_notify to %s failed: %s", path, exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of systemd's watchdog timeout for this process, or None when there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


def write_health(path: Path, info: dict[str, Any]) -> None:
    """Replace the health file atomically (a reader never sees half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(info, sort_keys=True))
    os.replace(tmp, path)


def read_health(path: Path) -> dict[str, Any] | None:
    """The last health report, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def companion(
    acknowledged: Callable[[], int],
    data_dir: Path,
    alive: Callable[[], bool] | None = None,
    health_every_s: float = HEALTH_EVERY_S,
    code_dir: Path = CODE_DIR,
) -> None:
    """Run beside the unit runtime: READY=1, WATCHDOG=1 pings, STATUS= and the health file.

    ``acknowledged`` counts the heartbeats the receiver acknowledged; ``alive`` (optional) may
    veto a watchdog ping, so that a stalled pipeline is restarted even if the loop turns;
    ``code_dir`` is the release the process runs (its own). Cancel it when the runtime stops.
    """
    started = time.time()
    path = data_dir / HEALTH_FILE
    ping_s = watchdog_interval_s()
    tick = min(ping_s, health_every_s) if ping_s else health_every_s
    notify("READY=1")
    last_count, last_write = -1, 0.0
    try:
        while True:
            now = time.time()
            count = acknowledged()
            if count != last_count or now - last_write >= health_every_s:
                info = {
                    "pid": os.getpid(),
                    "code": str(code_dir),
                    "started_s": started,
                    "updated_s": now,
                    "heartbeats_acknowledged": count,
                }
                try:
                    write_health(path, info)
                except OSError as exc:
                    logger.warning("cannot write %s: %s", path, exc)
                if count != last_count:
                    notify(f"STATUS=running; {count} heartbeat(s) acknowledged")
                last_count, last_write = count, now
            if ping_s and (alive is None or alive()):
                notify("WATCHDOG=1")
            await asyncio.sleep(min(tick, 1.0) if count == 0 else tick)
    finally:
        notify("STOPPING=1")
