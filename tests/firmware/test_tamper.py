"""Camera tamper and sensor faults on frames from the simulated world through sensor models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from firmware.config.site import SensorWatchConfig, TamperDetection
from firmware.detect.tamper import (
    EVAL_EVERY_S,
    MAX_C,
    MIN_C,
    SensorWatch,
    TamperDetector,
    _laplace_var,
    _percentiles,
)
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


def test_the_fast_measures_are_numpys() -> None:
    rng = np.random.default_rng(7)
    for shape, lo, span in [((120, 160), 27000, 3000), ((24, 32), 0, 16383), ((7, 9), 100, 0)]:
        data = rng.integers(lo, lo + span + 1, shape).astype(np.uint16)
        data[: shape[0] // 3] = data.max()  # a plateau: many equal values
        for q in ((2, 98), (1, 99)):
            expected = np.percentile(data.astype(np.float64), q)
            assert _percentiles(data, *q) == pytest.approx(tuple(expected), rel=1e-12)
        img = np.clip(data, lo + 0.25 * span, lo + 0.75 * span, dtype=np.float64)
        assert _laplace_var(img) == pytest.approx(float(ndimage.laplace(img).var()), rel=1e-12)


def test_out_of_range_is_counted_on_raw_values_as_on_temperatures() -> None:
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    temps = ThermalFrame(0, 0.0, values, True).celsius()
    watch = SensorWatch(SensorWatchConfig(out_of_range_frac=1.0))
    for rows in (slice(0, 256), slice(80, 90), slice(200, 256), slice(83, 84)):
        frame = ThermalFrame(0, 0.0, values[rows].copy(), True)
        expected = float(np.mean((temps[rows] < MIN_C) | (temps[rows] > MAX_C)))
        assert watch._out_of_range(frame) == expected
    raw = np.array([[0, 1, 9000, 16382, 16383, 20000]], dtype=np.uint16)
    assert watch._out_of_range(ThermalFrame(0, 0.0, raw, False)) == 3 / 6


def test_measures_are_taken_a_few_times_a_second_not_every_frame() -> None:
    det = TamperDetector(TamperDetection())
    measured_at = []
    for frame in frames("lepton35", 12.0):  # 9 fps; the reference is learnt over the first 5 s
        scores = det.scores
        det.process(frame)
        if det.scores is not scores:  # each measurement gives a new set of scores
            measured_at.append(frame.t)
    gaps = np.diff(measured_at)
    assert len(measured_at) >= 6.0 / (EVAL_EVERY_S + 1 / 9)
    assert gaps.min() >= EVAL_EVERY_S - 1e-6  # not on every frame
    assert gaps.max() <= EVAL_EVERY_S + 1 / 9 + 1e-6  # but on the first frame after the period


def test_a_read_that_fails_is_not_a_hang() -> None:
    watch = SensorWatch(SensorWatchConfig(no_frames_s=5.0))
    assert watch.check(100.0) is None
    for t in range(101, 120):  # the read fails once a second: the capture loop reports that
        watch.on_read(float(t))
        assert watch.check(t + 0.5) is None
    assert watch.check(124.0) == "no_frames"  # then it stops returning at all


def test_a_hang_fault_needs_an_end() -> None:
    with pytest.raises(ValueError, match="until_s: a hang fault needs an end"):
        CameraFault(kind="hang", at_s=5.0)
