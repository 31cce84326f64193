"""Acceptance: provision + bundle + flash into a directory, then run the unit from that tree.

The receiver runs before the unit is registered (through its console's registration API, logged
in as a technician), so it also shows that a running receiver takes a newly provisioned unit
without a restart. The unit is started as its
systemd unit would start it: ``python -m polewatch unit`` with the slot as PYTHONPATH, the
installed configs and the installed OSCORE context, on the sim board.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from host_tools.provision.identity import SiteValues, provision_unit
from host_tools.provision.install import verify_installed
from host_tools.provision.signing import load_public_key
from host_tools.provision.slots import Slots
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.cli import main
from polewatch.netutil import free_port
from tests.host_tools.console_helpers import PASSWORD
from tests.provision.provision_helpers import SIM_BOARD, add_console_user


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, str]]:
    """A running receiver on loopback with its console (and a technician), and the console URL."""
    console = Endpoint("127.0.0.1", free_port(socket.SOCK_STREAM))
    rx = Receiver(tmp_path / "receiver" / "r.sqlite", Endpoint("127.0.0.1", free_port()), console)
    (tmp_path / "receiver").mkdir()
    await rx.start()
    add_console_user(rx.require_store(), "technician", "tech")
    assert rx.console_url is not None
    yield rx, rx.console_url
    await rx.stop()


async def test_provisioned_bundled_flashed_unit_reaches_the_receiver(
    tmp_path: Path,
    receiver: tuple[Receiver, str],
    wheel: Path,
    fleet_key_files: tuple[Path, Path],
) -> None:
    rx, url = receiver
    laptop = tmp_path / "laptop" / "pole-0500"
    values = SiteValues("pole-0500", "127.0.0.1", rx.coap.port, name="Acceptance")
    done = await asyncio.to_thread(
        provision_unit,
        "pole-0500",
        laptop / "oscore",
        receiver_url=url,
        user="tech",
        password=PASSWORD,
        site_out=laptop / "site.toml",
        site_values=values,
        board=SIM_BOARD,
    )
    bundle = tmp_path / "pole-0500.pwb"
    private, public = (str(p) for p in fleet_key_files)
    build = ["bundle", "--board", str(SIM_BOARD), "--site", str(laptop / "site.toml")]
    build += ["--signing-key", private, "--wheel", str(wheel), "--release", "1", "-o", str(bundle)]
    assert await asyncio.to_thread(main, build) == 0
    root = tmp_path / "sd"
    root.mkdir()
    flash = ["flash", str(bundle), "--root", str(root), "--fleet-key", public]
    assert await asyncio.to_thread(main, [*flash, "--identity", str(laptop / "oscore")]) == 0

    # the tree's signature verifies
    slot = Slots(root).slot_dir("a")
    assert verify_installed(slot, load_public_key(fleet_key_files[1]))["unit"] == "pole-0500"

    # start the unit from the tree, as polewatch.service does (paths under the card's root)
    current = root / "opt/polewatch/current"
    env = {**os.environ, "PYTHONPATH": str(current), "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    where = subprocess.run(
        [sys.executable, "-c", "import firmware, polewatch; print(firmware.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where == str(current / "firmware" / "__init__.py")  # the flashed code, not ours
    cmd = [sys.executable, "-m", "polewatch", "unit", "--log-level", "INFO"]
    cmd += ["--board", str(current / "config/board.toml")]
    cmd += ["--site", str(current / "config/site.toml")]
    cmd += ["--data-dir", str(root / "var/lib/polewatch")]
    log = (tmp_path / "unit.log").open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    store = rx.require_store()
    try:
        for _ in range(600):  # up to 60 s: the first heartbeat goes out as soon as it runs
            units = await asyncio.to_thread(store.units)
            if any(u["unit_id"] == "pole-0500" for u in units) or proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        log.close()
    text = (tmp_path / "unit.log").read_text()
    assert [u["unit_id"] for u in await asyncio.to_thread(store.units)] == ["pole-0500"], text
    assert code == 0, text
    assert "unit pole-0500 starting: board sim" in text
    # the receiver knew it by the key id it allocated at provisioning, and nothing was refused
    assert rx.keys is not None and done.kid in rx.keys.by_kid
    assert rx.rejects.total == 0

    # an update with one byte changed is refused, and the card is left as it was
    build[-3:] = ["2", "-o", str(tmp_path / "r2.pwb")]
    assert await asyncio.to_thread(main, build) == 0
    data = bytearray((tmp_path / "r2.pwb").read_bytes())
    data[len(data) // 2] ^= 0x20
    (tmp_path / "bad.pwb").write_bytes(bytes(data))
    before = sorted(p.name for p in (root / "opt/polewatch/slots").iterdir())
    bad = ["flash", str(tmp_path / "bad.pwb"), "--root", str(root), "--fleet-key", public]
    assert await asyncio.to_thread(main, bad) == 2
    assert sorted(p.name for p in (root / "opt/polewatch/slots").iterdir()) == before
    # the good update goes on trial; no healthy report comes in time, so it is rolled back
    good = ["flash", str(tmp_path / "r2.pwb"), "--root", str(root), "--fleet-key", public]
    assert await asyncio.to_thread(main, [*good, "--trial-timeout", "0"]) == 0
    slots = Slots(root)
    assert slots.link("current") == "b" and slots.release("b") == "2"
    assert await asyncio.to_thread(main, ["slot", "health-check", "--root", str(root)]) == 1
    assert slots.link("current") == "a" and slots.release("a") == "1"
    assert slots.state()["failed"]["release"] == "2"
