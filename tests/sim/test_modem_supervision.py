"""Modem supervision against a simulated EC25 / SIM7600 on a pty: the ``at`` backend reads every
field; missing SIM, no registration and a hung AT port drive the state machine; resets are
counted and rate-limited; MODEM faults are raised and cleared; the state reaches the receiver in
heartbeats and shows on the console."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from firmware.clock import SimClock, SystemClock
from firmware.config.board import ModemAt, ModemSim
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from firmware.hal import registry
from firmware.hal.base import Modem
from firmware.hal.modem import AtModem, ModemSilent
from firmware.hal.registry import HalContext
from firmware.hal.sim import SimModem
from firmware.uplink import protocol
from firmware.uplink.faults import Faults
from firmware.uplink.heartbeat import UnitStatus
from firmware.uplink.modem import LinkState, ModemSupervisor
from firmware.uplink.stack import Uplink
from host_tools.provision.oscore import provision_oscore
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.modem import Fault, SimulatedModem

START = 1_800_000_000.0
POWER_KEY = 17
BOOT_S = 0.2  # the simulated modem's silence while it reboots (real time)
AT_TIMEOUT_S = 0.3  # a hung port is found out sooner than on a pole


def wait_for(predicate: Callable[[], object], limit_s: float = 10.0) -> None:
    """Wait (real time) until ``predicate()`` holds; fail after ``limit_s``."""
    for _ in range(int(limit_s / 0.02)):
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


class FaultLog:
    """The faults' commit: builds each message as the outbox would, and keeps it."""

    def __init__(self) -> None:
        self.messages: list[protocol.Message] = []
        self._ids = iter(range(1, 1_000_000))

    def commit(self, build: Callable[[int], protocol.Message], priority: int, ref: str) -> int:
        msg_id = next(self._ids)
        msg = build(msg_id)
        protocol.decode(protocol.encode(msg))  # what would go on the wire is valid
        self.messages.append(msg)
        return msg_id

    def kinds(self) -> list[str]:
        return [type(m).__name__ for m in self.messages]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture(params=["ec25", "sim7600"])
def sim_modem(request: pytest.FixtureRequest, factory: MockFactory) -> Iterator[SimulatedModem]:
    with SimulatedModem(request.param, boot_s=BOOT_S) as modem:
        modem.watch_power_key(factory.pin(POWER_KEY))
        yield modem


@pytest.fixture
def at_modem(sim_modem: SimulatedModem, factory: MockFactory) -> Iterator[AtModem]:
    config = ModemAt(
        backend="at", port=sim_modem.port, power_key_pin=POWER_KEY, power_key_pulse_s=0.1
    )
    ctx = HalContext(clock=SystemClock(), extras={"pin_factory": factory})
    modem = registry.create("modem", "modem", config, ctx)
    assert isinstance(modem, AtModem)
    modem.at.timeout_s = AT_TIMEOUT_S
    yield modem
    modem.close()


def booted(sim_modem: SimulatedModem) -> None:
    wait_for(lambda: not sim_modem.booting)


# --- the at backend -------------------------------------------------------------------------


def test_at_modem_reads_every_field(sim_modem: SimulatedModem, at_modem: AtModem) -> None:
    sim_modem.operator, sim_modem.csq, sim_modem.rsrp_dbm, sim_modem.rsrq_db = (
        "Vodafone",
        15,
        -101,
        -13,
    )
    status = at_modem.status()
    assert status.sim == "READY"
    assert status.registered and status.registration == "home"
    assert status.operator == "Vodafone"
    assert status.rssi_dbm == -113 + 2 * 15
    assert (status.rsrp_dbm, status.rsrq_db, status.technology) == (-101, -13, "LTE")
    assert at_modem.vendor == {"ec25": "quectel", "sim7600": "simcom"}[sim_modem.flavour]


@pytest.mark.parametrize(
    ("fault", "sim", "registration"),
    [
        (Fault.NO_SIM, "NOT INSERTED", None),
        (Fault.SEARCHING, "READY", "searching"),
        (Fault.DENIED, "READY", "denied"),
    ],
)
def test_at_modem_reports_faults(
    sim_modem: SimulatedModem, at_modem: AtModem, fault: Fault, sim: str, registration: str | None
) -> None:
    sim_modem.set_fault(fault)
    status = at_modem.status()
    assert not status.registered
    assert (status.sim, status.registration, status.operator) == (sim, registration, None)
    assert status.rsrp_dbm is None


def test_hung_port_is_silent_until_the_power_key(
    sim_modem: SimulatedModem, at_modem: AtModem, factory: MockFactory
) -> None:
    sim_modem.set_fault(Fault.HUNG, until_reset=True)
    with pytest.raises(ModemSilent, match="no answer"):
        at_modem.status()
    at_modem.reset(hard=True)
    assert factory.pin(POWER_KEY).state == 0  # the key is released again
    wait_for(lambda: sim_modem.reboots == ["power-key"])
    booted(sim_modem)
    assert at_modem.status().registered


