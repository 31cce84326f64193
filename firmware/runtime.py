"""The unit runtime: one asyncio loop as the spine, blocking work in threads.

capture (thread) -> latest-frame queue -> fire detection (thread) -> rules -> outbox commit ->
deterrence; the sender drains the outbox to the receiver. Outputs start off and are forced off
however the runtime ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config.board import BoardConfig
from firmware.config.site import SiteConfig
from firmware.detect.fire import FireDetector
from firmware.errors import HardwareError
from firmware.frames import LatestQueue
from firmware.hal import registry
from firmware.hal.base import Output, ThermalCamera, ThermalFrame
from firmware.hal.registry import HalContext
from firmware.rules.deterrence import Deterrence
from firmware.rules.engine import RuleEngine
from firmware.uplink import protocol
from firmware.uplink.client import UplinkClient
from firmware.uplink.outbox import Outbox
from firmware.uplink.sender import Sender

logger = logging.getLogger(__name__)

CAMERA_RETRY_S = 1.0


@dataclass
class Devices:
    """The devices a board config opened."""

    thermal: ThermalCamera | None
    outputs: dict[str, Output]
    others: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Close everything (outputs must already be off)."""
        for dev in [self.thermal, *self.outputs.values(), *self.others.values()]:
            if dev is not None:
                try:
                    dev.close()
                except Exception as exc:  # closing the rest matters more than this error
                    logger.error("closing %r failed: %s", dev, exc)


def open_devices(board: BoardConfig, ctx: HalContext) -> Devices:
    """Open every device the board config names, through the backend registry."""
    outputs: dict[str, Output] = {}
    others: dict[str, Any] = {}
    thermal = None
    try:
        for name, cfg in board.outputs.items():
            outputs[name] = registry.create("output", name, cfg, ctx)
        for out in outputs.values():
            out.set(False)  # outputs start off, whatever state the hardware was left in
        if board.thermal is not None:
            thermal = registry.create("thermal", "thermal", board.thermal, ctx)
        if board.audio is not None:
            others["audio"] = registry.create("audio", "audio", board.audio, ctx)
        if board.modem is not None:
            others["modem"] = registry.create("modem", "modem", board.modem, ctx)
    except BaseException:
        Devices(thermal, outputs, others).close()
        raise
    return Devices(thermal, outputs, others)


class UnitRuntime:
    """One pole unit: devices, detection, rules, deterrence, outbox and uplink."""

    def __init__(
        self, board: BoardConfig, site: SiteConfig, ctx: HalContext, data_dir: Path
    ) -> None:
        self.board, self.site, self.ctx = board, site, ctx
        self.clock = ctx.clock
        self.devices = open_devices(board, ctx)
        try:
            self.outbox = Outbox(data_dir / "outbox.sqlite")
        except BaseException:
            self.devices.close()
            raise
        self.deterrence = Deterrence(self.devices.outputs, site.deterrence, self.clock)
        self.sender = Sender(
            self.outbox, UplinkClient(site.receiver, site.uplink.request_timeout_s), site.uplink
        )
        self.engine = RuleEngine(site, self.deterrence, self._commit, self.outbox.next_alarm_id)
        self.fire = FireDetector(site.detection.fire)
        fast = getattr(self.clock, "fast", False)
        self.frames: LatestQueue[ThermalFrame] = LatestQueue(1, lossless=fast)
        self.frames_processed = 0
        self._stop = asyncio.Event()
        self.on_alarm_committed: Callable[[str], None] | None = None

    def _commit(self, build: Callable[[int], protocol.Message], priority: int, ref: str) -> int:
        msg_id = self.outbox.commit(
            priority, ref, lambda mid: protocol.encode(build(mid)), self.clock.now()
        )
        self.sender.notify()
        if self.on_alarm_committed is not None:
            self.on_alarm_committed(ref)
        return msg_id

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
        self.deterrence.start_failsafe()
        tasks = [asyncio.create_task(self.sender.run(), name="sender")]
        if self.devices.thermal is not None:
            tasks.append(
                asyncio.create_task(self._capture(self.devices.thermal, stop_at), name="capture")
            )
            tasks.append(asyncio.create_task(self._detect(), name="detect"))
        try:
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if drain_timeout_s > 0:
                await self.drain(drain_timeout_s)
        finally:
            for task in [*tasks, stop]:
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
            self.deterrence.stop()
            await self.sender.client.close()
            self.devices.close()
            self.outbox.close()
            logger.info(
                "unit %s stopped after %d frames (%d dropped)",
                self.site.unit.id,
                self.frames_processed,
                self.frames.dropped,
            )

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (every alarm acknowledged) or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.depth() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.outbox.depth() == 0

    async def _capture(self, camera: ThermalCamera, stop_at: float | None) -> None:
        while stop_at is None or self.clock.now() < stop_at:
            try:
                frame = await asyncio.to_thread(camera.read)
            except HardwareError as exc:
                logger.error("thermal camera: %s; retrying in %g s", exc, CAMERA_RETRY_S)
                await asyncio.sleep(CAMERA_RETRY_S)
                continue
            await self.frames.put(frame)
        await self.frames.join()  # detection has finished the last frame
        self._stop.set()

    async def _detect(self) -> None:
        fire_on = (
            self.site.detection.fire.enabled
            and self.board.thermal is not None
            and self.board.thermal.radiometric
        )
        if not fire_on:
            logger.warning(
                "fire detection is off (disabled, or the thermal camera is not radiometric)"
            )
        while True:
            frame = await self.frames.get()
            if fire_on:
                spots = await asyncio.to_thread(self.fire.process, frame)
                self.engine.on_fire(frame, spots)
            self.frames_processed += 1
            self.frames.task_done()
