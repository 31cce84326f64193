"""Supervision and downlink, in simulated time: offline within the reporting time, restored on
return; an operator command reaches a unit behind a NAT within one heartbeat interval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware.clock import SimClock
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from firmware.uplink import protocol
from firmware.uplink.heartbeat import heartbeat_interval
from host_tools.provision.oscore import provision_oscore
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.fleet import LightUnit
from sim.link import UdpRelay

SPEED = 20.0
START = 1_800_000_000.0
REPORTING_S = 30.0  # the shortest a site may set


@dataclass
class Rig:
    clock: SimClock
    receiver: Receiver
    link: UdpRelay
    tmp: Path

    def unit(self) -> LightUnit:
        endpoint = ReceiverEndpoint(host="127.0.0.1", port=self.link.listen[1])
        config = UplinkConfig(reporting_time_s=REPORTING_S)
        return LightUnit("pole-0007", self.tmp / "unit", endpoint, self.clock, config,
                         self.tmp / "rx")  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = SimClock(START, speed=SPEED)
    provision_oscore("pole-0007", tmp_path / "unit" / "oscore", tmp_path / "rx")
    receiver = Receiver(tmp_path / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None,
                        supervise_every_s=0.05, clock=clock)  # fmt: skip
    await receiver.start()
    # The relay answers a unit only on the address it sent from, as a carrier NAT does: the
    # receiver cannot reach the unit except in answer to its own requests.
    link = UdpRelay(("127.0.0.1", 0), ("127.0.0.1", receiver.coap.port))
    await link.start()
    yield Rig(clock, receiver, link, tmp_path)
    await link.stop()
    await receiver.stop()


async def wait_until(clock: SimClock, predicate, limit_s: float) -> float:  # type: ignore[no-untyped-def]
    """Simulated seconds until ``predicate()`` holds; fail after ``limit_s`` simulated."""
    start = clock.now()
    while not predicate():
        assert clock.now() - start < limit_s, f"not within {limit_s} simulated seconds"
        await asyncio.sleep(0.01)
    return clock.now() - start


async def test_offline_within_reporting_time_and_restored_on_return(rig: Rig) -> None:
    store = rig.receiver.require_store()
    unit = rig.unit()
    unit.start()
    await wait_until(rig.clock, lambda: bool(store.units()), 5)
    await unit.stop()  # the unit goes silent
    silent_at = rig.clock.now()
    await wait_until(rig.clock, lambda: not store.units()[0]["online"], REPORTING_S + 10)
    offline_after = rig.clock.now() - store.units()[0]["last_heard"]
    assert REPORTING_S <= offline_after <= REPORTING_S + 10
    [entry] = [a for a in store.alarms() if a.source == "offline"]
    assert entry.ref == "pole-0007/L1" and entry.unit_state == "open" and entry.priority == 2
    assert rig.clock.now() - silent_at >= REPORTING_S - heartbeat_interval(REPORTING_S)

    back = rig.unit()  # the unit returns (a restart: a heartbeat at once)
    back.start()
    try:
        await wait_until(rig.clock, lambda: store.units()[0]["online"], 5)
        [entry] = [a for a in store.alarms() if a.source == "offline"]
        assert entry.unit_state == "closed"
    finally:
        await back.stop()


async def test_command_reaches_a_unit_behind_nat_within_one_heartbeat(rig: Rig) -> None:
    store = rig.receiver.require_store()
    unit = rig.unit()
    unit.start()
    try:
        await wait_until(rig.clock, lambda: bool(store.units()), 5)
        queued_at = rig.clock.now()
        cmd = rig.receiver.queue_command("pole-0007", protocol.CommandOp.TRIGGER, "fire", 600)
        await wait_until(rig.clock, lambda: bool(unit.executed), 60)
        # On the answer to the next heartbeat: one interval at most, plus that round trip
        # (5 ms on loopback, 0.1 s at this speed).
        assert unit.executed_at[0] - queued_at <= heartbeat_interval(REPORTING_S) + 0.5
        assert unit.executed == [(protocol.CommandOp.TRIGGER, "fire")]
        await wait_until(rig.clock, lambda: store.commands()[0].state == "done", 30)
        [done] = store.commands()
        assert done.id == cmd.id and done.op == "trigger" and done.arg == "fire"
        # Delivered once, carried out once, even if it rode on more than one acknowledgement.
        await asyncio.sleep(heartbeat_interval(REPORTING_S) / SPEED * 2)
        assert unit.executed == [(protocol.CommandOp.TRIGGER, "fire")]
    finally:
        await unit.stop()


async def test_expired_command_is_not_delivered(rig: Rig) -> None:
    store = rig.receiver.require_store()
    unit = rig.unit()
    unit.start()
    try:
        await wait_until(rig.clock, lambda: bool(store.units()), 5)
        rig.receiver.queue_command("pole-0007", protocol.CommandOp.SILENCE, None, ttl_s=1)
        await wait_until(rig.clock, lambda: store.commands()[0].state == "expired", 60)
        assert unit.executed == []
    finally:
        await unit.stop()


async def test_a_unit_stops_even_when_woken_as_it_is_stopped(rig: Rig) -> None:
    # A wake-up and the stop in the same loop turn: asyncio.wait_for on Python 3.11 returns the
    # waited result and drops the cancellation, so the delivery loop would run on forever.
    store = rig.receiver.require_store()
    unit = rig.unit()
    unit.start()
    await wait_until(rig.clock, lambda: bool(store.units()), 5)
    await asyncio.sleep(0.1)  # the outbox is empty: the sender waits for a wake-up
    unit.uplink.sender.notify()
    await asyncio.wait_for(unit.stop(), 10)  # TimeoutError if a loop ignored the stop
