"""Uplink figures for ``make bench``: bytes on the wire, monthly data, ingest rate, latency."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from firmware.clock import SystemClock
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from firmware.errors import NetworkError
from firmware.uplink import protocol
from firmware.uplink.client import UplinkClient
from firmware.uplink.heartbeat import heartbeat_interval
from host_tools.provision.oscore import provision_oscore
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from host_tools.receiver.store import AlarmRecord
from polewatch.netutil import free_port
from sim.fleet import LightUnit
from sim.link import UdpRelay

logger = logging.getLogger(__name__)

IP_UDP_HEADERS = 20 + 8  # IPv4 and UDP, per datagram
MONTH_S = 30 * 24 * 3600


def typical_alarm(msg_id: int, alarm_id: int) -> protocol.Alarm:
    """A fire alarm's open with zone, temperature and box: the typical alarm."""
    return protocol.Alarm(msg_id=msg_id, time_s=round(time.time()), alarm_id=alarm_id,
                          zone="lot", max_temp_dc=1402, box=(40, 60, 52, 71))  # fmt: skip


def typical_heartbeat(msg_id: int) -> protocol.Heartbeat:
    """A healthy unit's heartbeat at the default reporting time."""
    return protocol.Heartbeat(msg_id=msg_id, time_s=round(time.time()), next_due_s=60,
                              reporting_s=180, queued=0, rssi_dbm=-71, mode=protocol.MODE_ARMED,
                              faults=0)  # fmt: skip


