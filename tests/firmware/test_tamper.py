"""Camera tamper and sensor faults on frames from the simulated world through sensor models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from firmware.config.site import SensorWatchConfig, TamperDetection
from firmware.detect.tamper import SensorWatch, TamperDetector
from firmware.hal.base import ThermalFrame
from sim.camera_faults import CameraFault, FaultPlayer
from sim.scenario import load_scenario
from sim.sensors import Lepton35
from sim.world import ParkingLotWorld, WorldSpec

SCENARIO = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "car_fire.toml"
# name: (width, height, fps, noise K, radiometric)
SENSORS = {
    "lepton35": (160, 120, 9.0, 0.05, True),
    "lepton3": (160, 120, 9.0, 0.05, False),
    "mlx90640": (32, 24, 8.0, 0.25, True),
}
FFC_EVERY_S, FFC_PAUSE_S = 120.0, 1.0


def lot() -> WorldSpec:
    spec = load_scenario(SCENARIO).world.model_copy(deep=True)
    spec.fires = []
    return spec


def frames(
    sensor: str, seconds: float, faults: Sequence[CameraFault] = (), start_s: float = 0.0
) -> Iterator[ThermalFrame]:
    """Frames of the lot, with a flat-field pause (the frame held) every FFC_EVERY_S."""
    width, height, fps, noise, radiometric = SENSORS[sensor]
    world = ParkingLotWorld(lot(), width, height, seed=3)
    model = Lepton35(seed=3, width=width, height=height, fps=fps, noise_k=noise)
    player = FaultPlayer(faults)
    held = None
    for i in range(round(seconds * fps)):
        t = start_s + i / fps
        if player.unplugged(t):
            continue
        if t % FFC_EVERY_S < FFC_PAUSE_S and held is not None:
            data = held  # flat-field correction: the last frame again
        else:
            data = player.frame(t, model.capture(player.scene(t, world.scene_c(t)), t))
            held = data
        if not radiometric:  # Lepton 3: raw 14-bit counts, ~50 counts per kelvin, no offset known
            counts = 8000.0 + (data.astype(np.float64) - 27315.0) * 0.5
            data = np.clip(np.rint(counts), 0, 16383).astype(np.uint16)
        yield ThermalFrame(i, t, data, radiometric)


@pytest.mark.parametrize("sensor", sorted(SENSORS))
@pytest.mark.parametrize(
    ("fault", "expected"),
    [("cover", "covered"), ("blind", "blinded"), ("turn", "turned"), ("defocus", "defocused")],
)
def test_each_tamper_is_raised_within_10_s(sensor: str, fault: str, expected: str) -> None:
    det = TamperDetector(TamperDetection())
    at_s = 20.0
    raised_at = None
    for frame in frames(
        sensor, at_s + 10.0, [CameraFault.model_validate({"kind": fault, "at_s": at_s})]
    ):
        state = det.process(frame)
        if frame.t < at_s:
            assert state is None, f"{state} before the fault, at {frame.t:.1f} s: {det.scores}"
        elif state is not None and raised_at is None:
            assert state == expected, det.scores
            raised_at = frame.t
    assert raised_at is not None, f"never raised: {det.scores}"
    assert raised_at - at_s <= 10.0


@pytest.mark.parametrize("sensor", sorted(SENSORS))
def test_a_normal_night_with_flat_field_pauses_raises_nothing(sensor: str) -> None:
    det = TamperDetector(TamperDetection())
    watch = SensorWatch(SensorWatchConfig())
    for frame in frames(sensor, 300.0, start_s=100.0):  # FFC pauses at 120, 240, 360 s
        assert det.process(frame) is None, (frame.t, det.scores)
        assert watch.on_frame(frame) is None, frame.t
        assert watch.check(frame.t + 0.2) is None


def test_a_cleared_cover_clears_the_tamper() -> None:
    det = TamperDetector(TamperDetection())
    states = []
    for frame in frames("lepton35", 45.0, [CameraFault(kind="cover", at_s=10.0, until_s=25.0)]):
        states.append((frame.t, det.process(frame)))
    assert any(s == "covered" for t, s in states if 13.0 <= t < 25.0)
    assert all(s is None for t, s in states if t >= 30.0)


@pytest.mark.parametrize("sensor", ["lepton35", "lepton3"])
def test_a_frozen_image_is_a_sensor_fault_and_a_flat_field_pause_is_not(sensor: str) -> None:
    watch = SensorWatch(SensorWatchConfig(frozen_s=5.0))
    found = []
    for frame in frames(sensor, 30.0, [CameraFault(kind="freeze", at_s=10.0, until_s=20.0)]):
        found.append((frame.t, watch.on_frame(frame)))
    assert [s for t, s in found if t < 14.8] == [None] * len([t for t, _ in found if t < 14.8])
    assert all(s == "frozen" for t, s in found if 15.1 <= t < 20.0)
    assert all(s is None for t, s in found if t >= 20.0)


def test_no_frames_for_a_while_is_a_sensor_fault() -> None:
    watch = SensorWatch(SensorWatchConfig(no_frames_s=5.0))
    assert watch.check(100.0) is None  # nothing yet, but only just started
    assert watch.check(105.0) == "no_frames"
    last = None
    for frame in frames("lepton35", 20.0, [CameraFault(kind="unplug", at_s=5.0, until_s=15.0)]):
        if last is not None:
            # Between frames, ask as the runtime would: the gap of the unplugged cable shows.
            for now in np.arange(last + 0.25, frame.t, 0.25):
                if now - last >= 5.0:
                    assert watch.check(float(now)) == "no_frames"
                else:
                    assert watch.check(float(now)) is None
        assert watch.on_frame(frame) is None
        last = frame.t
    assert last is not None and last > 15.0


def test_values_no_scene_gives_are_out_of_range() -> None:
    watch = SensorWatch(SensorWatchConfig())
    zero = ThermalFrame(1, 0.0, np.zeros((120, 160), np.uint16), True)  # -273 C
    assert watch.on_frame(zero) == "out_of_range"
    stuck = np.full((24, 32), 16383, np.uint16)
    stuck[:4] = 9000
    assert watch.on_frame(ThermalFrame(2, 0.1, stuck, False)) == "out_of_range"
    [frame] = list(frames("mlx90640", 0.1))
    assert watch.on_frame(frame) is None
