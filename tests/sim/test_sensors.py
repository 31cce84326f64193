"""Thermal sensor models: output format, noise, saturation, resampling, the factory."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from sim.sensors import Lepton35, Mlx90640, ThermalSensorModel, counts_to_c, sensor_for
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


def test_lepton3_gives_raw_counts_with_a_gain_and_no_temperatures() -> None:
    sensor = sensor_for("lepton3", seed=2)
    assert sensor.radiometric is False and not hasattr(sensor, "to_c")
    assert (sensor.width, sensor.height, sensor.fps) == (160, 120, 9.0)
    cold = sensor.capture(uniform(10.0), 1.0).astype(float)
    warm = sensor.capture(uniform(20.0), 1.0).astype(float)
    assert cold.dtype == float and 7000 < cold.mean() < 9000
    per_k = (warm.mean() - cold.mean()) / 10.0
    assert 20.0 <= per_k <= 40.0
    assert float(warm.max()) < 2**14
    # The offset drifts slowly: the same scene reads differently minutes apart.
    later = sensor.capture(uniform(20.0), 300.0).astype(float)
    assert abs(later.mean() - warm.mean()) > 1.0


def test_mlx90640_shape_noise_and_field_of_view() -> None:
    sensor = sensor_for("mlx90640", seed=3, vignette_k=0.0, chess_k=0.0)
    assert isinstance(sensor, Mlx90640)
    assert (sensor.width, sensor.height) == (32, 24) and sensor.radiometric
    a = sensor.to_c(sensor.capture(uniform(20.0), 1.0))
    b = sensor.to_c(sensor.capture(uniform(20.0), 1.25))
    assert a.shape == (24, 32)
    temporal = float(np.std(a - b)) / np.sqrt(2.0)
    assert 0.1 <= temporal <= 0.25
    x0, y0, x1, y1 = sensor.view_box_for(160, 120)
    assert (x1 - x0) * 160 > (y1 - y0) * 120 * 1.5  # 55x35 deg: wider than the Lepton's 4:3
    # A hot band at the top of a Lepton-sized scene is outside the MLX's 35 deg.
    scene = uniform(20.0)
    scene[:10] = 100.0
    assert float(sensor.to_c(sensor.capture(scene, 1.0)).max()) < 25.0


def test_vignetting_darkens_corners() -> None:
    lepton = Lepton35(seed=1, noise_k=0.0, vignette_k=0.3)
    temps = lepton.to_c(lepton.capture(uniform(20.0), 0.0))
    assert float(temps[0, 0]) == pytest.approx(19.7, abs=0.06)
    assert float(temps[60, 80]) == pytest.approx(20.0, abs=0.06)
    mlx = sensor_for("mlx90640", seed=1, noise_k=0.0, chess_k=0.0)
    assert isinstance(mlx, Mlx90640)
    corner = float(mlx.to_c(mlx.capture(uniform(20.0, (24, 32)), 0.0))[0, 0])
    assert corner < 19.5


def test_ffc_freezes_frames_then_steps() -> None:
    sensor = Lepton35(seed=4, ffc_period_s=60.0, ffc_freeze_s=0.5, ffc_step_k=0.1)
    k, start = sensor.ffc_at(200.0)
    assert k == 3 and 180.0 <= start <= 183.0
    scene = uniform(20.0)
    before = sensor.capture(scene, start - 0.05)
    frozen = [sensor.capture(scene * (1 + t), start + t) for t in (0.0, 0.2, 0.45)]
    assert all(np.array_equal(f, before) for f in frozen)
    after = sensor.capture(scene, start + 0.55)
    assert not np.array_equal(after, before)
    assert sensor.in_ffc(start + 0.1) and not sensor.in_ffc(start + 0.6)
    assert not sensor.in_ffc(30.0)  # nothing before the first period
