"""The unit's self-test: each part checked in turn, with progress, into a pass/fail report.

Checks: frames arrive from each camera; the detection models are loaded and frames go through
them; each output switches on and off again (only when the technician confirms, as sirens are
loud, and within the site's deterrence limits: a limit that holds an output back makes its check
a skip, not a failure); the modem answers and is registered; a heartbeat makes the round trip to
the receiver; the outbox's disk has room. A check fails only on a fault the technician must fix.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from firmware.clock import SimClock
from firmware.errors import HardwareError, PolewatchError
from firmware.uplink.faults import DISK_LOW_BYTES

if TYPE_CHECKING:
    from firmware.runtime import UnitRuntime

logger = logging.getLogger(__name__)

CYCLE_S = 1.0  # how long each output is switched on
NEW_FRAMES = 3  # frames a camera must deliver during its check
FRAME_WAIT_S = 5.0  # real seconds a camera (or a model) has to deliver them
SWITCH_WAIT_S = 2.0  # real seconds an output has to take the state it was told
POLL_S = 0.01

Result = Literal["pass", "fail", "skip"]
Step = Callable[[Mapping[str, Any]], Awaitable[None]]
CheckFn = Callable[[], Awaitable[tuple[Result, str]]]


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    result: Result
    detail: str


async def _wait(predicate: Callable[[], bool], limit_s: float) -> bool:
    """Wait (real time) until ``predicate()`` holds; whether it did within ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


def _real_s(rt: UnitRuntime, sim_s: float) -> float:
    """Real seconds that ``sim_s`` of the unit's clock take (at most ``sim_s``)."""
    clock = rt.clock
    if isinstance(clock, SimClock) and not clock.fast and clock.speed > 0:
        return sim_s / clock.speed
    return sim_s


async def run_selftest(rt: UnitRuntime, confirm: bool, step: Step) -> dict[str, Any]:
    """Run every check; report each as it finishes through ``step``; return the report."""
    plan: list[tuple[str, CheckFn]] = []
    for name in rt.camera_stats:
        plan.append((f"camera {name}", partial(_camera, rt, name)))
    plan.append(("model thermal", partial(_model, rt, "thermal")))
    if rt.board.visible is not None:
        plan.append(("model visible", partial(_model, rt, "visible")))
    for name in rt.devices.outputs:
        plan.append((f"output {name}", partial(_output, rt, name, confirm)))
    plan.append(("modem", partial(_modem, rt)))
    plan.append(("uplink round trip", partial(_uplink, rt)))
    plan.append(("storage", partial(_storage, rt)))
    logger.info("selftest: %d checks%s", len(plan), ", outputs confirmed" if confirm else "")
    checks: list[Check] = []
    for i, (name, check) in enumerate(plan, 1):
        await step({"step": i, "of": len(plan), "check": name, "state": "running"})
        try:
            result, detail = await check()
        except (PolewatchError, OSError) as exc:  # a check that cannot run has failed
            logger.error("selftest: %s: %s", name, exc)
            result, detail = "fail", f"error: {exc}"
        checks.append(Check(name, result, detail))
        await step({"step": i, "of": len(plan), "check": name, "state": result, "detail": detail})
    counts = {r: sum(1 for c in checks if c.result == r) for r in ("pass", "fail", "skip")}
    passed = counts["fail"] == 0
    log = logger.info if passed else logger.warning
    log(
        "selftest %s: %d pass, %d fail, %d skip",
        "passed" if passed else "FAILED",
        counts["pass"],
        counts["fail"],
        counts["skip"],
    )
    return {
        "passed": passed,
        "outputs_cycled": confirm,
        "counts": counts,
        "checks": [asdict(c) for c in checks],
    }


async def _camera(rt: UnitRuntime, name: str) -> tuple[Result, str]:
    stats = rt.camera_stats[name]
    start = stats.count
    await _wait(lambda: stats.count >= start + NEW_FRAMES, FRAME_WAIT_S)
    got = stats.count - start
    problems = [
        f"{code.name.lower()}: {what}"
        for (code, sensor), (what, _) in list(rt.camera_faults.items())
        if sensor == name
    ]
    if got < NEW_FRAMES:
        return "fail", "; ".join([f"{got} new frame(s) in {FRAME_WAIT_S:g} s", *problems])
    fps = stats.fps()
    rate = "rate not measured yet" if fps is None else f"{fps:.1f} fps"
    detail = f"{got} new frames, {rate} (nominal {stats.nominal_fps:g})"
    if problems:
        return "fail", "; ".join([detail, *problems])
    return "pass", detail


