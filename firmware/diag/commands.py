"""What each diagnostics command does on the unit: reads the runtime's state, or acts through it.

Every command runs on the unit's event loop; what blocks (SQLite, config files) goes to a thread.
Actuation goes through :meth:`UnitRuntime.actuate`, so the site's deterrence limits hold for a
technician exactly as for a rule or an operator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from firmware.config.board import BoardConfig
from firmware.config.load import cross_check, load_board, load_site
from firmware.config.site import SiteConfig
from firmware.config.updates import STORED
from firmware.diag import protocol
from firmware.diag.protocol import DiagError, Request
from firmware.diag.selftest import run_selftest
from firmware.errors import ConfigError, PolewatchError
from firmware.hal.base import ThermalFrame, VisibleFrame

if TYPE_CHECKING:
    from firmware.runtime import UnitRuntime

logger = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")  # Linux's thermal zones: the SoC and board sensors
SWITCH_WAIT_S = 2.0  # how long ``actuate`` waits to see the output on before it answers
DEFAULT_LOG_LINES = 20

Step = Callable[[Mapping[str, Any]], Awaitable[None]]


def iso(t: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC time."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def board_temperatures(root: Path = THERMAL_ROOT) -> dict[str, float]:
    """The board's temperature sensors in °C by zone type (empty where there are none)."""
    found: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip() or zone.name
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue  # a zone that cannot be read now (a sleeping sensor) is left out
        name = kind if kind not in found else f"{kind}-{zone.name.removeprefix('thermal_zone')}"
        found[name] = milli / 1000.0
    return found


