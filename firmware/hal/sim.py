"""Simulated backends: real implementations with a recorded, timestamped history.

The thermal camera renders the simulator's world through a sensor model, paced by the clock: on a
fast clock each read advances simulated time by one frame period.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from firmware.clock import Clock, SimClock
from firmware.errors import ActuatorFault, HardwareError
from firmware.hal.base import (
    AudioPlayer,
    History,
    Modem,
    ModemStatus,
    Output,
    ThermalCamera,
    ThermalFrame,
    VisibleCamera,
    VisibleFrame,
)
from firmware.hal.registry import HalContext, SceneSource, SensorModel, register

logger = logging.getLogger(__name__)

FRAME_HISTORY = 10_000  # entries kept by continuously recording devices


class _FramePacer:
    """Hands out frame times: advances a fast clock, or waits for a paced/real one."""

    def __init__(self, clock: Clock, fps: float) -> None:
        self.clock = clock
        self.period = 1.0 / fps
        self.next_t: float | None = None

    def next(self) -> float:
        if isinstance(self.clock, SimClock) and self.clock.fast:
            return self.clock.advance(self.period)
        now = self.clock.now()
        if self.next_t is None or self.next_t < now - self.period:
            self.next_t = now  # first frame, or we fell behind: do not try to catch up
        speed = self.clock.speed if isinstance(self.clock, SimClock) else 1.0
        delay = (self.next_t - now) / speed
        if delay > 0:
            time.sleep(delay)
        t = self.next_t
        self.next_t += self.period
        return t


HUNG_STEP_REAL_S = 0.005  # real time per frame period of a hung camera in fast simulated time


@register("thermal", "sim")
class SimThermalCamera(ThermalCamera):
    """Renders the simulated world through a sensor model (Lepton 3.5 and others)."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        if ctx.scene is None or ctx.sensor_factory is None:
            raise HardwareError("the sim thermal camera needs a simulated world to look at")
        self.width, self.height = config.width, config.height
        self.fps, self.radiometric = config.fps, config.radiometric
        self.scene: SceneSource = ctx.scene
        self.sensor: SensorModel = ctx.sensor_factory(
            config.sensor,
            seed=ctx.seed,
            width=config.width,
            height=config.height,
            fps=config.fps,
            gain=config.gain,
        )
        self.sim_start = ctx.sim_start
        self.pacer = _FramePacer(ctx.clock, config.fps)
        self.index = 0
        self.history = History(maxlen=FRAME_HISTORY)
        self.unplugged = False  # scenarios pull the cable
        # Scenario camera faults (sim.camera_faults.FaultPlayer): cover, blind, turn, freeze, ...
        self.faults: Any = ctx.extras.get("camera_faults")

    def read(self) -> ThermalFrame:
        """Render and capture the next frame."""
        t = self.pacer.next()
        rel = t - self.sim_start
        if self.faults is not None and self.faults.hung(rel):
            self.history.record(t, "fault", "hung")
            while self.faults.hung(rel):  # time passes (the pacer moves it) and nothing comes
                t = self.pacer.next()
                rel = t - self.sim_start
                if isinstance(self.pacer.clock, SimClock) and self.pacer.clock.fast:
                    # Fast time would otherwise leap past the whole hang before the unit's
                    # event loop, which watches for it, ran once.
                    time.sleep(HUNG_STEP_REAL_S)
        if self.unplugged or (self.faults is not None and self.faults.unplugged(rel)):
            self.history.record(t, "fault", "unplugged")
            raise HardwareError("sim thermal camera: no frames (unplugged)")
        scene = self.scene.scene_c(rel)
        if self.faults is not None:
            scene = self.faults.scene(rel, scene)
        data = self.sensor.capture(scene, rel)
        if self.faults is not None:
            data = self.faults.frame(rel, data)
        self.index += 1
        self.history.record(t, "frame", self.index)
        return ThermalFrame(self.index, t, data, self.radiometric)


@register("visible", "sim")
class SimVisibleCamera(VisibleCamera):
    """A dark night-time visible camera: noise on black, enough to exercise the pipeline."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        self.width, self.height, self.fps = config.width, config.height, config.fps
        self.pacer = _FramePacer(ctx.clock, config.fps)
        self.rng = np.random.default_rng(ctx.seed)
        self.index = 0
        self.history = History(maxlen=FRAME_HISTORY)

    def read(self) -> VisibleFrame:
        """The next (dark, noisy) frame."""
        t = self.pacer.next()
        self.index += 1
        self.history.record(t, "frame", self.index)
        rgb = self.rng.integers(0, 12, (self.height, self.width, 3), dtype=np.uint8)
        return VisibleFrame(self.index, t, rgb)


@register("output", "sim")
class SimOutput(Output):
    """An output that records every switch with the clock's time."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        self.name, self.kind = name, config.kind
        self.clock = ctx.clock
        self.history = History()
        self._on = False
        self._lock = threading.Lock()
        self.fail = False  # scenarios and tests break the wiring

    def set(self, on: bool) -> None:
        """Switch and record."""
        if self.fail:
            raise ActuatorFault(f"sim output {self.name!r}: no response")
        with self._lock:
            if on == self._on:
                return
            self._on = on
            self.history.record(self.clock.now(), "on" if on else "off")

    @property
    def is_on(self) -> bool:
        """Current state."""
        return self._on


@register("audio", "sim")
class SimAudioPlayer(AudioPlayer):
    """Records which clips were played and stopped."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        self.clock = ctx.clock
        self.history = History()
        self.playing: str | None = None

    def play(self, clip: str) -> None:
        """Record the start of a clip."""
        self.playing = clip
        self.history.record(self.clock.now(), "play", clip)

    def stop(self) -> None:
        """Record the stop, if anything played."""
        if self.playing is not None:
            self.history.record(self.clock.now(), "stop", self.playing)
            self.playing = None


@register("modem", "sim")
class SimModem(Modem):
    """A modem registered on a simulated operator with steady signal; scenarios break it.

    ``sim_present``, ``registered`` and ``hung`` are the faults: a missing SIM, no registration,
    an AT port that does not answer. A soft reset cannot reach a hung modem; any reset that does
    reach it brings it back registered (if it has a SIM).
    """

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        self.clock = ctx.clock
        self.registered = True
        self.sim_present = True
        self.hung = False
        self.rssi_dbm = -71
        self.history = History(maxlen=FRAME_HISTORY)

    def status(self) -> ModemStatus:
        """Report the simulated link, and record the query."""
        if self.hung:
            self.history.record(self.clock.now(), "status", "hung")
            raise HardwareError("sim modem: AT+CPIN?: no answer (AT port hung)")
        if not self.sim_present:
            status = ModemStatus(False, sim="NOT INSERTED")
        else:
            status = ModemStatus(
                self.registered,
                "SIM-NET" if self.registered else None,
                self.rssi_dbm,
                registration="home" if self.registered else "searching",
            )
        self.history.record(self.clock.now(), "status", status)
        return status

    def reset(self, hard: bool) -> None:
        """Record the reset; the simulated modem comes back registered if the reset reaches it."""
        self.history.record(self.clock.now(), "reset", "hard" if hard else "soft")
        if self.hung and not hard:
            raise HardwareError("sim modem: AT+CFUN=1,1: no answer (AT port hung)")
        self.hung = False
        self.registered = self.sim_present
