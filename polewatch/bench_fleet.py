"""``make bench-fleet``: a fleet of light units against the receivers, with an operator watching.

Uplink-only simulated units (:class:`sim.fleet.LightUnit`: the real outbox, OSCORE, sender and
heartbeats) run in worker processes, one asyncio loop each, and raise scripted alarms at a fixed
rate; each receiver runs in its own process with its console (two by default, on a throwaway
PostgreSQL server; one alone runs on SQLite), and a logged-in session loads the first one's
alarm page once a second. At the end every unit drains its outbox, and the alarms the units
committed are checked against what the receivers stored: lost and duplicated messages must be
zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import queue
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import aiohttp

from firmware.clock import SystemClock
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from firmware.errors import ConfigError, NetworkError, PolewatchError
from firmware.uplink.heartbeat import heartbeat_interval
from host_tools.console.users import Users
from host_tools.provision.oscore import provision_oscore
from host_tools.receiver.store import ReceiverStore
from polewatch.bench import RESULTS, write_results
from polewatch.bench_uplink import percentile, start_receiver_process, stop_receiver_process
from polewatch.helptext import ExampleFormatter
from polewatch.netutil import free_port
from polewatch.scratch_postgres import ScratchPostgres
from sim.fleet import LightUnit

logger = logging.getLogger(__name__)

BENCH_USER = "fleet-bench"
PROGRESS_EVERY_S = 10.0
CONSOLE_EVERY_S = 1.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FleetPlan:
    """What the bench runs: how many units and receivers, for how long, at what alarm rate."""

    units: int = 1000
    receivers: int = 2  # several share a throwaway PostgreSQL; one runs on SQLite
    duration_s: float = 300.0
    alarm_every_s: float = 10.0  # per unit
    processes: int = 4  # worker processes the units are spread over
    reporting_s: float = 180.0  # the units' reporting time (heartbeats every third of it)
    drain_s: float = 120.0  # how long the units may take to empty their outboxes at the end
    # Units start spread over this many seconds before the load (None: one heartbeat interval),
    # so that their heartbeats are spread as in a real fleet rather than all in one burst.
    ramp_s: float | None = None

    @property
    def ramp(self) -> float:
        """Seconds over which the units start."""
        return heartbeat_interval(self.reporting_s) if self.ramp_s is None else self.ramp_s

    def check(self) -> None:
        """Refuse what cannot run."""
        for name, value in (("units", self.units), ("receivers", self.receivers),
                            ("processes", self.processes)):  # fmt: skip
            if value < 1:
                raise ConfigError(f"--{name}: must be at least 1, not {value}")
        if self.duration_s <= 0 or self.alarm_every_s <= 0:
            raise ConfigError("--duration and --alarm-every: must be above 0 s")
        if self.ramp < 0:
            raise ConfigError(f"--ramp: must be 0 s or more, not {self.ramp:g}")
        UplinkConfig(reporting_time_s=self.reporting_s)  # its own range check


@dataclass
class WorkerResult:
    """What one worker process's units did."""

    raised: list[tuple[str, int, int]]  # (unit, alarm id, msg id) of every alarm committed
    ack_ms: list[float]  # commit to acknowledgement, per acknowledged alarm
    undrained: int  # messages still in the outboxes after the drain


def unit_name(n: int) -> str:
    """The bench's name for unit ``n``."""
    return f"fleet-{n:04d}"


# --- the worker processes ----------------------------------------------------------------------


def _worker(
    index: int, workers: int, names: list[str], units_dir: str, ports: list[int], plan: FleetPlan,
    out: mp.Queue[Any], ramp: MpEvent, go: MpEvent,
) -> None:  # fmt: skip
    """A worker process's entry point: play ``names`` and put the result on ``out``."""
    logging.basicConfig(level=logging.ERROR)
    try:
        result = asyncio.run(
            _play(index, workers, names, Path(units_dir), ports, plan, out, ramp, go)
        )
        out.put(("done", index, result))
    except BaseException as exc:  # reported to the parent, which fails the bench
        out.put(("failed", index, f"{type(exc).__name__}: {exc}"))
        raise