def frame_summary(frame: ThermalFrame | VisibleFrame) -> dict[str, Any]:
    """What a technician reads from the latest frame: temperatures (or counts, or brightness)."""
    if isinstance(frame, VisibleFrame):
        return {"brightness_mean": float(frame.rgb.mean())}
    h, w = frame.data.shape
    if frame.radiometric:
        c = frame.celsius()
        return {
            "min_c": float(c.min()),
            "max_c": float(c.max()),
            "mean_c": float(c.mean()),
            "centre_c": float(c[h // 2, w // 2]),
        }
    counts = frame.data.astype(np.float32)
    return {
        "min_counts": int(counts.min()),
        "max_counts": int(counts.max()),
        "mean_counts": float(counts.mean()),
    }


class DiagCommands:
    """Carries out parsed requests against one unit runtime."""

    def __init__(self, runtime: UnitRuntime) -> None:
        self.rt = runtime

    async def handle(self, request: Request, step: Step) -> dict[str, Any]:
        """The result of one request; raises :class:`DiagError` for an ``ERR`` reply."""
        handler = {
            "help": self.help,
            "status": self.status,
            "sensors": self.sensors,
            "selftest": self.selftest,
            "actuate": self.actuate,
            "uplink": self.uplink,
            "modem": self.modem,
            "config show": self.config_show,
            "config validate": self.config_validate,
            "log tail": self.log_tail,
            "reboot": self.reboot,
        }[request.command]
        return await handler(request.args, step)

    def _running(self, what: str) -> None:
        if not self.rt.running:
            raise DiagError("unavailable", f"{what}: the unit is not running")
        if self.rt.restart_requested:
            raise DiagError("unavailable", f"{what}: the unit is restarting")

    # --- reading --------------------------------------------------------------------------------

    async def help(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """Every command, or the one (or the group) asked for."""
        wanted = args.get("command")
        specs = [
            c
            for c in protocol.COMMANDS
            if wanted is None or c.name == wanted or c.name.split(" ")[0] == wanted
        ]
        if not specs:
            raise DiagError(
                "bad-argument", f"help: no command {wanted!r}; 'help' lists the commands"
            )
        return {"version": protocol.VERSION, "commands": [c.describe() for c in specs]}

    async def status(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """The unit at a glance."""
        rt = self.rt
        depth = await asyncio.to_thread(rt.outbox.depth)
        outputs = {
            name: {"kind": out.kind, "on": out.is_on} for name, out in rt.devices.outputs.items()
        }
        return {
            "unit": rt.site.unit.id,
            "board": rt.board.board.name,
            "platform": rt.board.board.platform,
            "protocol": protocol.VERSION,
            "running": rt.running,
            "uptime_s": None if rt.started_at is None else time.monotonic() - rt.started_at,
            "time": iso(rt.clock.now()),
            "armed": rt.engine.armed,
            "test_mode": rt.engine.test_mode,
            "faults": [
                {"code": code.name.lower(), "subject": subject}
                for code, subject in list(rt.faults.open)
            ],
            "outputs": outputs,
            "cameras": sorted(rt.camera_stats),
            "frames_processed": rt.frames_processed,
            "frames_dropped": rt.frames.dropped,
            "outbox_depth": depth,
            "restart_requested": rt.restart_requested,
        }

    async def sensors(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """Each camera's latest temperatures and measured frame rate; the board's temperatures."""
        rt = self.rt
        cameras: dict[str, Any] = {}
        for name, stats in rt.camera_stats.items():
            cfg = rt.board.thermal if name == "thermal" else rt.board.visible
            assert cfg is not None
            entry: dict[str, Any] = {
                "backend": cfg.backend,
                "resolution": f"{cfg.width}x{cfg.height}",
                "fps_nominal": cfg.fps,
                "fps": stats.fps(),
                "frames": stats.count,
                "last_frame_age_s": stats.age_s(),
                "problems": [
                    f"{code.name.lower()}: {what}"
                    for (code, sensor), (what, _) in list(rt.camera_faults.items())
                    if sensor == name
                ],
            }
            if rt.board.thermal is not None and cfg is rt.board.thermal:
                entry |= {"sensor": rt.board.thermal.sensor, "radiometric": cfg.radiometric}
            if stats.latest is not None:
                entry |= await asyncio.to_thread(frame_summary, stats.latest)
            cameras[name] = entry
        board = await asyncio.to_thread(board_temperatures)
        return {"cameras": cameras, "board_c": board}

    async def uplink(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """Delivery to the receiver: queue, acknowledgements, round trip, heartbeats."""
        rt = self.rt
        sender, beats = rt.sender, rt.uplink.heartbeats
        depth = await asyncio.to_thread(rt.outbox.depth)
        due = await asyncio.to_thread(rt.outbox.next_attempt_time)
        now = sender.clock.now()
        return {
            "receiver": sender.client.uri,
            "outbox_depth": depth,
            "next_attempt_in_s": None if due is None else max(0.0, due - rt.clock.now()),
            "delivered": sender.delivered,
            "last_ack": iso(sender.last_ack_at),
            "last_ack_age_s": None if sender.last_ack_at is None else now - sender.last_ack_at,
            "last_rtt_ms": None if sender.last_rtt_s is None else sender.last_rtt_s * 1000,
            "clock_drift_s": sender.drift_s,
            "heartbeat_interval_s": beats.interval_s,
            "heartbeats_sent": beats.sent,
            "heartbeats_acknowledged": beats.acknowledged,
            "open_faults": len(rt.faults.open),
        }

    async def modem(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """The modem supervisor's view: state, signal, resets, recent transitions."""
        sup, cfg = self.rt.modem, self.rt.board.modem
        if sup is None or cfg is None:
            return {"present": False}
        last = dataclasses.asdict(sup.last) if sup.last is not None else {}
        return {
            "present": True,
            "backend": cfg.backend,
            "state": str(sup.state),
            "poll_s": sup.poll_s,
            **last,
            "resets": sup.reset_count,
            "resets_held_back": sup.held_back,
            "transitions": [
                {"at": iso(t.t), "from": str(t.old), "to": str(t.new), "reason": t.reason}
                for t in list(sup.transitions)[-5:]
            ],
            "recent_resets": [
                {"at": iso(r.t), "hard": r.hard, "reason": r.reason} for r in list(sup.resets)[-5:]
            ],
        }

    async def config_show(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """The running configs as JSON (the board's, the site's, or both)."""
        which = args.get("which")
        shown: dict[str, Any] = {}
        if which in (None, "board"):
            shown["board"] = self.rt.board.model_dump(mode="json")
        if which in (None, "site"):
            shown["site"] = self.rt.site.model_dump(mode="json")
        return shown

    async def config_validate(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """Check the files the unit would start from next time, and whether they changed."""
        return await asyncio.to_thread(self._validate)

    def _validate(self) -> dict[str, Any]:
        rt = self.rt
        stored = rt.data_dir / STORED  # a site config update waiting for the next start
        board_path: Path | None = None
        site_path = stored if stored.exists() else None
        notes: list[str] = []
        if rt.config_files is not None:
            board_path = rt.config_files[0]
            site_path = site_path or rt.config_files[1]
        else:
            notes.append("the unit was started without its config files' paths")
        problems: list[str] = []
        changed: dict[str, bool] = {}
        board: BoardConfig | None = rt.board
        site: SiteConfig | None = rt.site
        if board_path is not None:
            try:
                board = load_board(board_path)
                changed["board"] = board != rt.board
            except ConfigError as exc:
                problems += str(exc).splitlines()
                board = None
        if site_path is not None:
            try:
                site = load_site(site_path)
                changed["site"] = site != rt.site
            except ConfigError as exc:
                problems += str(exc).splitlines()
                site = None
        if board is not None and site is not None:
            try:
                cross_check(board, site, site_path or Path("running site config"))
            except ConfigError as exc:
                problems += str(exc).splitlines()
        if any(changed.values()):
            notes.append("the files differ from the running config: 'reboot' applies them")
        return {
            "valid": not problems,
            "checked": [str(p) for p in (board_path, site_path) if p is not None],
            "problems": problems,
            "changed": changed,
            "notes": notes,
        }

    async def log_tail(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """The latest log lines."""
        ring = self.rt.log_ring
        n = int(args.get("lines", DEFAULT_LOG_LINES))
        return {"lines": [] if ring is None else ring.tail(n)}

    # --- acting ---------------------------------------------------------------------------------

    async def actuate(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """Switch an output on for a while, within the site's deterrence limits."""
        rt = self.rt
        name, seconds = str(args["output"]), float(args["seconds"])
        output = rt.devices.outputs.get(name)
        if output is None:
            known = ", ".join(sorted(rt.devices.outputs)) or "none"
            raise DiagError("bad-argument", f"actuate: no output {name!r} (have: {known})")
        self._running("actuate")
        faults_before = len(rt.deterrence.faults)
        try:
            action = rt.actuate(name, seconds, f"{rt.site.unit.id}/diag")
        except PolewatchError as exc:
            raise DiagError("failed", f"actuate {name}: {exc}") from exc
        if action.suppressed is not None:
            raise DiagError("refused", f"{name}: {action.suppressed}")
        logger.info("diag: %s on for %g s on a technician's request", name, action.seconds)
        deadline = time.monotonic() + SWITCH_WAIT_S
        seen_on = output.is_on
        while not seen_on and time.monotonic() < deadline:
            if len(rt.deterrence.faults) > faults_before:
                raise DiagError("failed", f"{name}: {rt.deterrence.faults[-1]}")
            await asyncio.sleep(0.01)
            seen_on = output.is_on
        limits = rt.site.deterrence.limits[name]
        return {
            "output": name,
            "seconds": action.seconds,
            "limited": action.limited,
            "switched_on": seen_on,
            "max_on_s": limits.max_on_s,
            "cooldown_s": limits.cooldown_s,
        }

    async def selftest(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """Check the unit part by part, with progress."""
        self._running("selftest")
        return await run_selftest(self.rt, args.get("confirm") == "confirm", step)

    async def reboot(self, args: Mapping[str, Any], step: Step) -> dict[str, Any]:
        """Restart the unit's software."""
        if not self.rt.running:
            raise DiagError("unavailable", "reboot: the unit is not running")
        if self.rt.restart_requested:
            return {"restarting": True, "already": True}
        logger.warning("diag: restart requested on the diagnostics console")
        self.rt.request_restart("on the diagnostics console's request")
        return {"restarting": True, "already": False}