def test_soft_reset_reboots_by_command(sim_modem: SimulatedModem, at_modem: AtModem) -> None:
    at_modem.reset(hard=False)
    assert sim_modem.reboots == ["cfun"]
    with pytest.raises(ModemSilent):
        at_modem.status()  # silent while it boots
    booted(sim_modem)
    assert at_modem.status().registered


def test_a_hung_port_without_a_power_key_says_so(sim_modem: SimulatedModem) -> None:
    ctx = HalContext(clock=SystemClock())
    modem = AtModem("modem", ModemAt(backend="at", port=sim_modem.port), ctx)
    try:
        with pytest.raises(Exception, match=r"no modem\.power_key_pin"):
            modem.reset(hard=True)
    finally:
        modem.close()


# --- the state machine ------------------------------------------------------------------------


def supervisor(modem: Modem, clock: SimClock, log: FaultLog, **kw: float) -> ModemSupervisor:
    faults = Faults(clock, log.commit, iter(range(1, 1000)).__next__)
    timings = {"poll_s": 30.0, "unregistered_reset_s": 300.0, "hung_polls": 3} | kw
    return ModemSupervisor(modem, clock, faults, **timings)  # type: ignore[arg-type]


def test_faults_drive_the_state_machine_with_reasons(
    sim_modem: SimulatedModem, at_modem: AtModem, caplog: pytest.LogCaptureFixture
) -> None:
    clock, log = SimClock(START, speed=0), FaultLog()
    sup = supervisor(at_modem, clock, log)
    caplog.set_level(logging.INFO, logger="firmware.uplink.modem")

    assert sup.poll() == LinkState.REGISTERED
    assert sup.rssi_dbm == -71 and log.messages == []

    sim_modem.set_fault(Fault.NO_SIM)
    clock.advance(30)
    assert sup.poll() == LinkState.NO_SIM
    assert log.kinds() == ["Fault"]
    assert log.messages[0].code == protocol.FaultCode.MODEM  # type: ignore[attr-defined]

    sim_modem.set_fault(Fault.SEARCHING)
    clock.advance(30)
    assert sup.poll() == LinkState.SEARCHING
    for _ in range(9):  # 270 s unregistered: not yet reset
        clock.advance(30)
        assert sup.poll() == LinkState.SEARCHING
    assert sup.reset_count == 0 and sup.rssi_dbm is None
    clock.advance(30)
    sup.poll()  # 300 s: soft reset
    assert sup.reset_count == 1 and not sup.resets[-1].hard
    wait_for(lambda: sim_modem.reboots == ["cfun"])
    booted(sim_modem)

    sim_modem.set_fault(Fault.NONE)
    clock.advance(30)
    assert sup.poll() == LinkState.REGISTERED
    assert log.kinds() == ["Fault", "Restore"]

    sim_modem.set_fault(Fault.HUNG, until_reset=True)
    for _ in (1, 2):
        clock.advance(30)
        assert sup.poll() == LinkState.HUNG
    assert sup.reset_count == 1  # two silent polls: not yet
    clock.advance(30)
    sup.poll()  # the third: the power key
    assert sup.reset_count == 2 and sup.resets[-1].hard
    wait_for(lambda: sim_modem.reboots == ["cfun", "power-key"])
    booted(sim_modem)
    clock.advance(30)
    assert sup.poll() == LinkState.REGISTERED
    assert log.kinds() == ["Fault", "Restore", "Fault", "Restore"]

    path = [(t.old, t.new) for t in sup.transitions]
    assert path == [
        (LinkState.UNKNOWN, LinkState.REGISTERED),
        (LinkState.REGISTERED, LinkState.NO_SIM),
        (LinkState.NO_SIM, LinkState.SEARCHING),
        (LinkState.SEARCHING, LinkState.REGISTERED),
        (LinkState.REGISTERED, LinkState.HUNG),
        (LinkState.HUNG, LinkState.REGISTERED),
    ]
    reasons = [t.reason for t in sup.transitions]
    assert "Telekom.de" in reasons[0] and "SIM: NOT INSERTED" in reasons[1]
    assert "registration: searching" in reasons[2] and "no answer" in reasons[4]
    logged = caplog.text
    assert "modem no-sim -> searching: registration: searching" in logged
    assert "modem soft reset: not registered for 300 s" in logged
    assert "modem hard reset: no answer to 3 polls in a row" in logged


def test_resets_are_rate_limited(
    sim_modem: SimulatedModem, at_modem: AtModem, caplog: pytest.LogCaptureFixture
) -> None:
    clock, log = SimClock(START, speed=0), FaultLog()
    sup = supervisor(at_modem, clock, log, unregistered_reset_s=600, max_resets_per_hour=2)
    sim_modem.set_fault(Fault.DENIED)  # a reset does not help: it stays denied
    sup.poll()
    for _ in range(8):  # 80 min, a reset due every 10 min
        clock.advance(600)
        sup.poll()
        booted(sim_modem)
        sup.poll()  # back from the reboot, still denied
    # Resets at 10 and 20 min; 30..60 min held back; at 70 and 80 min the hour has moved on.
    assert [round(r.t - START) for r in sup.resets] == [600, 1200, 4200, 4800]
    assert len(sim_modem.reboots) == sup.reset_count == 4
    assert caplog.text.count("reset held back") == 1  # said once, not at every poll
    assert log.kinds() == ["Fault"]  # one open fault for the whole outage