async def _play(
    index: int, workers: int, names: list[str], units_dir: Path, ports: list[int],
    plan: FleetPlan, out: mp.Queue[Any], ramp: MpEvent, go: MpEvent,
) -> WorkerResult:  # fmt: skip
    config = UplinkConfig(reporting_time_s=plan.reporting_s)
    clock = SystemClock()
    committed: dict[str, float] = {}
    ack_ms: list[float] = []

    def acknowledged(ref: str, _msg_id: int) -> None:
        t0 = committed.pop(ref, None)
        if t0 is not None:  # an alarm (heartbeats and the like are not timed)
            ack_ms.append((time.perf_counter() - t0) * 1000)

    # This worker has units index, index + workers...; they go to the receivers in turn.
    endpoints = [ReceiverEndpoint(host="127.0.0.1", port=p) for p in ports]
    units = [LightUnit(name, units_dir / name,
                       endpoints[(n * workers + index) % len(endpoints)], clock, config)
             for n, name in enumerate(names)]  # fmt: skip
    out.put(("built", index, len(units)))
    await asyncio.to_thread(ramp.wait)
    # Each unit's first heartbeat goes out when it starts: start them spread over the ramp,
    # interleaved with the other workers' units (this one has units index, index + workers...).
    ramp_start = time.monotonic()
    for n, unit in enumerate(units):
        start_at = ramp_start + plan.ramp * (n * workers + index) / plan.units
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        unit.uplink.sender.on_acknowledged = acknowledged
        unit.start()
    out.put(("ready", index, len(units)))
    await asyncio.to_thread(go.wait)
    end = time.monotonic() + plan.duration_s
    rng = random.Random(index)

    async def script(unit: LightUnit) -> None:
        # Spread the units' alarms evenly over the interval, then one per interval each.
        next_t = time.monotonic() + rng.uniform(0, plan.alarm_every_s)
        while next_t < end:
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            t0 = time.perf_counter()
            committed[unit.raise_alarm()] = t0
            next_t += plan.alarm_every_s

    async def report() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S / 2)
            out.put(("progress", index, sum(len(u.raised) for u in units), len(ack_ms)))

    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(script(u) for u in units))
        await asyncio.gather(*(u.uplink.drain(plan.drain_s) for u in units))
        undrained = sum(u.uplink.outbox.depth() for u in units)
    finally:
        reporter.cancel()
        await asyncio.gather(*(u.stop() for u in units), return_exceptions=True)
    raised = [(u.unit_id, alarm_id, msg_id) for u in units for alarm_id, msg_id in u.raised]
    return WorkerResult(raised, ack_ms, undrained)


# --- the operator's view -----------------------------------------------------------------------


class ConsoleProbe:
    """A logged-in console session that times the alarm page: ``/``, then its two API calls."""

    def __init__(self, base: str, password: str) -> None:
        self.base, self.password = base, password
        self.samples_ms: list[float] = []
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Log in."""
        # unsafe: keep cookies from an IP address host (127.0.0.1), which aiohttp drops by default
        jar = aiohttp.CookieJar(unsafe=True)
        self.session = aiohttp.ClientSession(
            cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=60)
        )
        login = {"name": BENCH_USER, "password": self.password}
        async with self.session.post(self.base + "api/login", json=login) as resp:
            if resp.status != 200:
                raise NetworkError(f"console {self.base}: login refused ({resp.status})")

    async def load(self) -> float:
        """Load the page once; return and keep its time in ms."""
        assert self.session is not None
        t0 = time.perf_counter()
        for path in ("", "api/alarms", "api/units"):
            async with self.session.get(self.base + path) as resp:
                await resp.read()
                if resp.status != 200:
                    raise NetworkError(f"console {self.base}{path}: HTTP {resp.status}")
        ms = (time.perf_counter() - t0) * 1000
        self.samples_ms.append(ms)
        return ms

    async def ingested(self, bases: Sequence[str]) -> float:
        """Messages the receivers at ``bases`` have committed since they started (their
        metrics, all kinds)."""
        assert self.session is not None
        total = 0.0
        for base in bases:
            async with self.session.get(base + "metrics") as resp:
                text = await resp.text()
            for line in text.splitlines():
                if line.startswith(("polewatch_messages_ingested_total{",
                                    "polewatch_messages_duplicate_total")):  # fmt: skip
                    total += float(line.rsplit(" ", 1)[1])
        return total

    async def close(self) -> None:
        """Close the session's connections."""
        if self.session is not None:
            await self.session.close()