async def _model(rt: UnitRuntime, sensor: str) -> tuple[Result, str]:
    if sensor == "thermal":
        detector = rt.thermal_pipeline.detector if rt.thermal_pipeline is not None else None

        def processed() -> int:
            return rt.frames_processed
    else:
        visible = rt.visible_pipeline
        detector = visible.detector if visible is not None else None  # type: ignore[assignment]

        def processed() -> int:
            return rt.visible_frames_processed

    if detector is None:
        return "skip", f"no {sensor} model runs: the site's rules and detection settings need none"
    runner = detector.runner
    start = processed()
    moved = await _wait(lambda: processed() > start, FRAME_WAIT_S)
    loaded = f"{runner.path.name} loaded ({runner.backend}, {runner.threads} thread(s))"
    if not moved:
        return "fail", f"{loaded}, but no frame went through it in {FRAME_WAIT_S:g} s"
    return "pass", f"{loaded}; {processed() - start} frame(s) through it during the check"


async def _output(rt: UnitRuntime, name: str, confirm: bool) -> tuple[Result, str]:
    if not confirm:
        return "skip", f"not cycled: 'selftest confirm' switches each output on for {CYCLE_S:g} s"
    output = rt.devices.outputs[name]
    limits = rt.site.deterrence.limits.get(name)
    seconds = min(CYCLE_S, limits.max_on_s) if limits is not None else CYCLE_S
    faults = len(rt.deterrence.faults)
    action = rt.actuate(name, seconds, f"{rt.site.unit.id}/selftest")
    if action.suppressed is not None:
        return "skip", f"held back by the site's limits: {action.suppressed}"

    def fault() -> str | None:
        return rt.deterrence.faults[-1] if len(rt.deterrence.faults) > faults else None

    await _wait(lambda: output.is_on or fault() is not None, SWITCH_WAIT_S)
    if fault() is not None:
        return "fail", f"could not be switched: {fault()}"
    if not output.is_on:
        return "fail", f"did not switch on within {SWITCH_WAIT_S:g} s"
    off = await _wait(lambda: not output.is_on, _real_s(rt, seconds) + SWITCH_WAIT_S)
    if fault() is not None:
        return "fail", f"could not be switched off: {fault()}"
    if not off:
        return "fail", f"still on {SWITCH_WAIT_S:g} s after its {seconds:g} s"
    return "pass", f"switched on, and off again after {seconds:g} s"


async def _modem(rt: UnitRuntime) -> tuple[Result, str]:
    if rt.modem is None:
        return "skip", "no modem on this board"
    answer = await asyncio.to_thread(rt.modem.ask)  # a fresh answer; the state machine is unmoved
    if isinstance(answer, HardwareError):
        return "fail", f"no answer: {answer}"
    if answer.sim != "READY":
        return "fail", f"SIM: {answer.sim}"
    if not answer.registered:
        return "fail", f"not registered ({answer.registration or 'unknown'})"
    signal = "" if answer.rssi_dbm is None else f", RSSI {answer.rssi_dbm} dBm"
    return "pass", f"registered on {answer.operator or '?'}{signal}"


async def _uplink(rt: UnitRuntime) -> tuple[Result, str]:
    sender = rt.sender
    ok = await rt.uplink.heartbeats.beat()
    if not ok:
        return "fail", f"no acknowledgement from {sender.client.uri} ('log tail' says why)"
    rtt = sender.last_rtt_s
    took = "" if rtt is None else f" in {rtt * 1000:.0f} ms"
    return "pass", f"heartbeat acknowledged by {sender.client.uri}{took}"


async def _storage(rt: UnitRuntime) -> tuple[Result, str]:
    free = (await asyncio.to_thread(shutil.disk_usage, rt.data_dir)).free
    depth = await asyncio.to_thread(rt.outbox.depth)
    detail = f"{free // 1_000_000} MB free; {depth} message(s) waiting in the outbox"
    if free < DISK_LOW_BYTES:
        return "fail", f"{detail}; below {DISK_LOW_BYTES // 1_000_000} MB"
    return "pass", detail
