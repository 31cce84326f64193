"""The radiometric fire detector: threshold, minimum area and persistence, from config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.config.site import FireDetection
from firmware.detect.fire import GAP_S, FireDetector, raw_threshold
from firmware.hal.base import ThermalFrame
from sim.scenario import load_scenario
from sim.sensors import Lepton35
from sim.world import ParkingLotWorld, WorldSpec


def frame(
    index: int,
    hot: list[tuple[int, int, int, int, float]],
    base_c: float = 5.0,
    shape: tuple[int, int] = (120, 160),
) -> ThermalFrame:
    temps = np.full(shape, base_c, dtype=np.float64)
    for u0, v0, u1, v1, t in hot:
        temps[v0 : v1 + 1, u0 : u1 + 1] = t
    data = np.round((temps + 273.15) * 100).astype(np.uint16)
    return ThermalFrame(index, 1000.0 + index / 9, data, True)


CONFIG = FireDetection(threshold_c=100.0, min_area_px=4, persistence_frames=3)


def test_confirms_after_persistence_frames_only() -> None:
    det = FireDetector(CONFIG)
    spot = (50, 60, 53, 63, 130.0)  # 4x4 px at 130 C
    assert det.process(frame(1, [spot])) == []
    assert det.process(frame(2, [spot])) == []
    found = det.process(frame(3, [spot]))
    assert len(found) == 1
    assert found[0].box == (50, 60, 53, 63)
    assert found[0].area_px == 16
    assert abs(found[0].max_temp_c - 130.0) < 0.01
    assert found[0].bottom_centre == (52.0, 64.0)


def test_a_short_flicker_is_bridged_and_a_long_gap_resets_persistence() -> None:
    det = FireDetector(CONFIG)
    spot = (50, 60, 53, 63, 130.0)
    det.process(frame(1, [spot]))
    det.process(frame(2, [spot]))
    assert det.process(frame(3, [])) == []  # not seen: nothing reported
    assert det.process(frame(4, [])) == []
    [confirmed] = det.process(frame(5, [spot]))  # a short gap: the same spot, third sighting
    assert confirmed.frames_seen == 3
    gap = int(GAP_S * 9) + 1  # frames are 1/9 s apart
    for i in range(6, 6 + gap):
        assert det.process(frame(i, [])) == []
    assert det.process(frame(6 + gap, [spot])) == []  # forgotten: counting starts again


def test_fragments_a_pixel_apart_are_one_spot() -> None:
    det = FireDetector(CONFIG)
    for i in range(3):
        spots = det.process(frame(i, [(50, 60, 53, 63, 300.0), (55, 60, 58, 63, 150.0)]))
    [spot] = spots
    assert spot.box == (50, 60, 58, 63)
    assert spot.area_px == 32
    assert spot.max_temp_c == pytest.approx(300.0, abs=0.01)


def test_below_threshold_and_too_small_are_ignored() -> None:
    det = FireDetector(CONFIG)
    for i in range(10):
        assert (
            det.process(
                frame(
                    i,
                    [
                        (10, 10, 20, 20, 99.0),  # warm but below threshold
                        (80, 80, 80, 82, 400.0),
                    ],
                )
            )
            == []
        )  # 3 px: below min area


def test_spot_keeps_its_id_while_it_moves_and_grows() -> None:
    det = FireDetector(CONFIG)
    ids: set[int] = set()
    for i in range(8):
        spots = det.process(frame(i, [(50 + i // 2, 60, 53 + i, 63 + i, 200.0 + i)]))
        ids.update(s.spot_id for s in spots)
    assert len(ids) == 1


def test_two_separate_fires_are_two_spots() -> None:
    det = FireDetector(CONFIG)
    for i in range(3):
        spots = det.process(frame(i, [(10, 10, 13, 13, 300.0), (100, 90, 104, 95, 300.0)]))
    assert len({s.spot_id for s in spots}) == 2


def test_works_at_mlx90640_resolution() -> None:
    det = FireDetector(FireDetection(threshold_c=80.0, min_area_px=1, persistence_frames=2))
    hot = [(10, 10, 11, 11, 150.0)]
    det.process(frame(1, hot, shape=(24, 32)))
    assert len(det.process(frame(2, hot, shape=(24, 32)))) == 1


def test_persistence_of_one_confirms_at_once() -> None:
    det = FireDetector(FireDetection(threshold_c=100.0, min_area_px=1, persistence_frames=1))
    assert len(det.process(frame(1, [(5, 5, 6, 6, 150.0)]))) == 1


# Robustness: growth, known warm objects, and the simulated world through the Lepton 3.5 model.


def noisy_frame(
    index: int, temps: np.ndarray, rng: np.random.Generator, fps: float = 9.0
) -> ThermalFrame:
    noisy = temps + rng.normal(0.0, 0.05, temps.shape)
    data = np.round((noisy + 273.15) * 100).astype(np.uint16)
    return ThermalFrame(index, 1000.0 + index / fps, data, True)


def test_a_cooling_engine_hood_never_raises() -> None:
    det = FireDetector(FireDetection())  # default threshold 100 C
    rng = np.random.default_rng(1)
    for i in range(9 * 120):  # two minutes, from 130 C cooling by 0.2 K/s
        temps = np.full((120, 160), 5.0)
        temps[70:85, 60:100] = 130.0 - 0.2 * i / 9  # a hood: 600 px, 3 % of the frame
        assert det.process(noisy_frame(i, temps, rng)) == []


def test_a_hot_spot_arriving_on_a_moving_car_never_raises() -> None:
    det = FireDetector(FireDetection())
    rng = np.random.default_rng(2)
    for i in range(9 * 60):
        temps = np.full((120, 160), 5.0)
        u = min(5 + i, 70)  # drives in from the left, parks after ~7 s, then cools
        temps[80:83, u : u + 3] = 135.0 - 0.05 * max(i - 65, 0) / 9  # the exhaust: 9 px
        assert det.process(noisy_frame(i, temps, rng)) == []


def test_sun_heated_asphalt_under_a_lowered_threshold_never_raises() -> None:
    det = FireDetector(FireDetection(threshold_c=45.0))
    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[0:120, 0:160]
    for i in range(9 * 60):
        # Asphalt 50-80 C with a large-scale pattern, warming slowly; a car roof at 70 C.
        temps = 50.0 + 30.0 * (ys / 120.0) * (0.5 + 0.5 * np.sin(xs / 17.0)) + 0.01 * i / 9
        temps[40:60, 30:70] = 70.0
        temps[:20] = 20.0  # the far end, in shade
        assert det.process(noisy_frame(i, temps, rng)) == []


def test_a_small_fire_growing_from_below_the_threshold_is_confirmed() -> None:
    det = FireDetector(FireDetection())
    rng = np.random.default_rng(4)
    confirmed_at = None
    for i in range(9 * 20):
        temps = np.full((120, 160), 5.0)
        r = 1 + i // 18  # spreading by a pixel every 2 s
        temps[60 - r : 60 + r, 80 - r : 80 + r] = 90.0 + 1.0 * i / 9  # crosses 100 C after 10 s
        if det.process(noisy_frame(i, temps, rng)) and confirmed_at is None:
            confirmed_at = i / 9
    assert confirmed_at is not None and 10.0 <= confirmed_at <= 13.0


SCENARIO = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "car_fire.toml"


def run_world(spec: WorldSpec, until_s: float, config: FireDetection) -> list[float]:
    """Times (s after start) of frames with a confirmed spot, Lepton 3.5 at 9 Hz."""
    world = ParkingLotWorld(spec, 160, 120, seed=7)
    sensor = Lepton35(seed=7)
    det = FireDetector(config)
    times = []
    for i in range(round(until_s * 9)):
        t = i / 9
        frame = ThermalFrame(i, t, sensor.capture(world.scene_c(t), t), True)
        if det.process(frame):
            times.append(t)
    return times


def test_the_simulated_car_fire_is_confirmed_within_3_s_of_ignition() -> None:
    scenario = load_scenario(SCENARIO)
    [fire] = scenario.world.fires
    times = run_world(scenario.world, fire.ignite_at_s + 5.0, FireDetection())
    assert times, "the car fire was never confirmed"
    assert fire.ignite_at_s <= times[0] <= fire.ignite_at_s + 3.0


@pytest.mark.parametrize("threshold_c", [100.0, 60.0])
def test_a_simulated_car_with_a_hot_engine_is_no_fire(threshold_c: float) -> None:
    spec = load_scenario(SCENARIO).world.model_copy(deep=True)
    spec.fires = []
    spec.cars[2].engine_c = 120.0
    assert run_world(spec, 30.0, FireDetection(threshold_c=threshold_c)) == []


@pytest.mark.parametrize("threshold_c", [40.0, 100.0, 100.004, 382.0, 1000.0])
def test_the_raw_threshold_is_the_temperature_threshold(threshold_c: float) -> None:
    values = np.arange(65536, dtype=np.uint16)
    temps = ThermalFrame(0, 0.0, values, True).celsius()
    assert np.array_equal(values >= raw_threshold(threshold_c), temps >= threshold_c)


def test_the_background_catches_up_while_nothing_is_hot() -> None:
    """Stepped every BACKGROUND_EVERY_S with nothing hot in view, it stays the running average."""
    det = FireDetector(FireDetection(background_tau_s=10.0))
    for i in range(9 * 20):  # 20 s of a place warming from 5 C to 45 C
        det.process(frame(i, [(40, 40, 59, 59, 5.0 + 2.0 * i / 9)]))
    assert det._background is not None
    # A first-order lag of 10 s behind a 2 K/s ramp: 20 K behind, less the start-up transient.
    expected = 45.0 - 2.0 * 10.0 * (1.0 - np.exp(-2.0))
    assert float(det._background[50, 50]) == pytest.approx(expected, abs=0.3)
    assert float(det._background[0, 0]) == pytest.approx(5.0, abs=1e-3)


def test_a_hot_hood_driving_in_from_the_edge_and_across_is_never_a_fire() -> None:
    """It appears at the edge, grows while it enters and then travels: a car, not a fire."""
    det = FireDetector(CONFIG)
    confirmed = []
    for i in range(120):  # 13 s at 9 fps, 1.5 px per frame from the right edge
        right = 159 - max(0, int(1.5 * i) - 25)
        left = max(159 - int(1.5 * i), 0)
        confirmed += det.process(frame(i, [(left, 60, min(right, 159), 75, 160.0)]))
    assert confirmed == []


def test_a_fire_at_the_edge_that_keeps_growing_is_confirmed_after_the_entry_time() -> None:
    det = FireDetector(CONFIG)
    first = None
    for i in range(90):  # grows from the left edge, 1 px every 2 frames
        found = det.process(frame(i, [(0, 60, 3 + i // 2, 75, 150.0)]))
        if found and first is None:
            first = i / 9
    assert first is not None and 3.0 <= first <= 6.0


def test_a_flickering_fire_away_from_the_edge_is_not_taken_for_a_car() -> None:
    det = FireDetector(CONFIG)
    rng = np.random.default_rng(1)
    confirmed = False
    for i in range(30):
        jitter = int(rng.integers(-2, 3))
        spot = (60 + jitter, 50 + int(rng.integers(-3, 1)), 70 + jitter, 65, 300.0)
        confirmed |= bool(det.process(frame(i, [spot])))
    assert confirmed
