"""The unit runtime: one asyncio loop as the spine, blocking work in threads.

capture (thread) -> latest-frame queue -> detection pipeline (thread: masks, sensor and tamper
checks, fire, object model, tracker, events) -> rules -> outbox commit -> deterrence; the sender
drains the outbox to the receiver. A visible camera, when the site runs a model on it, has its own
capture and pipeline. Outputs start off and are forced off however the runtime ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.clock import SimClock
from firmware.config.board import BoardConfig
from firmware.config.site import Profile, ProfileStep, SiteConfig
from firmware.config.updates import check_and_store
from firmware.detect.pipeline import ThermalPipeline, VisiblePipeline
from firmware.detect.visible import VisibleDetector
from firmware.diag.console import DiagConsole
from firmware.diag.logring import LogRing
from firmware.diag.stats import FrameStats
from firmware.errors import ActuatorFault, ConfigError, HardwareError
from firmware.frames import LatestQueue
from firmware.hal import registry
from firmware.hal.base import (
    AudioPlayer,
    Modem,
    Output,
    ThermalCamera,
    ThermalFrame,
    VisibleCamera,
    VisibleFrame,
)
from firmware.hal.registry import HalContext
from firmware.rules.deterrence import Action, Deterrence
from firmware.rules.engine import RuleEngine
from firmware.uplink import protocol
from firmware.uplink.client import UplinkError
from firmware.uplink.heartbeat import UnitStatus
from firmware.uplink.modem import ModemSupervisor
from firmware.uplink.stack import Uplink

logger = logging.getLogger(__name__)

CAMERA_RETRY_S = 1.0
FRAME_WATCH_S = 1.0  # how often the thermal camera's between-frames watch looks
RESTART_DRAIN_S = 10.0  # before a restart, time for queued messages (the command result) to go


@dataclass
class Devices:
    """The devices a board config opened."""

    thermal: ThermalCamera | None
    outputs: dict[str, Output]
    visible: VisibleCamera | None = None
    others: dict[str, Any] = field(default_factory=dict)
    start_faults: list[tuple[str, str]] = field(default_factory=list)  # (output, what failed)

    def close(self) -> None:
        """Close everything (outputs must already be off)."""
        for dev in [self.thermal, self.visible, *self.outputs.values(), *self.others.values()]:
            if dev is not None:
                try:
                    dev.close()
                except Exception as exc:  # closing the rest matters more than this error
                    logger.error("closing %r failed: %s", dev, exc)


def open_devices(board: BoardConfig, ctx: HalContext, visible: bool = False) -> Devices:
    """Open every device the board config names (the visible camera only if it is used)."""
    outputs: dict[str, Output] = {}
    others: dict[str, Any] = {}
    start_faults: list[tuple[str, str]] = []
    thermal = camera = None
    try:
        for name, cfg in board.outputs.items():
            outputs[name] = registry.create("output", name, cfg, ctx)
        for name, out in outputs.items():
            try:
                out.set(False)  # outputs start off, whatever state the hardware was left in
            except ActuatorFault as exc:
                # A relay module that does not answer must not keep the unit (and its fire
                # detection) from starting: the fault is reported once the uplink is up.
                logger.error("output %s could not be switched off at start: %s", name, exc)
                start_faults.append((name, str(exc)))
        if board.thermal is not None:
            thermal = registry.create("thermal", "thermal", board.thermal, ctx)
        if visible and board.visible is not None:
            camera = registry.create("visible", "visible", board.visible, ctx)
        if board.audio is not None:
            others["audio"] = registry.create("audio", "audio", board.audio, ctx)
        if board.modem is not None:
            others["modem"] = registry.create("modem", "modem", board.modem, ctx)
    except BaseException:
        Devices(thermal, outputs, camera, others).close()
        raise
    return Devices(thermal, outputs, camera, others, start_faults)


class UnitRuntime:
    """One pole unit: devices, detection, rules, deterrence, outbox and uplink."""

    def __init__(
        self,
        board: BoardConfig,
        site: SiteConfig,
        ctx: HalContext,
        data_dir: Path,
        security_dir: Path | None = None,
        config_files: tuple[Path, Path] | None = None,
    ) -> None:
        self.board, self.site, self.ctx = board, site, ctx
        # The board and provisioned site files, when known: the diag console re-checks them.
        self.config_files = config_files
        self.clock = ctx.clock
        self.data_dir = data_dir
        visible_cfg = site.detection.visible
        self.devices = open_devices(
            board, ctx, visible=visible_cfg is not None and visible_cfg.enabled
        )
        try:
            self.uplink = Uplink(
                site.receiver,
                site.uplink,
                data_dir,
                self.clock,
                self._execute,
                self._status,
                security_dir,
            )
        except BaseException:
            self.devices.close()
            raise
        self.outbox, self.sender, self.faults = (
            self.uplink.outbox,
            self.uplink.sender,
            self.uplink.faults,
        )
        modem = self.devices.others.get("modem")
        self.modem: ModemSupervisor | None = None
        if isinstance(modem, Modem) and board.modem is not None:
            self.modem = ModemSupervisor.from_config(modem, board.modem, self.clock, self.faults)
        audio = self.devices.others.get("audio")
        self.deterrence = Deterrence(
            self.devices.outputs,
            site.deterrence,
            self.clock,
            audio=audio if isinstance(audio, AudioPlayer) else None,
        )
        self._actuator_faults_seen = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self.restart_requested = False  # a new site config waits: the process should restart
        for name, detail in self.devices.start_faults:
            self.faults.raise_(protocol.FaultCode.ACTUATOR, name, detail)
        self.engine = RuleEngine(
            site, self.deterrence, self.uplink.commit, self.outbox.next_alarm_id
        )
        try:
            self.thermal_pipeline, self.visible_pipeline = self._pipelines()
        except BaseException:
            self.devices.close()
            raise
        fast = isinstance(self.clock, SimClock) and self.clock.fast
        self.frames: LatestQueue[ThermalFrame] = LatestQueue(1, lossless=fast)
        self.visible_frames: LatestQueue[VisibleFrame] = LatestQueue(1, lossless=fast)
        # Open camera faults and who raised them: the capture loop (read errors) or the image
        # checks (frozen, out of range, tamper). Each clears only its own.
        self.camera_faults: dict[tuple[protocol.FaultCode, str], tuple[str, str]] = {}
        self.frames_processed = 0
        self.visible_frames_processed = 0
        self._stop = asyncio.Event()
        self.running = False
        self.started_at: float | None = None  # time.monotonic() when run() began
        # What the diagnostics console reads: each camera's latest frame and rate, recent logs.
        self.camera_stats: dict[str, FrameStats[Any]] = {}
        if board.thermal is not None and self.devices.thermal is not None:
            self.camera_stats["thermal"] = FrameStats(board.thermal.fps)
        if board.visible is not None and self.devices.visible is not None:
            self.camera_stats["visible"] = FrameStats(board.visible.fps)
        self.log_ring: LogRing | None = None
        self.diag: DiagConsole | None = None
        if board.diag is not None:
            self.log_ring = LogRing()
            self.diag = DiagConsole(board.diag, self)

    def _pipelines(self) -> tuple[ThermalPipeline | None, VisiblePipeline | None]:
        thermal_cfg, visible_cfg = self.board.thermal, self.site.detection.visible
        thermal = visible = None
        if thermal_cfg is not None:
            thermal = ThermalPipeline(
                self.site, thermal_cfg.width, thermal_cfg.height, thermal_cfg.radiometric
            )
        camera = self.devices.visible
        if camera is not None and visible_cfg is not None and self.board.visible is not None:
            detector = VisibleDetector(visible_cfg, self.board.board.inference_threads)
            visible = VisiblePipeline(
                self.site, self.board.visible.width, self.board.visible.height, detector
            )
        return thermal, visible

    def _camera_fault(
        self, code: protocol.FaultCode, sensor: str, what: str | None, source: str
    ) -> None:
        """Raise a camera or tamper fault when ``what`` names a problem, clear it when gone."""
        key = (code, sensor)
        current = self.camera_faults.get(key)
        if what is None:
            if current is not None and current[1] == source:
                del self.camera_faults[key]
                logger.info("%s camera: %s is over", sensor, code.name.lower())
                self.faults.clear(code, sensor)
            return
        if current is not None:
            return  # already open (the first cause is the one reported)
        self.camera_faults[key] = (what, source)
        logger.warning("%s camera: %s: %s", sensor, code.name.lower(), what)
        self.faults.raise_(code, sensor, what)

    def _status(self) -> UnitStatus:
        """Health for the next heartbeat; new actuator faults are reported on the way."""
        self.faults.check_disk(self.data_dir)
        reported, self._actuator_faults_seen = (
            self.deterrence.faults[self._actuator_faults_seen :],
            len(self.deterrence.faults),
        )
        for fault in reported:
            output, _, detail = fault.partition(": ")
            self.faults.raise_(protocol.FaultCode.ACTUATOR, output, detail)
        mode = (protocol.MODE_ARMED if self.engine.armed else 0) | (
            protocol.MODE_TEST if self.engine.test_mode else 0
        )
        if self.modem is None:
            return UnitStatus(mode=mode, faults=len(self.faults.open))
        return UnitStatus(  # the supervisor's last poll: no serial I/O on the event loop
            rssi_dbm=self.modem.rssi_dbm,
            mode=mode,
            faults=len(self.faults.open),
            modem=self.modem.state.code,
            modem_resets=self.modem.reset_count,
        )

    def _execute(
        self, op: protocol.CommandOp, arg: str | None
    ) -> tuple[protocol.CommandStatus, str | None]:
        """Carry out an operator command, within every deterrence limit."""
        ref = f"{self.site.unit.id}/operator"
        ok = protocol.CommandStatus.DONE
        if op == protocol.CommandOp.TRIGGER:
            if arg not in self.site.deterrence.profiles:
                known = ", ".join(sorted(self.site.deterrence.profiles)) or "none"
                return protocol.CommandStatus.REJECTED, f"no profile {arg!r} (have: {known})"
            actions = self.deterrence.trigger(arg, ref)
            done = [f"{a.output} {a.seconds:g} s" for a in actions if a.suppressed is None]
            held = [f"{a.output}: {a.suppressed}" for a in actions if a.suppressed is not None]
            return ok, "; ".join([", ".join(done) or "nothing switched", *held])
        if op == protocol.CommandOp.SILENCE:
            silenced = self.deterrence.silence(ref)
            return ok, ("silenced " + ", ".join(silenced)) if silenced else "nothing was on"
        if op in (protocol.CommandOp.ARM, protocol.CommandOp.DISARM):
            self.engine.set_armed(op == protocol.CommandOp.ARM)
            return ok, None
        if op in (protocol.CommandOp.TEST_ON, protocol.CommandOp.TEST_OFF):
            self.engine.set_test_mode(op == protocol.CommandOp.TEST_ON)
            return ok, None
        if op == protocol.CommandOp.CONFIG_UPDATE and arg is not None and arg.isdigit():
            return self._update_config(arg)
        return protocol.CommandStatus.REJECTED, f"{op.name.lower()} {arg or ''}: bad argument"

    def _update_config(self, version: str) -> tuple[protocol.CommandStatus, str | None]:
        """Fetch, check and store a new site config; restart to apply it. Runs in a thread."""
        loop = self._loop
        if loop is None:
            return protocol.CommandStatus.FAILED, "the unit is not running"
        client = self.uplink.sender.client
        try:
            text = asyncio.run_coroutine_threadsafe(client.fetch_config(version), loop).result(
                client.timeout_s + 5
            )
        except (UplinkError, TimeoutError) as exc:
            return protocol.CommandStatus.FAILED, f"cannot fetch config v{version}: {exc}"
        try:
            check_and_store(self.board, self.site, text, self.data_dir, version)
        except ConfigError as exc:
            problem = str(exc).splitlines()[0]
            self.faults.raise_(protocol.FaultCode.CONFIG, "site", problem)
            return protocol.CommandStatus.REJECTED, problem
        self.restart_requested = True
        loop.call_soon_threadsafe(self._restart_soon)
        return protocol.CommandStatus.DONE, f"config v{version} stored; restarting to apply it"

    def request_restart(self, reason: str) -> None:
        """Restart the unit's process soon (``polewatch unit`` exits 75); call from the loop."""
        self.restart_requested = True
        self._restart_soon(reason)

    def _restart_soon(self, reason: str = "to apply the new site config") -> None:
        async def restart() -> None:
            await asyncio.sleep(0.5)  # the command's result is committed just after we return
            await self.uplink.drain(RESTART_DRAIN_S)
            logger.warning("restarting %s", reason)
            self.request_stop()

        self._restart_task = asyncio.get_running_loop().create_task(restart())

    def actuate(self, output: str, seconds: float, ref: str) -> Action:
        """Switch one output on for ``seconds`` (a technician's test) within every limit.

        It is an activation like an operator's: quiet hours, cool-down, duty cycle and an output
        in use hold it back (the returned action says why), and it counts towards them after. A
        time beyond the output's ``max_on_s`` is refused, not shortened: it was asked for.
        """
        if output not in self.devices.outputs:
            known = ", ".join(sorted(self.devices.outputs)) or "none"
            raise ConfigError(f"no output {output!r} on this board (have: {known})")
        limits = self.site.deterrence.limits.get(output)
        if limits is None:
            return Action(output, 0, f"no [deterrence.limits.{output}] in the site config")
        if seconds > limits.max_on_s:
            return Action(output, 0, f"{seconds:g} s is over its max_on_s of {limits.max_on_s:g} s")
        profile = Profile(steps=[ProfileStep(output=output, for_s=seconds)])
        return self.deterrence.activate(f"test-{output}", profile, ref)[0]

    def request_stop(self) -> None:
        """Ask the runtime to stop (from a signal handler or another task)."""
        self._stop.set()

    async def run(self, stop_at: float | None = None, drain_timeout_s: float = 0.0) -> None:
        """Run until stopped, or until the clock reaches ``stop_at``; then optionally drain."""
        logger.info(
            "unit %s starting: board %s, %d outputs, receiver %s",
            self.site.unit.id,
            self.board.board.name,
            len(self.devices.outputs),
            self.sender.client.uri,
        )
        self._loop = asyncio.get_running_loop()
        self.started_at, self.running = time.monotonic(), True
        self.deterrence.start_failsafe()
        tasks = [asyncio.create_task(loop) for loop in self.uplink.loops()]
        if self.diag is not None and self.log_ring is not None:
            self.log_ring.attach()
            tasks.append(asyncio.create_task(self.diag.run(), name="diag"))
        if self.modem is not None:
            tasks.append(asyncio.create_task(self.modem.run(), name="modem"))
        if self.devices.thermal is not None:
            tasks.append(
                asyncio.create_task(self._capture(self.devices.thermal, stop_at), name="capture")
            )
            tasks.append(asyncio.create_task(self._detect(), name="detect"))
            tasks.append(asyncio.create_task(self._watch_frames(), name="frame-watch"))
        if self.devices.visible is not None and self.visible_pipeline is not None:
            tasks.append(
                asyncio.create_task(
                    self._capture_visible(self.devices.visible, stop_at), name="capture-visible"
                )
            )
            tasks.append(asyncio.create_task(self._detect_visible(), name="detect-visible"))
        try:
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if drain_timeout_s > 0:
                await self.uplink.drain(drain_timeout_s)
        finally:
            self.running = False
            for task in [*tasks, stop]:
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
            self.deterrence.stop()
            await self.uplink.close()
            self.devices.close()
            logger.info(
                "unit %s stopped after %d frames (%d dropped)",
                self.site.unit.id,
                self.frames_processed,
                self.frames.dropped,
            )
            if self.log_ring is not None:
                self.log_ring.detach()

    async def _retry_pause(self) -> None:
        """Wait before reading a failed camera again."""
        if isinstance(self.clock, SimClock) and self.clock.fast:
            # Fast simulated time moves only with frame reads (each failed read moves it on by
            # one frame period), so waiting for the clock here would wait forever.
            await asyncio.sleep(0)
            return
        await self.clock.sleep_until(self.clock.now() + CAMERA_RETRY_S)

    async def _capture(self, camera: ThermalCamera, stop_at: float | None) -> None:
        while stop_at is None or self.clock.now() < stop_at:
            try:
                frame = await asyncio.to_thread(camera.read)
            except HardwareError as exc:
                self._thermal_read_returned()
                logger.error("thermal camera: %s; retrying in %g s", exc, CAMERA_RETRY_S)
                self._camera_fault(protocol.FaultCode.CAMERA, "thermal", str(exc), "capture")
                await self._retry_pause()
                continue
            self._thermal_read_returned()
            self._camera_fault(protocol.FaultCode.CAMERA, "thermal", None, "capture")
            self.camera_stats["thermal"].note(frame)
            await self.frames.put(frame)
        await self.frames.join()  # detection has finished the last frame
        self._stop.set()

    async def _detect(self) -> None:
        pipeline = self.thermal_pipeline
        assert pipeline is not None
        while True:
            frame = await self.frames.get()
            result = await asyncio.to_thread(pipeline.process, frame)
            self._camera_fault(protocol.FaultCode.CAMERA, "thermal", result.sensor_fault, "image")
            self._camera_fault(protocol.FaultCode.TAMPER, "thermal", result.tamper, "image")
            self.engine.on_events(frame.t, result.events)
            self.frames_processed += 1
            self.frames.task_done()

    def _thermal_read_returned(self) -> None:
        # A read that fails is reported by the capture loop; the watch is for reads that hang.
        if self.thermal_pipeline is not None:
            self.thermal_pipeline.watch.on_read(self.clock.now())

    async def _watch_frames(self) -> None:
        """A camera whose read hangs (no frame, no error) is a sensor fault too."""
        pipeline = self.thermal_pipeline
        assert pipeline is not None
        limit = pipeline.watch.config.no_frames_s
        period = min(FRAME_WATCH_S, limit / 2)
        while True:
            await self.clock.sleep_until(self.clock.now() + period)
            # Read while detection runs in its thread: one float of the last frame, no lock needed.
            stalled = pipeline.watch.check(self.clock.now()) == "no_frames"
            what = f"no frames for {limit:g} s" if stalled else None
            self._camera_fault(protocol.FaultCode.CAMERA, "thermal", what, "watch")

    async def _capture_visible(self, camera: VisibleCamera, stop_at: float | None) -> None:
        while stop_at is None or self.clock.now() < stop_at:
            try:
                frame = await asyncio.to_thread(camera.read)
            except HardwareError as exc:
                logger.error("visible camera: %s; retrying in %g s", exc, CAMERA_RETRY_S)
                self._camera_fault(protocol.FaultCode.CAMERA, "visible", str(exc), "capture")
                await self._retry_pause()
                continue
            self._camera_fault(protocol.FaultCode.CAMERA, "visible", None, "capture")
            self.camera_stats["visible"].note(frame)
            await self.visible_frames.put(frame)

    async def _detect_visible(self) -> None:
        pipeline = self.visible_pipeline
        assert pipeline is not None
        while True:
            frame = await self.visible_frames.get()
            result = await asyncio.to_thread(pipeline.process, frame)
            self.engine.on_events(frame.t, result.events)
            self.visible_frames_processed += 1
            self.visible_frames.task_done()
