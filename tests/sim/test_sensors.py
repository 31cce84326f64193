"""Thermal sensor models: output format, noise, saturation, resampling, the factory."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from sim.sensors import Lepton35, ThermalSensorModel, counts_to_c, sensor_for
from sim.world import Car, CarFire, ParkingLotWorld, WorldSpec

W, H = 160, 120


def uniform(temp_c: float, shape: tuple[int, int] = (H, W)) -> npt.NDArray[np.float32]:
    """A uniform scene."""
    return np.full(shape, temp_c, dtype=np.float32)


def test_output_is_uint16_centikelvin() -> None:
    sensor = Lepton35(seed=1)
    raw = sensor.capture(uniform(20.0), 0.0)
    assert raw.dtype == np.uint16
    assert raw.shape == (H, W)
    assert abs(float(raw.mean()) - 29315.0) < 2.0  # (20 + 273.15) * 100
    assert abs(float(counts_to_c(raw).mean()) - 20.0) < 0.01
    assert abs(float(sensor.to_c(raw).mean()) - 20.0) < 0.01


def test_defaults_match_the_lepton_35() -> None:
    sensor = Lepton35(seed=1)
    assert (sensor.width, sensor.height) == (160, 120)
    assert sensor.fps == 9.0
    assert sensor.radiometric is True
    assert sensor.gain == "high" and sensor.resolution_k == 0.01


@pytest.mark.parametrize("noise_k", [0.05, 0.2])
def test_temporal_noise_matches_noise_k(noise_k: float) -> None:
    sensor = Lepton35(seed=3, noise_k=noise_k)
    a = sensor.to_c(sensor.capture(uniform(20.0), 10.0))
    b = sensor.to_c(sensor.capture(uniform(20.0), 10.0 + 1 / 9))
    temporal = float(np.std(a - b)) / np.sqrt(2.0)  # the fixed pattern cancels in the difference
    assert temporal == pytest.approx(noise_k, rel=0.15)
    # Fixed pattern (~0.02 K) and quantisation add a little on top of it within one frame.
    assert noise_k <= float(np.std(a)) < noise_k + 0.02


def test_noise_is_a_function_of_seed_and_time() -> None:
    scene = uniform(20.0)
    a, b = Lepton35(seed=5), Lepton35(seed=5)
    b.capture(scene, 3.0)  # call order must not matter
    assert np.array_equal(a.capture(scene, 1.0), b.capture(scene, 1.0))
    assert not np.array_equal(a.capture(scene, 1.0), a.capture(scene, 2.0))
    assert not np.array_equal(a.capture(scene, 1.0), Lepton35(seed=6).capture(scene, 1.0))


def hot_block(temp_c: float) -> npt.NDArray[np.float32]:
    """A cold scene with a large block at temp_c."""
    scene = uniform(0.0)
    scene[40:80, 60:100] = temp_c
    return scene


def test_high_gain_saturates_at_140_c() -> None:
    sensor = Lepton35(seed=1)
    temps = sensor.to_c(sensor.capture(hot_block(800.0), 0.0))
    assert float(temps.max()) == pytest.approx(140.0, abs=0.006)
    assert np.allclose(temps[45:75, 65:95], 140.0, atol=0.006)


def test_low_gain_saturates_at_the_top_of_16_bit_centikelvin() -> None:
    sensor = Lepton35(seed=1, gain="low")
    assert sensor.resolution_k == 0.01  # same output format as high gain
    raw = sensor.capture(hot_block(800.0), 0.0)
    assert int(raw.max()) == 65535
    assert float(sensor.to_c(raw).max()) == pytest.approx(382.2, abs=0.006)
    assert float(sensor.to_c(sensor.capture(hot_block(300.0), 0.0)).max()) == pytest.approx(
        300.0, abs=0.3
    )


def test_low_gain_at_decikelvin_reads_up_to_450_c() -> None:
    sensor = Lepton35(seed=1, gain="low", resolution_k=0.1)
    raw = sensor.capture(hot_block(800.0), 0.0)
    temps = sensor.to_c(raw)
    assert float(temps.max()) == pytest.approx(450.0, abs=0.06)
    assert float(np.median(temps[:20])) == pytest.approx(0.0, abs=0.1)
    assert abs(float(counts_to_c(raw, 0.1)[60, 80]) - 450.0) < 0.06
    with pytest.raises(ValueError, match="resolution"):
        Lepton35(seed=1, resolution_k=0.05)


def test_cold_sky_clips_at_minus_10_c() -> None:
    sensor = Lepton35(seed=1)
    assert float(sensor.to_c(sensor.capture(uniform(-40.0), 0.0)).max()) == pytest.approx(
        -10.0, abs=0.006
    )


def test_optics_blur_spreads_a_point() -> None:
    scene = uniform(0.0)
    scene[60, 80] = 100.0
    temps = Lepton35(seed=1, noise_k=0.0).to_c(Lepton35(seed=1, noise_k=0.0).capture(scene, 0.0))
    assert 30.0 < temps[60, 80] < 95.0  # the peak is smeared...
    assert temps[60, 81] > 5.0 and temps[61, 80] > 5.0  # ...onto its neighbours
    assert abs(float(temps[60, 90])) < 0.1  # but not far


def test_other_scene_sizes_are_resampled() -> None:
    sensor = Lepton35(seed=1)
    for shape in ((240, 320), (60, 80), (100, 150)):
        temps = sensor.to_c(sensor.capture(uniform(25.0, shape), 0.0))
        assert temps.shape == (H, W)
        assert abs(float(temps.mean()) - 25.0) < 0.01
    # A hot left half stays a hot left half.
    big = uniform(0.0, (240, 320))
    big[:, :160] = 50.0
    temps = sensor.to_c(sensor.capture(big, 0.0))
    assert temps[:, :70].mean() > 49.0 and temps[:, 90:].mean() < 1.0


def test_sensor_for_builds_known_sensors() -> None:
    sensor = sensor_for("lepton35", seed=4, gain="low")
    assert isinstance(sensor, Lepton35)
    assert isinstance(sensor, ThermalSensorModel)
    assert sensor.gain == "low"
    assert sensor_for("Lepton35", seed=4).width == 160


def test_sensor_for_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="lepton35"):
        sensor_for("flir-x9000", seed=1)
    with pytest.raises(ValueError, match="gain"):
        Lepton35(seed=1, gain="medium")


def test_developed_car_fire_saturates_high_gain() -> None:
    spec = WorldSpec(
        cars=[Car(name="c", x_m=0.0, y_m=9.0, heading_deg=180.0)],  # engine bay toward us
        fires=[CarFire(car="c", ignite_at_s=5.0)],
    )
    world = ParkingLotWorld(spec, W, H, seed=9)
    sensor = Lepton35(seed=9)
    before = sensor.to_c(sensor.capture(world.scene_c(4.0), 4.0))
    assert float(before.max()) < 30.0
    early = sensor.to_c(sensor.capture(world.scene_c(15.0), 15.0))
    assert int((early > 100.0).sum()) >= 4  # enough for the detector within 10 s
    full = sensor.to_c(sensor.capture(world.scene_c(305.0), 305.0))
    assert int((full >= 139.99).sum()) > 100
