"""Detection figures for ``make bench``: model invoke against whole pipeline, and the unit's RSS.

The pipelines are timed on the same frames as their models: the thermal one on simulated Lepton 3.5
frames of a lot with people and cars (the object model, fire, tamper, tracker and events all
running), the visible one on the reference images with the reference SSD model at one thread.
``unit_rss_mb`` is the peak resident memory of a ``polewatch unit`` process running with both
models loaded, sampled from ``/proc`` while it runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from firmware.config.load import load_board, load_site
from firmware.detect.pipeline import ThermalPipeline, VisiblePipeline
from firmware.detect.visible import VisibleDetection, VisibleDetector
from firmware.hal.base import ThermalFrame, VisibleFrame
from polewatch.bench_timing import timed
from sim.actors import Group, Person
from sim.sensors import sensor_for
from sim.world import Car, ParkingLotWorld, WorldSpec

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
SSD_DIR = SHARED / "models" / "ssd_mobilenet_v1_coco_quant"
IMAGES = ["grace_hopper.bmp", "squat.bmp", "0001.bmp", "kite_and_cold.jpg"]
RSS_RUN_S = 20.0

# A site that asks for every thermal event, so that every stage of the pipeline runs.
SITE_TEMPLATE = """
[unit]
id = "pole-bench"
[receiver]
host = "127.0.0.1"
port = {port}
[zones.lot]
polygon = [[0, 30], [160, 30], [160, 120], [0, 120]]
{visible}
[[rules]]
name = "fire"
event = "fire"
zones = ["lot"]
priority = 1
[[rules]]
name = "people"
event = "person"
zones = ["lot"]
priority = 3
[[rules]]
name = "down"
event = "person_down"
zones = ["lot"]
priority = 2
[[rules]]
name = "motion"
event = "motion_night"
zones = ["lot"]
priority = 5
"""
VISIBLE_SITE = """
[zones.street]
sensor = "visible"
polygon = [[0, 0], [640, 0], [640, 480], [0, 480]]
[detection.visible]
model = "{model}"
labels = "{labels}"
threads = 1
[[rules]]
name = "people-visible"
event = "person"
zones = ["street"]
priority = 3
"""


def _bench_world() -> WorldSpec:
    """A night lot with parked cars, walkers, a group and a person sitting."""
    return WorldSpec(
        cars=[
            Car(name="a", x_m=-3.0, y_m=9.0, heading_deg=180.0),
            Car(name="b", x_m=2.5, y_m=12.0),
        ],
        persons=[
            Person(name="walker", path=[(0.0, -6.0, 7.0), (60.0, 6.0, 10.0)]),
            Person(name="sitter", path=[(0.0, 1.0, 7.5)], postures=[(0.0, "sitting")]),
        ],
        groups=[Group(name="g", count=4, x_m=-1.0, y_m=14.0, from_x_m=-1.0, from_y_m=14.0)],
    )


def write_site(folder: Path, port: int, visible: bool) -> Path:
    """The bench's site config, with the visible model when the reference data is here."""
    extra = ""
    if visible:
        extra = VISIBLE_SITE.format(model=SSD_DIR / "detect.tflite", labels=SSD_DIR / "labels.txt")
    path = folder / "site.toml"
    path.write_text(SITE_TEMPLATE.format(port=port, visible=extra))
    return path


def bench_thermal(frames: int) -> dict[str, float]:
    """Thermal object model invoke against the whole thermal pipeline, same frames."""
    with tempfile.TemporaryDirectory() as tmp:
        site = load_site(write_site(Path(tmp), 5683, visible=False))
    world = ParkingLotWorld(_bench_world(), 160, 120, seed=3)
    sensor = sensor_for("lepton35", seed=3)
    data = [sensor.capture(world.scene_c(20 + i / 9), 20 + i / 9) for i in range(frames)]
    pipeline = ThermalPipeline(site, 160, 120, radiometric=True)
    detector = pipeline.detector
    assert detector is not None, "the bench site asks for persons: the model must run"
    thermal = [ThermalFrame(i, 20 + i / 9, d, True) for i, d in enumerate(data)]
    prepared = [detector.prepare(f) for f in thermal]
    it = iter(prepared)

    def invoke() -> None:
        # As the detector runs it: the outputs as the model gives them (it dequantises the few
        # cells it keeps).
        detector.runner.set_input(next(it))
        detector.runner.run_raw()

    invoke_ms = timed(invoke, frames)
    frame_it = iter(thermal)
    pipeline_ms = timed(lambda: pipeline.process(next(frame_it)), frames)
    return {
        "thermal_model_invoke_ms": invoke_ms,
        "thermal_pipeline_ms_per_frame": pipeline_ms,
        "thermal_overhead_ratio": pipeline_ms / invoke_ms,
    }