# --- the bench ---------------------------------------------------------------------------------


def _provision(names: list[str], units_dir: Path, keys: Path, progress: Progress) -> None:
    t0 = time.monotonic()
    for n, name in enumerate(names, 1):
        provision_oscore(name, units_dir / name / "oscore", keys)
        if n % 250 == 0 or n == len(names):
            progress(f"provisioned {n}/{len(names)} units ({time.monotonic() - t0:.0f} s)")


def stored_alarms(
    db: Path | str,
) -> tuple[Counter[tuple[str, int]], Counter[tuple[str, int]]]:
    """How often each (unit, alarm id) and each (unit, msg id) of a unit's alarm was stored."""
    store = ReceiverStore(db)
    try:
        alarms = store.read(lambda c: c.execute(
            "SELECT unit_id, alarm_id, COUNT(*) FROM alarms WHERE source = 'alarm' "
            "GROUP BY unit_id, alarm_id").fetchall())  # fmt: skip
        msgs = store.read(lambda c: c.execute(
            "SELECT a.unit_id, e.msg_id, COUNT(*) FROM alarm_events e "
            "JOIN alarms a ON a.id = e.alarm WHERE a.source = 'alarm' "
            "GROUP BY a.unit_id, e.msg_id").fetchall())  # fmt: skip
    finally:
        store.close()
    return (Counter({(r[0], int(r[1])): int(r[2]) for r in alarms}),
            Counter({(r[0], int(r[1])): int(r[2]) for r in msgs}))  # fmt: skip


