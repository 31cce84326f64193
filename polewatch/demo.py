"""The demo: a receiver with its console and a simulated unit playing a scenario, in one process.

``--once`` plays the scenario headless at full speed, checks its expected outcome and exits 0 only
when it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from firmware.errors import NetworkError
from firmware.uplink import protocol
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from host_tools.receiver.store import AlarmRecord
from polewatch.netutil import free_port
from sim.expect import check_outcome
from sim.runner import SimUnit, build_sim_unit

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 30.0
DEMO_USER = "demo"


@dataclass
class DemoResult:
    """What a scenario run produced."""

    problems: list[str]
    alarms: list[AlarmRecord]
    # wall-clock time.monotonic() of each alarm's first commit at the receiver, by ref
    committed_wall: dict[str, float] = field(default_factory=dict)
    # simulated seconds played when stopped early (Ctrl-C); the outcome is then not judged
    stopped_at_s: float | None = None
    duration_s: float = 0.0


def _alarm_line(rec: AlarmRecord, msg: protocol.Message | None, tz: ZoneInfo) -> str:
    when = dt.datetime.fromtimestamp(rec.updated_at, tz).strftime("%H:%M:%S")
    what = msg.phase.name if isinstance(msg, protocol.Alarm) else rec.unit_state.upper()
    temp = f" max {rec.max_temp_c:.1f} C" if rec.max_temp_c is not None else ""
    acts = ", ".join(f"{o} {s} s" for o, s in rec.actions)
    held = "; ".join(f"{o}: {r}" for o, r in rec.suppressed)
    return (
        f"[{when}] ALARM {rec.ref} {what} P{rec.priority} {rec.event} zone={rec.zone}{temp}"
        + (f" actions: {acts}" if acts else "")
        + (f" suppressed: {held}" if held else "")
    )


async def play(
    scenario: Path,
    data_dir: Path,
    speed: float,
    receiver: Receiver,
    quiet: bool = False,
    stop: asyncio.Event | None = None,
    on_unit: Callable[[SimUnit], None] | None = None,
) -> DemoResult:
    """Play the scenario with one simulated unit against a started receiver; check the outcome."""
    committed: dict[str, float] = {}

    def on_alarm(rec: AlarmRecord, msg: protocol.Message | None) -> None:
        committed.setdefault(rec.ref, time.monotonic())
        if not quiet:
            print(_alarm_line(rec, msg, tz), flush=True)

    unit: SimUnit = build_sim_unit(
        scenario,
        data_dir / "unit",
        speed,
        receiver=(receiver.coap.host, receiver.coap.port),
        receiver_keys=receiver.keys_dir,
    )
    tz = ZoneInfo(unit.runtime.site.unit.timezone)
    receiver.hooks.append(on_alarm)
    if on_unit is not None:
        on_unit(unit)
    if not quiet:
        pace = "full speed" if speed == 0 else f"{speed:g}x real time"
        print(
            f"polewatch demo: unit {unit.runtime.site.unit.id} playing scenario "
            f"{unit.scenario.scenario.name!r} ({pace})",
            flush=True,
        )
    run = asyncio.create_task(
        unit.runtime.run(stop_at=unit.stop_at, drain_timeout_s=DRAIN_TIMEOUT_S)
    )
    waiters: set[asyncio.Future[None]] = {run}
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    if stopper is not None:
        waiters.add(stopper)  # type: ignore[arg-type]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not run.done():
        unit.runtime.request_stop()
    await run
    if stopper is not None:
        stopper.cancel()
    assert receiver.store is not None
    alarms = [a for a in receiver.store.alarms(10_000) if a.unit_id == unit.runtime.site.unit.id]
    undelivered = _outbox_depth(data_dir / "unit" / "outbox.sqlite")
    played = unit.clock.now() - unit.start
    duration = unit.scenario.scenario.duration_s
    if stop is not None and stop.is_set() and played < duration:
        return DemoResult([], alarms, committed, stopped_at_s=played, duration_s=duration)
    problems = check_outcome(
        unit.scenario.expect, alarms, unit.output_histories(), unit.start, undelivered
    )
    return DemoResult(problems, alarms, committed)


def _outbox_depth(path: Path) -> int:
    from firmware.uplink.outbox import Outbox

    box = Outbox(path)
    try:
        return box.depth()
    finally:
        box.close()


def report(result: DemoResult) -> int:
    """Print the outcome; 0 when the scenario's expectations held (or it was stopped early)."""
    if result.stopped_at_s is not None:
        print(
            f"scenario stopped at {result.stopped_at_s:.0f} s of {result.duration_s:.0f} s; "
            f"outcome not checked ({len(result.alarms)} alarm(s) so far)"
        )
        return 0
    if result.problems:
        print("scenario outcome: FAILED")
        for p in result.problems:
            print(f"  - {p}")
        return 1
    print(f"scenario outcome: OK ({len(result.alarms)} alarm(s) as expected)")
    return 0


def _demo_login(db_path: Path | str) -> str:
    """Make a one-off console account with a random password (demo only; never a default)."""
    import secrets

    from host_tools.console.users import UserError, Users
    from host_tools.receiver.store import ReceiverStore

    store = ReceiverStore(db_path)
    try:
        users = Users(store)
        password = secrets.token_urlsafe(12)
        try:
            users.add(DEMO_USER, "supervisor", password, time.time())
        except UserError:  # a --data-dir used before: give the account a new password
            users.update(DEMO_USER, password=password, disabled=False)
    finally:
        store.close()
    return f"log in as {DEMO_USER!r} with password {password} (made for this demo run only)"


def run_demo(
    scenario: Path, speed: float, once: bool, coap_port: int, http_port: int, data_dir: Path | None
) -> int:
    """Entry point of ``polewatch demo``."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="polewatch-demo-"))
    print(f"polewatch demo: data and logs in {data_dir}", flush=True)
    coap = Endpoint("127.0.0.1", coap_port or free_port())
    http = None if once else Endpoint("127.0.0.1", http_port or free_port(socket.SOCK_STREAM))

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        receiver = Receiver(data_dir / "receiver.sqlite", coap, http)
        login = _demo_login(receiver.db_path) if http is not None else ""
        try:
            await receiver.start()
        except NetworkError as exc:
            raise NetworkError(
                f"{exc} (choose another port with --http-port or --coap-port; 0 picks a free one)"
            ) from exc
        try:
            if receiver.console_url:
                print(f"polewatch demo: console at {receiver.console_url}", flush=True)
                print(f"polewatch demo: {login}", flush=True)
            result = await play(scenario, data_dir, speed, receiver, stop=stop)
            code = report(result)
            if not once and not stop.is_set():
                print(
                    f"polewatch demo: scenario finished; the console stays at "
                    f"{receiver.console_url} - press Ctrl-C to stop",
                    flush=True,
                )
                await stop.wait()
        finally:
            await receiver.stop()
        print("polewatch demo: stopped", flush=True)
        return code

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main())
    return 130