async def wire_sizes(tmp: Path) -> dict[str, float]:
    """UDP payload sizes of a typical alarm and heartbeat, and of their acknowledgements."""
    provision_oscore("pole-0001", tmp / "unit" / "oscore", tmp / "rx")
    receiver = Receiver(tmp / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    up: list[int] = []
    down: list[int] = []
    link = UdpRelay(("127.0.0.1", 0), ("127.0.0.1", receiver.coap.port),
                    tap=lambda data, _addr: up.append(len(data)),
                    tap_down=lambda data, _addr: down.append(len(data)))  # fmt: skip
    await link.start()
    client = UplinkClient(ReceiverEndpoint(host="127.0.0.1", port=link.listen[1]),
                          tmp / "unit" / "oscore")  # fmt: skip
    try:
        await client.send(protocol.encode(typical_alarm(1234, 57)))
        alarm_up, alarm_down = up[-1], down[-1]
        await client.send(protocol.encode(typical_heartbeat(1235)), reliable=False)
        hb_up, hb_down = up[-1], down[-1]
    finally:
        await client.close()
        await link.stop()
        await receiver.stop()
    beats = MONTH_S / heartbeat_interval(UplinkConfig().reporting_time_s)
    monthly = beats * (hb_up + hb_down + 2 * IP_UDP_HEADERS)
    return {"alarm_wire_bytes": alarm_up, "alarm_ack_wire_bytes": alarm_down,
            "heartbeat_wire_bytes": hb_up, "heartbeat_ack_wire_bytes": hb_down,
            "monthly_bytes_per_unit": monthly}  # fmt: skip


async def latency(tmp: Path, alarms: int = 300) -> dict[str, float]:
    """Commit at the unit to commit at the receiver, one alarm at a time, on loopback."""
    receiver = Receiver(tmp / "lat" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    committed: dict[str, float] = {}

    def hook(rec: AlarmRecord, _msg: protocol.Message | None) -> None:
        committed.setdefault(rec.ref, time.perf_counter())

    receiver.hooks.append(hook)
    endpoint = ReceiverEndpoint(host="127.0.0.1", port=receiver.coap.port)
    unit = LightUnit("pole-lat", tmp / "lat" / "unit", endpoint, SystemClock(), None, tmp / "lat")
    unit.start()
    samples = []
    try:
        await asyncio.sleep(0.5)  # the first heartbeat is out of the way
        for _ in range(alarms):
            t0 = time.perf_counter()
            ref = unit.raise_alarm()
            while ref not in committed:
                await asyncio.sleep(0.0002)
            samples.append((committed[ref] - t0) * 1000)
    finally:
        await unit.stop()
        await receiver.stop()
    samples.sort()
    return {"alarm_latency_p50_ms": statistics.median(samples),
            "alarm_latency_p99_ms": percentile(samples, 0.99)}  # fmt: skip


async def ingest(tmp: Path, units: int = 40, seconds: float = 8.0) -> dict[str, float]:
    """Messages per second one receiver process verifies, commits and acknowledges.

    The receiver runs in its own process; this process plays ``units`` units, each sending
    back to back (CoAP allows one outstanding confirmable exchange per server).
    """
    keys = tmp / "ingest"
    clients = []
    for n in range(units):
        provision_oscore(f"load-{n:03d}", keys / f"u{n}", keys)
    port = free_port()
    proc = start_receiver_process(keys / "r.sqlite", port)
    for n in range(units):
        clients.append(UplinkClient(ReceiverEndpoint(host="127.0.0.1", port=port),
                                    keys / f"u{n}"))  # fmt: skip
    done = 0
    stop_at = time.perf_counter() + seconds

    async def run(client: UplinkClient, n: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            i += 1
            await client.send(protocol.encode(typical_alarm(i, i)))
            done += 1

    try:
        for c in clients:  # open the contexts before the clock starts
            await c.send(protocol.encode(typical_heartbeat(1_000_000)), reliable=False)
        t0 = time.perf_counter()
        await asyncio.gather(*(run(c, n) for n, c in enumerate(clients)))
        rate = done / (time.perf_counter() - t0)
    finally:
        for c in clients:
            await c.close()
        stop_receiver_process(proc)
    return {"receiver_ingest_msgs_per_s": rate}


def udp_bound(port: int) -> bool:
    """Whether something holds UDP ``port`` on loopback (a plain bind fails then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tcp_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_receiver_process(
    db: Path | str,
    coap_port: int,
    http_port: int | None = None,
    timeout_s: float = 60.0,
    keys: Path | None = None,
    instance: int = 0,
) -> subprocess.Popen[bytes]:
    """Start ``polewatch receiver`` in its own process on loopback; return once it listens.

    ``db`` is an SQLite file or a PostgreSQL URL. Its units' keys are in ``keys`` (default: the
    SQLite file's directory); with ``http_port`` it serves the console. Its warnings go to a
    ``.log`` file there (the database's name, or ``receiver-PORT`` on PostgreSQL).
    """
    cmd = [sys.executable, "-m", "polewatch", "receiver", "--db", str(db),
           "--coap", f"127.0.0.1:{coap_port}", "--log-level", "WARNING"]  # fmt: skip
    cmd += ["--http", f"127.0.0.1:{http_port}"] if http_port is not None else ["--no-console"]
    if keys is not None:
        cmd += ["--keys", str(keys)]
    if instance:
        cmd += ["--instance", str(instance)]
    if isinstance(db, Path):
        log = db.with_suffix(".log")  # a file, not a pipe: a full pipe would stall the receiver
    elif keys is not None:
        log = keys / f"receiver-{coap_port}.log"
    else:
        raise ValueError("a receiver on PostgreSQL needs its key directory")
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + timeout_s
    while not (udp_bound(coap_port) and (http_port is None or _tcp_listening(http_port))):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_receiver_process(proc)
            tail = log.read_text(errors="replace")[-2000:]
            raise NetworkError(f"receiver on 127.0.0.1:{coap_port} did not start: {tail}")
        time.sleep(0.05)
    return proc


def stop_receiver_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a receiver started by :func:`start_receiver_process` (SIGTERM, then wait)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, nearest rank, as ``latency`` reports it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def bench_uplink() -> dict[str, float]:
    """Every uplink figure."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures.update(asyncio.run(wire_sizes(Path(tmp))))
        figures.update(asyncio.run(latency(Path(tmp))))
        figures.update(asyncio.run(ingest(Path(tmp))))
    return figures
