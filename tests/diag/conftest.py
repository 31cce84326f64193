"""A simulated unit with its diagnostics console on one end of a socat pty pair, the laptop's
end free for the client, and a real receiver on loopback for the uplink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.runner import SimUnit, build_sim_unit
from tests.helpers import poll_until

REPO = Path(__file__).resolve().parents[2]
SPEED = 5.0  # simulated seconds per real second: a 2 s output test takes 0.4 s

# The parking lot's site, with limits for the strobe and a rule that needs the thermal model.
SITE_EXTRA = """
[deterrence.limits.strobe]
max_on_s = 30

[[rules]]
name = "person-in-lot"
event = "person"
zones = ["lot"]
priority = 5
"""


def write_configs(where: Path, diag_port: str, coap_port: int) -> tuple[Path, Path, Path]:
    """Board (sim + [diag]), site (for the receiver on ``coap_port``) and a quiet-lot scenario
    using them; their paths."""
    where.mkdir(parents=True, exist_ok=True)
    board = where / "board.toml"
    board.write_text(
        (REPO / "board_configs" / "sim.toml").read_text()
        + f'\n[diag]\nport = "{diag_port}"\nbaudrate = 115200\n'
    )
    site = where / "site.toml"
    text = (REPO / "sim" / "sites" / "parking_lot.toml").read_text()
    site.write_text(text.replace("port = 5683", f"port = {coap_port}") + SITE_EXTRA)
    scenario = where / "scenario.toml"
    text = (REPO / "sim" / "scenarios" / "quiet_lot.toml").read_text()
    text = text.replace('site = "../sites/parking_lot.toml"', f'site = "{site}"')
    text = text.replace('board = "sim"', f'board = "{board}"')
    scenario.write_text(text)
    return board, site, scenario


@dataclass
class DiagUnit:
    """A running simulated unit and the laptop's end of its console line."""

    sim: SimUnit
    port: str
    receiver: Receiver
    board_path: Path
    site_path: Path


@pytest.fixture
async def diag_unit(
    tmp_path: Path, pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> AsyncIterator[DiagUnit]:
    """The unit runs (23:00 on a quiet November night in the parking lot) until the test ends."""
    caplog.set_level(logging.INFO)  # what 'log tail' shows
    unit_end, laptop_end = pty_pair
    receiver = Receiver(tmp_path / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    board, site, scenario = write_configs(tmp_path / "configs", unit_end, receiver.coap.port)
    sim = build_sim_unit(
        scenario,
        tmp_path / "unit",
        SPEED,
        receiver=("127.0.0.1", receiver.coap.port),
        receiver_keys=tmp_path / "rx",
    )
    sim.runtime.config_files = (board, site)
    run = asyncio.create_task(sim.runtime.run(stop_at=sim.start + 3600))
    try:
        diag = sim.runtime.diag
        assert diag is not None
        await poll_until(lambda: diag.open or run.done())
        yield DiagUnit(sim, laptop_end, receiver, board, site)
    finally:
        sim.runtime.request_stop()
        await run
        await receiver.stop()
