"""Two receivers on one PostgreSQL behind a UDP load balancer; one is killed mid-run, and the
units lose nothing and nothing is stored twice.

Each receiver is its own process with its own copy of the key directory, as on two hosts; nginx's
stream module spreads the units' sessions over both. While 12 light units raise alarms, one
receiver gets SIGKILL: what it had in flight is retransmitted by CoAP (and retried by the
outbox) through the balancer to the survivor, which stores it or, where the dead one had already
committed it, recognises the duplicate by (unit, msg id) in the shared database.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware.clock import SystemClock
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from host_tools.provision.oscore import provision_oscore
from host_tools.receiver.store import ReceiverStore
from polewatch.bench_fleet import stored_alarms
from polewatch.bench_uplink import start_receiver_process, stop_receiver_process, udp_bound
from polewatch.netutil import free_port
from sim.fleet import LightUnit
from tests.helpers import poll_until
from tests.host_tools.udp_balancer import NginxUnavailable, UdpBalancer, find_nginx

UNITS = 12
ALARM_EVERY_S = 0.8  # per unit
RETRY = UplinkConfig(retry_initial_s=0.5, retry_max_s=2.0)  # the outbox retries soon


@pytest.fixture
def nginx() -> None:
    """Skip without nginx and its stream module (the UDP load balancer)."""
    try:
        find_nginx()
    except NginxUnavailable as exc:
        pytest.skip(f"no UDP load balancer: {exc}")


@pytest.fixture
def receivers(
    nginx: None, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[list[subprocess.Popen[bytes]], list[int], list[Path]]]:
    """The units provisioned, and two receiver processes on one database, each with its keys."""
    keys = [tmp_path / "rx-a", tmp_path / "rx-b"]
    for n in range(UNITS):
        provision_oscore(f"pole-{n:04d}", tmp_path / "units" / f"pole-{n:04d}" / "oscore", keys[0])
    # Its own copy, as on another host (aiocoap also locks a context directory while it is open).
    shutil.copytree(keys[0], keys[1])
    ports = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for instance, (port, key_dir) in enumerate(zip(ports, keys, strict=True)):
            # Each its own instance number: its own range of OSCORE sequence numbers.
            procs.append(
                start_receiver_process(postgres_url, port, keys=key_dir, instance=instance)
            )
        yield procs, ports, keys
    finally:
        for proc in procs:
            stop_receiver_process(proc)


def stored(url: str) -> tuple[Counter[tuple[str, int]], Counter[tuple[str, int]], list[float]]:
    """How often each (unit, alarm id) and each (unit, msg id) of an alarm was stored, and when
    each message was received (the receivers' clocks)."""
    alarms, msgs = stored_alarms(url)
    store = ReceiverStore(url)
    try:
        received = store.read(lambda c: c.execute("SELECT received_at FROM messages").fetchall())
    finally:
        store.close()
    return alarms, msgs, [float(r[0]) for r in received]


async def test_a_receiver_killed_mid_run_loses_and_duplicates_nothing(
    receivers: tuple[list[subprocess.Popen[bytes]], list[int], list[Path]],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    (victim, survivor), (victim_port, survivor_port), keys = receivers
    balancer = UdpBalancer(tmp_path / "nginx", free_port(), [victim_port, survivor_port]).start()
    endpoint = ReceiverEndpoint(host="127.0.0.1", port=balancer.port)
    clock = SystemClock()
    units = [
        LightUnit(f"pole-{n:04d}", tmp_path / "units" / f"pole-{n:04d}", endpoint, clock, RETRY)
        for n in range(UNITS)
    ]
    acked: Counter[tuple[str, int]] = Counter()  # what the units took as acknowledged, per msg

    def on_ack(unit_id: str) -> Callable[[str, int], None]:
        return lambda _ref, msg_id: acked.update([(unit_id, msg_id)])

    raising = True
    rng = random.Random(9)

    async def script(unit: LightUnit) -> None:
        await asyncio.sleep(rng.uniform(0, ALARM_EVERY_S))  # the units' alarms spread out
        while raising:
            unit.raise_alarm()
            await asyncio.sleep(ALARM_EVERY_S)

    def acked_alarms() -> int:
        return sum(1 for u in units for _, msg_id in u.raised if (u.unit_id, msg_id) in acked)

    def diagnosis() -> str:
        logs = [(k / f"receiver-{p}.log") for k, p in zip(keys, (victim_port, survivor_port),
                                                          strict=True)]  # fmt: skip
        tails = [f"{log.name}: {log.read_text(errors='replace')[-1500:]}" for log in logs
                 if log.exists()]  # fmt: skip
        depth = {u.unit_id: u.uplink.outbox.depth() for u in units}
        return f"outboxes {depth}; nginx: {balancer.log()[-1500:]}; " + "; ".join(tails)

    for unit in units:
        unit.uplink.sender.on_acknowledged = on_ack(unit.unit_id)
        unit.start()
    scripts = [asyncio.create_task(script(u)) for u in units]
    try:
        # Both receivers take sessions (round robin) and acknowledge alarms before the kill.
        await poll_until(lambda: acked_alarms() >= 3 * UNITS, 60)
        before = balancer.sessions()
        assert before[victim_port] > 0 and before[survivor_port] > 0, before
        killed_at = time.time()
        victim.kill()  # SIGKILL: no goodbye, whatever it had in hand is lost with it
        victim.wait(10)
        raised_at_kill = {u.unit_id: len(u.raised) for u in units}
        # Keep raising until alarms raised after the kill are acknowledged by every unit: the
        # dead receiver's units have failed over to the survivor.
        await poll_until(
            lambda: all(
                any((u.unit_id, m) in acked for _, m in u.raised[raised_at_kill[u.unit_id] + 2 :])
                for u in units
            ),
            90,
        )
        raising = False
        await asyncio.gather(*scripts)
        try:
            await poll_until(lambda: all(u.uplink.outbox.depth() == 0 for u in units), 120)
        except AssertionError:
            pytest.fail(f"outboxes not drained: {diagnosis()}")
        after = balancer.sessions()
    finally:
        raising = False
        for task in scripts:
            task.cancel()
        await asyncio.gather(*scripts, return_exceptions=True)
        for unit in units:
            await unit.stop()
        balancer.stop()

    # The killed receiver really is dead; the survivor lives and took the dead one's units.
    assert victim.returncode == -signal.SIGKILL
    assert not udp_bound(victim_port)
    assert survivor.poll() is None, diagnosis()
    assert after[survivor_port] > before[survivor_port], (before, after)

    raised = [(u.unit_id, alarm_id, msg_id) for u in units for alarm_id, msg_id in u.raised]
    alarms, msgs, received = stored(postgres_url)
    lost = [r for r in raised if (r[0], r[1]) not in alarms or (r[0], r[2]) not in msgs]
    assert lost == [], diagnosis()
    assert {a for a, n in alarms.items() if n > 1} == set()  # no (unit, alarm id) twice
    assert {m for m, n in msgs.items() if n > 1} == set()  # no (unit, msg id) twice
    assert set(alarms) == {(unit, alarm_id) for unit, alarm_id, _ in raised}  # and no other
    # Each unit took every alarm as acknowledged exactly once.
    assert {(unit, msg_id): acked[(unit, msg_id)] for unit, _, msg_id in raised} == {
        (unit, msg_id): 1 for unit, _, msg_id in raised
    }
    # Messages kept coming in after the kill (the survivor's), and alarms were raised after it.
    assert any(t > killed_at for t in received)
    assert sum(len(u.raised) - raised_at_kill[u.unit_id] for u in units) >= 2 * UNITS
