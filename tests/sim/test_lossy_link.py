"""Through a bad link, every alarm arrives exactly once.

10 units raise 500 alarms over a link that loses 30% of datagrams each way, duplicates 5%,
reorders them (jitter), and is down for 10 minutes of simulated time in the middle.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from firmware.clock import SimClock
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.fleet import LightUnit
from sim.link import Impairment, UdpRelay

UNITS, ALARMS_PER_UNIT = 10, 50
SPEED = 100.0  # simulated seconds per real second (CoAP timers scale with it)
START = 1_800_000_000.0


async def test_500_alarms_from_10_units_arrive_exactly_once(tmp_path: Path) -> None:
    clock = SimClock(START, speed=SPEED)
    receiver = Receiver(tmp_path / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    bad = Impairment(loss=0.30, duplicate=0.05, delay_s=0.001, jitter_s=0.006)
    outage = (START + 120.0, START + 720.0)  # 10 minutes, simulated
    link = UdpRelay(("127.0.0.1", 0), ("127.0.0.1", receiver.coap.port), up=bad, down=bad,
                    outages=[outage], clock=clock, seed=7)  # fmt: skip
    await link.start()
    endpoint = ReceiverEndpoint(host="127.0.0.1", port=link.listen[1])
    config = UplinkConfig(retry_initial_s=2.0, retry_max_s=60.0)
    units = [
        LightUnit(f"pole-{n:04d}", tmp_path / f"u{n}", endpoint, clock, config, tmp_path / "rx")
        for n in range(UNITS)
    ]
    rng = random.Random(11)
    raised: list[str] = []

    async def script(unit: LightUnit) -> None:
        # Alarms spread over the first 8 simulated minutes: before, during and after the outage.
        times = sorted(rng.uniform(0, 480) for _ in range(ALARMS_PER_UNIT))
        for t in times:
            await clock.sleep_until(START + t)
            raised.append(unit.raise_alarm())

    for unit in units:
        unit.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(script(u) for u in units)), 60)
        assert len(raised) == UNITS * ALARMS_PER_UNIT
        drained = await asyncio.wait_for(asyncio.gather(*(u.uplink.drain(120) for u in units)), 150)
        assert all(drained), [u.uplink.outbox.depth() for u in units]
    finally:
        for unit in units:
            await unit.stop()
        await link.stop()
    store = receiver.require_store()
    try:
        refs = [a.ref for a in store.alarms(10_000)]
        assert sorted(refs) == sorted(raised)  # every one, and no other
        assert store.message_count() == len(raised)  # nothing stored twice
        # The link really was bad.
        assert link.stats.up_dropped > 100 and link.stats.down_dropped > 100
        assert link.stats.up_duplicated > 10 and link.stats.down_duplicated > 10
    finally:
        await receiver.stop()
