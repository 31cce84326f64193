"""``make bench``: speed and size figures, written to ``build/bench/results.json`` and printed.

The JSON file is one flat object of numbers; each run updates the keys it measures and keeps the
others, so figures from other benches (added later) survive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from firmware.config.load import load_site
from firmware.detect.fire import FireDetector
from firmware.hal.base import ThermalFrame
from firmware.uplink import protocol
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.bench_detect import bench_thermal, bench_unit_rss, bench_visible
from polewatch.bench_timing import timed
from polewatch.bench_uplink import bench_uplink
from polewatch.demo import play
from polewatch.netutil import free_port
from sim.runner import SimUnit
from sim.scenario import load_scenario, resolve, site_path
from sim.sensors import sensor_for
from sim.world import ParkingLotWorld

logger = logging.getLogger(__name__)

RESULTS = Path("build/bench/results.json")
UNITS = {
    "fire_detector_ms_per_frame": "ms",
    "sim_render_ms_per_frame": "ms",
    "demo_alarm_seconds": "s",
    "demo_scenario_wall_seconds": "s",
    "alarm_open_bytes": "B",
    "alarm_wire_bytes": "B",
    "alarm_ack_wire_bytes": "B",
    "heartbeat_wire_bytes": "B",
    "heartbeat_ack_wire_bytes": "B",
    "monthly_bytes_per_unit": "B",
    "receiver_ingest_msgs_per_s": "msg/s",
    "alarm_latency_p50_ms": "ms",
    "alarm_latency_p99_ms": "ms",
    "thermal_model_invoke_ms": "ms",
    "thermal_pipeline_ms_per_frame": "ms",
    "thermal_overhead_ratio": "x",
    "visible_model_invoke_ms": "ms",
    "visible_pipeline_ms_per_frame": "ms",
    "visible_overhead_ratio": "x",
    "unit_rss_mb": "MB",
    "fleet_ingest_msgs_per_s": "msg/s",
    "fleet_ack_p50_ms": "ms",
    "fleet_ack_p99_ms": "ms",
    "fleet_lost": "msg",
    "fleet_duplicates": "msg",
    "fleet_console_load_p50_ms": "ms",
    "fleet_console_load_p99_ms": "ms",
    "fleet_units": "units",
    "fleet_duration_s": "s",
}


def bench_frames(frames: int) -> dict[str, float]:
    """Fire detector and simulator cost per 160x120 radiometric frame (car fire burning)."""
    path = resolve("car_fire")
    scenario = load_scenario(path)
    site = load_site(site_path(scenario, path))
    world = ParkingLotWorld(scenario.world, 160, 120, scenario.scenario.seed)
    sensor = sensor_for("lepton35", seed=1)
    ignite = scenario.world.fires[0].ignite_at_s
    times = [ignite + 30 + i / 9 for i in range(frames)]
    render_ms = timed(lambda: sensor.capture(world.scene_c(times[0]), times[0]), frames)
    data = [sensor.capture(world.scene_c(t), t) for t in times]
    detector = FireDetector(site.detection.fire)
    it = iter(range(frames))

    def one() -> None:
        i = next(it)
        detector.process(ThermalFrame(i, times[i], data[i], True))

    detect_ms = timed(one, frames)
    assert np.max(data[-1]) > (100 + 273.15) * 100, "the bench frames must contain a fire"
    return {"fire_detector_ms_per_frame": detect_ms, "sim_render_ms_per_frame": render_ms}


def bench_demo() -> dict[str, float]:
    """Wall seconds from simulated fire onset to the alarm committed at the receiver."""
    path = resolve("car_fire")
    ignite_s = load_scenario(path).world.fires[0].ignite_at_s
    onset: list[float] = []

    def watch(unit: SimUnit) -> None:
        def tick(now: float) -> None:
            if not onset and now - unit.start >= ignite_s:
                onset.append(time.monotonic())

        unit.clock.on_advance(tick)

    async def run() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            receiver = Receiver(Path(tmp) / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
            await receiver.start()
            try:
                t0 = time.monotonic()
                result = await play(path, Path(tmp), 0.0, receiver, quiet=True, on_unit=watch)
                wall = time.monotonic() - t0
            finally:
                await receiver.stop()
        if result.problems:
            raise RuntimeError(f"the scenario failed: {result.problems}")
        ref = result.alarms[0].ref
        return result.committed_wall[ref] - onset[0], wall

    alarm_s, wall_s = asyncio.run(run())
    return {"demo_alarm_seconds": alarm_s, "demo_scenario_wall_seconds": wall_s}


def bench_sizes() -> dict[str, float]:
    """Bytes on the wire of a typical fire alarm's open message (before transport framing)."""
    msg = protocol.Alarm(
        unit_id="pole-0001",
        msg_id=123456,
        time_s=1_764_018_000,
        alarm_id=4711,
        event=protocol.EventKind.FIRE,
        priority=1,
        zone="lot",
        rule="fire-in-lot",
        max_temp_dc=1402,
        box=(40, 60, 52, 71),
        actions=(("floodlight", 120), ("siren", 60)),
        started_s=1_764_017_990,
    )
    return {"alarm_open_bytes": float(len(protocol.encode(msg)))}


def main() -> int:
    """Run the benches, merge into the results file, print a table."""
    parser = argparse.ArgumentParser(prog="python -m polewatch.bench", description=__doc__)
    parser.add_argument("--frames", type=int, default=300, help="frames to time (default 300)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file ({RESULTS})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures: dict[str, float] = {}
    figures.update(bench_frames(args.frames))
    figures.update(bench_thermal(args.frames))
    figures.update(bench_visible(min(args.frames, 100)))
    figures.update(bench_unit_rss())
    figures.update(bench_sizes())
    figures.update(bench_demo())
    figures.update(bench_uplink())
    write_results(figures, args.out)
    return 0


def write_results(figures: dict[str, float], out: Path = RESULTS) -> dict[str, float]:
    """Merge ``figures`` into the results file (other keys kept), print the table, return all."""
    results: dict[str, float] = {}
    if out.exists():
        results = json.loads(out.read_text())
    results.update({k: round(v, 4) for k, v in figures.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    width = max(len(k) for k in results)
    print(f"{'figure':<{width}}  {'value':>12}  unit")
    for key in sorted(results):
        print(f"{key:<{width}}  {results[key]:>12.4g}  {UNITS.get(key, '')}")
    print(f"written to {out}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