async def _wait_for(
    out: mp.Queue[Any], kind: str, count: int, timeout_s: float, progress: Progress,
    procs: Sequence[BaseProcess], seen: dict[int, tuple[int, int]],
) -> dict[int, Any]:  # fmt: skip
    """Collect ``count`` messages of ``kind`` from the workers (progress on the way)."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        if time.monotonic() > deadline:
            raise PolewatchError(f"fleet bench: {count - len(got)} worker(s) never said {kind!r}")
        try:
            what, index, payload, *rest = await asyncio.to_thread(out.get, True, 1.0)
        except queue.Empty:
            if kind != "done" and any(p.exitcode is not None for p in procs):
                raise PolewatchError("fleet bench: a worker process died while starting") from None
            continue
        if what == "failed":
            raise PolewatchError(f"fleet bench: worker {index} failed: {payload}")
        if what == "progress":
            seen[index] = (payload, rest[0])
        elif what == kind:
            got[index] = payload
    return got


async def run_fleet(plan: FleetPlan, work: Path, progress: Progress = print) -> dict[str, float]:
    """Run the fleet bench in ``work`` (a scratch directory); return its figures.

    One receiver runs on SQLite; several share a throwaway PostgreSQL server, each with its own
    copy of the key directory and its own instance number, the units spread over them in turn.
    """
    plan.check()
    names = [unit_name(n) for n in range(plan.units)]
    keys, units_dir = work / "receiver", work / "units"
    _provision(names, units_dir, keys, progress)
    with contextlib.ExitStack() as stack:
        db: Path | str = keys / "receiver.sqlite"
        if plan.receivers > 1:
            pg = stack.enter_context(ScratchPostgres())
            db = pg.create_database("fleet")
            progress(f"PostgreSQL for {plan.receivers} receivers on 127.0.0.1:{pg.port}")
        return await _run_with(plan, work, db, names, units_dir, keys, progress)
    raise AssertionError("unreachable")


async def _run_with(
    plan: FleetPlan, work: Path, db: Path | str, names: list[str], units_dir: Path, keys: Path,
    progress: Progress,
) -> dict[str, float]:  # fmt: skip
    password = secrets.token_urlsafe(16)
    store = ReceiverStore(db)
    try:
        Users(store).add(BENCH_USER, "viewer", password, time.time())
    finally:
        store.close()
    coaps = [free_port() for _ in range(plan.receivers)]
    https = [free_port() for _ in range(plan.receivers)]
    receivers: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(plan.receivers):
            own = keys if i == 0 else work / f"receiver-{i}"
            if i:  # its own copy, as on another host
                shutil.copytree(keys, own)
            receivers.append(start_receiver_process(db, coaps[i], https[i], keys=own, instance=i))
            progress(f"receiver {i} up: coap 127.0.0.1:{coaps[i]}, "
                     f"console http://127.0.0.1:{https[i]}/")  # fmt: skip
        return await _load(plan, db, names, units_dir, coaps, https, password, progress)
    finally:
        for proc in receivers:
            stop_receiver_process(proc)


async def _load(
    plan: FleetPlan, db: Path | str, names: list[str], units_dir: Path, coaps: list[int],
    https: list[int], password: str, progress: Progress,
) -> dict[str, float]:  # fmt: skip
    ctx = mp.get_context("spawn")  # no inherited event loop, sockets or SQLite handles
    out: mp.Queue[Any] = ctx.Queue()
    ramp, go = ctx.Event(), ctx.Event()
    workers = min(plan.processes, plan.units)
    procs = [ctx.Process(target=_worker, name=f"fleet-worker-{i}", daemon=True,
                         args=(i, workers, names[i::workers], str(units_dir), coaps, plan, out,
                               ramp, go))
             for i in range(workers)]  # fmt: skip
    bases = [f"http://127.0.0.1:{port}/" for port in https]
    console = ConsoleProbe(bases[0], password)  # an operator on the first; all see every alarm
    seen: dict[int, tuple[int, int]] = {}
    try:
        for p in procs:
            p.start()
        await _wait_for(out, "built", workers, 600, progress, procs, seen)
        progress(f"starting {plan.units} units over {plan.ramp:g} s (heartbeats spread out)")
        ramp.set()
        await _wait_for(out, "ready", workers, plan.ramp + 600, progress, procs, seen)
        progress(
            f"{plan.units} units started in {workers} process(es); load for "
            f"{plan.duration_s:.0f} s, an alarm per unit every {plan.alarm_every_s:g} s"
        )
        await console.open()
        before = await console.ingested(bases)
        go.set()
        t0 = time.monotonic()
        next_line = t0 + PROGRESS_EVERY_S
        while (now := time.monotonic()) < t0 + plan.duration_s:
            await console.load()
            while True:  # take the workers' progress reports as they come
                try:
                    what, index, raised, acked = out.get_nowait()
                except queue.Empty:
                    break
                if what == "progress":
                    seen[index] = (raised, acked)
                elif what == "failed":
                    raise PolewatchError(f"fleet bench: worker {index} failed: {raised}")
            if now >= next_line:
                next_line += PROGRESS_EVERY_S
                raised = sum(r for r, _ in seen.values())
                acked = sum(a for _, a in seen.values())
                progress(f"{now - t0:5.0f} s: {raised} alarms committed, {acked} acknowledged; "
                         f"console page {console.samples_ms[-1]:.0f} ms")  # fmt: skip
            await asyncio.sleep(max(0.0, CONSOLE_EVERY_S - (time.monotonic() - now)))
        window = time.monotonic() - t0
        ingested = await console.ingested(bases) - before
        progress(f"load done; draining the outboxes (up to {plan.drain_s:.0f} s)")
        results: dict[int, WorkerResult] = await _wait_for(
            out, "done", workers, plan.drain_s + 120, progress, procs, seen
        )
    finally:
        await console.close()
        for p in procs:
            p.join(30)
            if p.exitcode is None:
                p.terminate()
                p.join()
    raised = [r for res in results.values() for r in res.raised]
    ack_ms = [a for res in results.values() for a in res.ack_ms]
    if not raised or not ack_ms or not console.samples_ms:
        raise PolewatchError("fleet bench: nothing was measured (run longer or alarm more often)")
    alarms, msgs = stored_alarms(db)
    lost = sum(1 for unit, alarm_id, msg_id in raised
               if (unit, alarm_id) not in alarms or (unit, msg_id) not in msgs)  # fmt: skip
    duplicates = sum(n - 1 for n in alarms.values() if n > 1)
    duplicates += sum(n - 1 for n in msgs.values() if n > 1)
    undrained = sum(res.undrained for res in results.values())
    progress(f"{len(raised)} alarms committed by the units, {sum(msgs.values())} stored; "
             f"lost {lost}, duplicated {duplicates}, left in outboxes {undrained}")  # fmt: skip
    return {
        "fleet_ingest_msgs_per_s": ingested / window,
        "fleet_ack_p50_ms": percentile(ack_ms, 0.5),
        "fleet_ack_p99_ms": percentile(ack_ms, 0.99),
        "fleet_lost": float(lost),
        "fleet_duplicates": float(duplicates),
        "fleet_console_load_p50_ms": percentile(console.samples_ms, 0.5),
        "fleet_console_load_p99_ms": percentile(console.samples_ms, 0.99),
        "fleet_units": float(plan.units),
        "fleet_receivers": float(plan.receivers),
        "fleet_duration_s": plan.duration_s,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the fleet bench, merge into the results file, print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m polewatch.bench_fleet",
        description=__doc__,
        formatter_class=ExampleFormatter,
    )
    d = FleetPlan()
    parser.add_argument("--units", type=int, default=d.units, help=f"units ({d.units})")
    parser.add_argument(
        "--receivers",
        type=int,
        default=d.receivers,
        help=f"receiver instances ({d.receivers}); several share a throwaway PostgreSQL server",
    )
    parser.add_argument(
        "--duration", type=float, default=d.duration_s, help=f"seconds of load ({d.duration_s:g})"
    )
    parser.add_argument(
        "--alarm-every",
        type=float,
        default=d.alarm_every_s,
        metavar="S",
        help=f"seconds between one unit's alarms ({d.alarm_every_s:g})",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=d.processes,
        metavar="P",
        help=f"worker processes for the units ({d.processes})",
    )
    parser.add_argument(
        "--reporting",
        type=float,
        default=d.reporting_s,
        metavar="S",
        help=f"the units' reporting time; heartbeats every third ({d.reporting_s:g})",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=d.drain_s,
        metavar="S",
        help=f"longest wait for the outboxes to empty at the end ({d.drain_s:g})",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        metavar="S",
        help="seconds over which the units start, before the load (one heartbeat interval)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file ({RESULTS})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    plan = FleetPlan(
        args.units,
        args.receivers,
        args.duration,
        args.alarm_every,
        args.processes,
        args.reporting,
        args.drain,
        args.ramp,
    )
    try:
        plan.check()
        with tempfile.TemporaryDirectory(prefix="polewatch-fleet-") as tmp:
            figures = asyncio.run(run_fleet(plan, Path(tmp), lambda line: print(line, flush=True)))
    except PolewatchError as exc:
        parser.exit(2, f"bench-fleet: {exc}\n")
    write_results(figures, args.out)
    return 1 if figures["fleet_lost"] or figures["fleet_duplicates"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