def test_sim_backend_faults_drive_the_supervisor() -> None:
    clock, log = SimClock(START, speed=0), FaultLog()
    modem = SimModem("modem", ModemSim(backend="sim"), HalContext(clock=clock))
    sup = supervisor(modem, clock, log, hung_polls=2)
    assert sup.poll() == LinkState.REGISTERED
    modem.sim_present = False
    assert sup.poll() == LinkState.NO_SIM
    modem.sim_present, modem.hung = True, True
    assert sup.poll() == LinkState.HUNG
    sup.poll()
    assert sup.reset_count == 1 and sup.resets[0].hard and not modem.hung
    assert sup.poll() == LinkState.REGISTERED
    assert [h.value for h in modem.history.snapshot() if h.what == "reset"] == ["hard"]


def test_supervisor_timings_come_from_the_board_config() -> None:
    clock = SimClock(START, speed=0)
    config = ModemSim(backend="sim", poll_s=10, unregistered_reset_s=120, hung_polls=5,
                      max_resets_per_hour=1)  # fmt: skip
    sup = ModemSupervisor.from_config(SimModem("m", config, HalContext(clock=clock)), config, clock)
    assert (sup.poll_s, sup.unregistered_reset_s, sup.hung_polls, sup.max_resets_per_hour) == (
        10, 120, 5, 1,
    )  # fmt: skip


# --- heartbeats, receiver, console ------------------------------------------------------------


async def test_modem_state_reaches_the_receiver_in_heartbeats(
    tmp_path: Path, sim_modem: SimulatedModem, at_modem: AtModem
) -> None:
    """The unit's real uplink with the supervisor's state; the receiver keeps it per unit."""
    clock = SimClock(time.time(), speed=20.0)
    provision_oscore("pole-0009", tmp_path / "unit" / "oscore", tmp_path / "rx")
    receiver = Receiver(tmp_path / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None,
                        clock=clock)  # fmt: skip
    await receiver.start()
    sup: ModemSupervisor | None = None

    def status() -> UnitStatus:
        assert sup is not None
        return UnitStatus(rssi_dbm=sup.rssi_dbm, modem=sup.state.code,
                          modem_resets=sup.reset_count)  # fmt: skip

    uplink = Uplink(ReceiverEndpoint(host="127.0.0.1", port=receiver.coap.port),
                    UplinkConfig(reporting_time_s=30), tmp_path / "unit", clock,
                    lambda op, arg: (protocol.CommandStatus.DONE, None), status)  # fmt: skip
    sup = ModemSupervisor(at_modem, clock, uplink.faults, poll_s=1, hung_polls=2)
    sim_modem.set_fault(Fault.HUNG)  # hung for good: the power key does not help
    tasks = [asyncio.create_task(loop) for loop in [*uplink.loops(), sup.run()]]
    store = receiver.require_store()

    def health() -> dict[str, Any]:
        units = store.units()
        return (units[0]["health"] or {}) if units else {}

    try:
        for _ in range(1500):
            if health().get("modem") == "hung" and health().get("modem_resets", 0) >= 1:
                break
            await asyncio.sleep(0.02)
        assert health()["modem"] == "hung" and health()["modem_resets"] >= 1
        assert health()["rssi_dbm"] is None
        assert sim_modem.reboots[0] == "power-key"
        faults = [a for a in store.alarms() if a.source == "fault"]
        assert [f.event for f in faults] == ["fault:modem"]
        assert faults[0].detail is not None and faults[0].detail.startswith("modem hung")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await uplink.close()
        await receiver.stop()


async def test_a_hung_sim_modem_in_a_whole_unit(tmp_path: Path) -> None:
    """The unit runtime supervises the sim backend: fault raised, power-key reset, restored."""
    from sim.runner import build_sim_unit

    scenario = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "quiet_lot.toml"
    receiver = Receiver(tmp_path / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    try:
        unit = build_sim_unit(scenario, tmp_path / "unit", speed=0,
                              receiver=("127.0.0.1", receiver.coap.port),
                              receiver_keys=tmp_path / "rx")  # fmt: skip
        modem, sup = unit.runtime.devices.others["modem"], unit.runtime.modem
        assert isinstance(modem, SimModem) and sup is not None
        modem.hung, sup.poll_s = True, 10.0
        await unit.runtime.run(stop_at=unit.stop_at, drain_timeout_s=5)
        assert sup.reset_count == 1 and sup.resets[0].hard
        assert [t.new for t in sup.transitions] == [LinkState.HUNG, LinkState.REGISTERED]
        faults = [(a.event, a.unit_state) for a in receiver.require_store().alarms()]
        assert faults == [("fault:modem", "closed")]
    finally:
        await receiver.stop()
