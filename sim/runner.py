"""Runs one simulated unit playing a scenario, against a receiver over real loopback CoAP."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from firmware.clock import SimClock
from firmware.config.load import load_pair
from firmware.config.site import ReceiverEndpoint, SiteConfig
from firmware.hal.base import HistoryEntry
from firmware.hal.registry import HalContext
from firmware.hal.sim import SimOutput
from firmware.runtime import UnitRuntime
from host_tools.provision.oscore import provision_oscore
from sim.camera_faults import FaultPlayer
from sim.scenario import Scenario, board_path, load_scenario, site_path
from sim.sensors import sensor_for
from sim.world import ParkingLotWorld

logger = logging.getLogger(__name__)


@dataclass
class SimUnit:
    """A unit runtime wired to a simulated world, and what it needs to be checked afterwards."""

    scenario: Scenario
    runtime: UnitRuntime
    clock: SimClock

    @property
    def start(self) -> float:
        """Simulated epoch time of the scenario's start."""
        return self.clock.start

    @property
    def stop_at(self) -> float:
        """Simulated epoch time at which the scenario ends."""
        return self.start + self.scenario.scenario.duration_s

    def output_histories(self) -> dict[str, list[HistoryEntry]]:
        """Every output's recorded switches."""
        return {
            name: out.history.snapshot()
            for name, out in self.runtime.devices.outputs.items()
            if isinstance(out, SimOutput)
        }


def build_sim_unit(
    scenario_path: Path,
    data_dir: Path,
    speed: float,
    receiver: tuple[str, int] | None = None,
    seed: int | None = None,
    receiver_keys: Path | None = None,
) -> SimUnit:
    """Load a scenario and its configs and build the unit (not started).

    With ``receiver_keys`` (the receiver's key directory), a unit that has no OSCORE context yet
    is provisioned with that receiver, as a technician would before it first reports.
    """
    scenario = load_scenario(scenario_path)
    board, site = load_pair(board_path(scenario, scenario_path), site_path(scenario, scenario_path))
    if receiver is not None:
        site = with_receiver(site, *receiver)
    info = scenario.scenario
    clock = SimClock(info.start.timestamp(), speed)
    seed = info.seed if seed is None else seed
    thermal = board.thermal
    scene = None
    if thermal is not None:
        scene = ParkingLotWorld(scenario.world, thermal.width, thermal.height, seed)
    ctx = HalContext(
        clock=clock, scene=scene, sensor_factory=sensor_for, sim_start=clock.start, seed=seed
    )
    if scenario.camera_faults:
        ctx.extras["camera_faults"] = FaultPlayer(scenario.camera_faults)
    security = data_dir / "oscore"
    if receiver_keys is not None and not security.exists():
        provision_oscore(site.unit.id, security, receiver_keys)
    runtime = UnitRuntime(board, site, ctx, data_dir, security)
    logger.info(
        "scenario %s: %s; %g s simulated from %s at %s",
        info.name,
        info.description,
        info.duration_s,
        info.start.isoformat(),
        "full speed" if speed == 0 else f"{speed:g}x",
    )
    return SimUnit(scenario, runtime, clock)


def with_receiver(site: SiteConfig, host: str, port: int) -> SiteConfig:
    """The same site config pointed at another receiver (simulations pick their own ports)."""
    return site.model_copy(update={"receiver": ReceiverEndpoint(host=host, port=port)})
