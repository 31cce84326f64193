"""A unit killed with SIGKILL between commit and acknowledgement delivers the alarm exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from host_tools.provision.oscore import provision_oscore
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.link import UdpRelay

REPO = Path(__file__).resolve().parents[2]


def outbox_rows(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT msg_id, ref FROM outbox").fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        db.close()


async def start_unit(
    scenario: str, link_port: int, data_dir: Path, *extra: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "polewatch",
        "sim",
        scenario,
        "--receiver",
        f"127.0.0.1:{link_port}",
        "--data-dir",
        str(data_dir),
        *extra,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.mark.parametrize("lost", ["ack", "request"])
async def test_sigkill_before_ack_delivers_exactly_once(tmp_path: Path, lost: str) -> None:
    data = tmp_path / "unit"
    provision_oscore("pole-0001", data / "oscore", tmp_path)
    receiver = Receiver(tmp_path / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    link = UdpRelay(
        ("127.0.0.1", free_port()),
        ("127.0.0.1", receiver.coap.port),
        drop_up=lost == "request",
        drop_down=lost == "ack",
    )
    await link.start()
    outbox = data / "outbox.sqlite"
    store = receiver.store
    assert store is not None
    unit = await start_unit("car_fire", link.listen[1], data)
    try:
        await wait_for(lambda: outbox_rows(outbox) != [])
        if lost == "ack":  # the receiver committed it; only the acknowledgement got lost
            await wait_for(lambda: store.message_count() == 1)
        else:
            await wait_for(lambda: link.stats.up_dropped > 0)
        os.kill(unit.pid, signal.SIGKILL)
        await unit.wait()
        [(msg_id, ref)] = outbox_rows(outbox)  # committed, never acknowledged
        link.drop_up = link.drop_down = False
        again = await start_unit("quiet_lot", link.listen[1], data, "--duration", "3")
        out, _ = await asyncio.wait_for(again.communicate(), 120)
        assert again.returncode == 0, out.decode()
        assert outbox_rows(outbox) == []
        alarms = store.alarms()
        assert [a.ref for a in alarms] == [ref]
        assert [e["phase"] for e in store.timeline(alarms[0].id)] == ["open"]
        assert store.message_count() == 1
        if lost == "ack":
            assert f"msg {msg_id} acknowledged by receiver (duplicate)" in out.decode()
    finally:
        if unit.returncode is None:
            unit.kill()
            await unit.wait()
        await link.stop()
        await receiver.stop()