def _images() -> list[np.ndarray]:
    from PIL import Image

    out = []
    for name in IMAGES:
        with Image.open(SHARED / "images" / name) as img:
            out.append(np.asarray(img.convert("RGB").resize((640, 480))))
    return out


def bench_visible(frames: int) -> dict[str, float]:
    """Reference SSD invoke (one thread) against the visible pipeline, same frames."""
    if not SSD_DIR.exists():
        logger.warning("no reference SSD model in %s: visible figures skipped", SSD_DIR)
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        site = load_site(write_site(Path(tmp), 5683, visible=True))
    cfg = site.detection.visible
    assert isinstance(cfg, VisibleDetection)
    detector = VisibleDetector(cfg, 1)
    pipeline = VisiblePipeline(site, 640, 480, detector)
    images = _images()
    vframes = [VisibleFrame(i, i / 5, images[i % len(images)]) for i in range(frames)]
    for f in vframes[:3]:  # warm up XNNPACK
        pipeline.process(f)
    it = iter(vframes)

    def invoke() -> None:
        detector.preprocess(next(it).rgb)
        t0 = time.perf_counter()
        detector.runner.run()
        samples.append((time.perf_counter() - t0) * 1000)

    samples: list[float] = []
    for _ in range(frames):
        invoke()
    invoke_ms = float(np.median(samples))
    frame_it = iter(vframes)
    pipeline_ms = timed(lambda: pipeline.process(next(frame_it)), frames)
    return {
        "visible_model_invoke_ms": invoke_ms,
        "visible_pipeline_ms_per_frame": pipeline_ms,
        "visible_overhead_ratio": pipeline_ms / invoke_ms,
    }


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_unit_rss(run_s: float = RSS_RUN_S) -> dict[str, float]:
    """Peak RSS of a running ``polewatch unit`` with the thermal and visible models loaded.

    The unit is one as a real pole runs it, without the simulator (whose world and sensor models a
    real unit never imports): its thermal camera replays the reference Lepton 3 clip (raw counts,
    so fire detection is off), its visible camera is the simulated one (noise, numpy only), and
    its outputs, audio and modem are the sim board's.
    """
    clip = SHARED / "thermal" / "hedgehog_lepton3.cptv"
    if not SSD_DIR.exists():
        logger.warning("no reference SSD model in %s: unit_rss_mb skipped", SSD_DIR)
        return {}
    if not clip.is_file():
        logger.warning("no reference thermal clip at %s: unit_rss_mb skipped", clip)
        return {}
    import json

    from host_tools.provision.oscore import provision_oscore

    # The sim board without its simulated thermal camera, which renders the simulator's world.
    lines, in_thermal = [], False
    for line in (REPO / "board_configs" / "sim.toml").read_text().splitlines():
        if line.startswith("["):
            in_thermal = line.strip() == "[thermal]"
        if not in_thermal:
            lines.append(line)
    cameras = f"""
[thermal]
backend = "cptv"
path = {json.dumps(str(clip))}
loop = true
sensor = "lepton3"
width = 160
height = 120
fps = 9.0
radiometric = false

[visible]
backend = "sim"
width = 640
height = 480
fps = 2.0
"""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        board = folder / "board.toml"
        board.write_text("\n".join(lines) + "\n" + cameras)
        load_board(board)
        site = write_site(folder, 9, visible=True)  # port 9: the unit runs without a receiver
        provision_oscore("pole-bench", folder / "oscore", folder / "receiver-keys")
        cmd = [
            sys.executable,
            "-m",
            "polewatch.cli",
            "unit",
            "--board",
            str(board),
            "--site",
            str(site),
            "--data-dir",
            str(folder / "data"),
            "--security-dir",
            str(folder / "oscore"),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        peak = 0
        try:
            end = time.monotonic() + run_s
            while time.monotonic() < end and proc.poll() is None:
                peak = max(peak, _rss_kb(proc.pid))
                time.sleep(0.2)
            if proc.poll() is not None:
                raise RuntimeError(f"the unit exited early with {proc.returncode}: {cmd}")
        finally:
            proc.terminate()
            proc.wait(10)
    return {"unit_rss_mb": peak / 1024}
