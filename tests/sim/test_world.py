"""The simulated parking-lot world: determinism, perspective, occlusion, fire growth, validation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sim.world import CameraPose, Car, CarFire, ParkingLotWorld, WorldSpec

W, H = 160, 120
IGNITE_S = 15.0


def lot_spec(**overrides: object) -> WorldSpec:
    """A small lot: a row of four cars 8 m ahead, two behind, the third one burning."""
    data: dict[str, object] = {
        "ambient_c": 2.0,
        "sky_c": -30.0,
        "camera": {"height_m": 6.0, "pitch_deg": 27.0},
        "cars": [
            {"name": "a0", "x_m": -3.9, "y_m": 8.0, "heading_deg": 180},
            {"name": "a1", "x_m": -1.3, "y_m": 8.0, "heading_deg": 180, "engine_c": 45.0},
            {"name": "a2", "x_m": 1.3, "y_m": 8.0, "heading_deg": 180},
            {"name": "a3", "x_m": 3.9, "y_m": 8.0, "heading_deg": 180},
            {"name": "b0", "x_m": -2.6, "y_m": 12.5},
            {"name": "b1", "x_m": 2.6, "y_m": 12.5},
        ],
        "fires": [{"car": "a2", "ignite_at_s": IGNITE_S}],
    }
    data.update(overrides)
    return WorldSpec.model_validate(data)


def box_area(box: tuple[int, int, int, int] | None) -> int:
    """Pixel area of a (u0, v0, u1, v1) box with exclusive ends."""
    assert box is not None
    u0, v0, u1, v1 = box
    return (u1 - u0) * (v1 - v0)


def test_scene_is_float32_image_of_a_cold_night() -> None:
    world = ParkingLotWorld(lot_spec(), W, H, seed=7)
    img = world.scene_c(0.0)
    assert img.dtype == np.float32
    assert img.shape == (H, W)
    assert np.isfinite(img).all()
    # Near asphalt (bottom rows, in front of the cars) sits close to the air temperature.
    assert abs(float(np.median(img[-10:])) - 2.0) < 1.0
    # The recently driven car's engine is the warmest thing before the fire.
    assert 40.0 < float(img.max()) <= 45.5


def test_sky_is_colder_than_ground_and_warmer_toward_horizon() -> None:
    spec = WorldSpec(camera=CameraPose(pitch_deg=0.0))
    img = ParkingLotWorld(spec, W, H, seed=1).scene_c(0.0)
    top, above_horizon, bottom = img[0].mean(), img[H // 2 - 2].mean(), img[-1].mean()
    assert top < above_horizon < bottom
    assert top < -20.0
    assert abs(bottom - 2.0) < 1.0


def test_same_seed_same_scene_regardless_of_call_order() -> None:
    spec = lot_spec()
    a = ParkingLotWorld(spec, W, H, seed=7)
    b = ParkingLotWorld(spec, W, H, seed=7)
    a.scene_c(100.0)  # a different frame first must not change what t=40 looks like
    for t in (0.0, 40.0, 40.0):
        assert np.array_equal(a.scene_c(t), b.scene_c(t))
    assert a.fire_box(0, 40.0) == b.fire_box(0, 40.0)


def test_different_seed_different_scene() -> None:
    spec = lot_spec()
    a = ParkingLotWorld(spec, W, H, seed=7)
    b = ParkingLotWorld(spec, W, H, seed=8)
    assert not np.array_equal(a.scene_c(0.0), b.scene_c(0.0))
    assert not np.array_equal(a.scene_c(60.0), b.scene_c(60.0))


def test_scene_changes_over_time_only_with_fire() -> None:
    world = ParkingLotWorld(lot_spec(), W, H, seed=3)
    assert np.array_equal(world.scene_c(0.0), world.scene_c(IGNITE_S - 1.0))
    assert not np.array_equal(world.scene_c(IGNITE_S + 30.0), world.scene_c(IGNITE_S + 30.5))


def warm_car_pixels(y_m: float) -> int:
    """Pixels showing a lone warm car parked y_m ahead of the camera."""
    spec = WorldSpec(cars=[Car(name="c", x_m=0.0, y_m=y_m, body_c=30.0)])
    img = ParkingLotWorld(spec, W, H, seed=1).scene_c(0.0)
    return int((img > 15.0).sum())


def test_far_car_covers_fewer_pixels_than_near_car() -> None:
    near, far = warm_car_pixels(12.0), warm_car_pixels(40.0)
    assert far > 0
    assert near > 5 * far


def test_project_ground_ahead_lands_below_horizon() -> None:
    world = ParkingLotWorld(WorldSpec(), W, H, seed=1)
    horizon = world.project(0.0, 1.0e7, 0.0)
    ahead = world.project(0.0, 10.0, 0.0)
    assert horizon is not None and ahead is not None
    u, v = ahead
    assert abs(u - W / 2) < 0.5  # straight ahead is the middle column
    assert horizon[1] < v < H
    assert world.project(0.0, -5.0, 0.0) is None  # behind the camera
    # Right is +x, up is +z.
    right = world.project(2.0, 10.0, 0.0)
    higher = world.project(0.0, 10.0, 1.0)
    assert right is not None and right[0] > u
    assert higher is not None and higher[1] < v
    # Yaw is compass-like: 90 deg looks along +x.
    east = ParkingLotWorld(WorldSpec(camera=CameraPose(yaw_deg=90.0)), W, H, seed=1)
    seen = east.project(10.0, 0.0, 0.0)
    assert seen is not None and abs(seen[0] - W / 2) < 0.5 and seen[1] > H / 2


def test_project_agrees_with_rendering() -> None:
    spec = WorldSpec(cars=[Car(name="c", x_m=3.0, y_m=11.0, heading_deg=30.0, body_c=30.0)])
    world = ParkingLotWorld(spec, W, H, seed=1)
    roof = world.project(3.0, 11.0, 1.5)
    assert roof is not None
    u, v = roof
    # Just below the roof centre is the car (roof or glass), not the cold asphalt behind it.
    assert world.scene_c(0.0)[int(v) + 1, int(u)] > 15.0


def test_near_car_hides_far_car_behind_it() -> None:
    far = Car(name="far", x_m=0.0, y_m=15.0, body_c=40.0)
    near = Car(name="near", x_m=0.0, y_m=10.0, body_c=5.0)
    only_far = ParkingLotWorld(WorldSpec(cars=[far]), W, H, seed=1)
    # The far car is listed first: the nearer one must win by depth, not by drawing order.
    both = ParkingLotWorld(WorldSpec(cars=[far, near]), W, H, seed=1)
    point = only_far.project(0.0, 15.0 - 4.5 / 2, 0.4)  # low on the far car's rear
    assert point is not None
    u, v = int(point[0]), int(point[1])
    assert only_far.scene_c(0.0)[v, u] > 30.0
    assert both.scene_c(0.0)[v, u] < 10.0


def test_no_hot_pixels_before_ignition() -> None:
    world = ParkingLotWorld(lot_spec(), W, H, seed=5)
    for t in (0.0, 5.0, IGNITE_S - 0.2):
        assert float(world.scene_c(t).max()) <= 60.0
        assert world.fire_box(0, t) is None


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_fire_gets_hot_fast_and_grows(seed: int) -> None:
    world = ParkingLotWorld(lot_spec(), W, H, seed=seed)
    assert max(float(world.scene_c(IGNITE_S + dt).max()) for dt in (2.0, 5.0, 10.0)) > 100.0
    early, late = world.scene_c(IGNITE_S + 10.0), world.scene_c(IGNITE_S + 120.0)
    assert int((late > 100.0).sum()) > 3 * int((early > 100.0).sum()) > 0
    assert box_area(world.fire_box(0, IGNITE_S + 120.0)) > box_area(
        world.fire_box(0, IGNITE_S + 10.0)
    )
    # Fully developed, the flames approach the peak temperature.
    assert float(world.scene_c(IGNITE_S + 300.0).max()) > 600.0


def test_fire_box_surrounds_the_flames() -> None:
    world = ParkingLotWorld(lot_spec(), W, H, seed=2)
    t = IGNITE_S + 60.0
    box = world.fire_box(0, t)
    assert box is not None
    u0, v0, u1, v1 = box
    assert 0 <= u0 < u1 <= W and 0 <= v0 < v1 <= H
    img = world.scene_c(t)
    v, u = np.unravel_index(int(np.argmax(img)), img.shape)
    assert u0 <= u < u1 and v0 <= v < v1
    # The burning car is a2, right of the image centre.
    a2 = world.project(1.3, 8.0, 0.8)
    assert a2 is not None and u0 - 2 <= a2[0] <= u1 + 2
    with pytest.raises(IndexError):
        world.fire_box(1, t)


def test_fire_warms_the_ground_around_the_car() -> None:
    world = ParkingLotWorld(lot_spec(), W, H, seed=4)
    beside = world.project(2.6, 6.5, 0.0)  # asphalt between the burning car and its neighbour
    assert beside is not None
    u, v = int(beside[0]), int(beside[1])
    before = world.scene_c(0.0)[v, u]
    assert world.scene_c(IGNITE_S + 200.0)[v, u] > before + 10.0


def test_fire_off_screen_has_no_box() -> None:
    spec = WorldSpec(
        cars=[Car(name="behind", x_m=0.0, y_m=-10.0)],
        fires=[CarFire(car="behind", ignite_at_s=0.0)],
    )
    world = ParkingLotWorld(spec, W, H, seed=1)
    assert world.fire_box(0, 60.0) is None
    assert float(world.scene_c(60.0).max()) < 60.0


def test_spec_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="colour"):
        WorldSpec.model_validate({"ambient_c": 2.0, "colour": "red"})
    with pytest.raises(ValidationError, match=r"camera\.roll_deg"):
        WorldSpec.model_validate({"camera": {"roll_deg": 3.0}})
    with pytest.raises(ValidationError, match=r"cars\.0\.colour"):
        WorldSpec.model_validate({"cars": [{"name": "a", "x_m": 0, "y_m": 5, "colour": "red"}]})


def test_spec_rejects_fire_on_missing_car() -> None:
    with pytest.raises(ValidationError, match="ghost"):
        WorldSpec.model_validate(
            {
                "cars": [{"name": "a", "x_m": 0, "y_m": 5}],
                "fires": [{"car": "ghost", "ignite_at_s": 10}],
            }
        )


def test_spec_rejects_duplicate_names_and_bad_values() -> None:
    car = {"name": "a", "x_m": 0, "y_m": 5}
    with pytest.raises(ValidationError, match="duplicate"):
        WorldSpec.model_validate({"cars": [car, car]})
    with pytest.raises(ValidationError, match="height_m"):
        WorldSpec.model_validate({"camera": {"height_m": 0}})
    with pytest.raises(ValidationError, match="full_after_s"):
        CarFire.model_validate({"car": "a", "ignite_at_s": 1, "full_after_s": -5})
    with pytest.raises(ValidationError):
        Car.model_validate({"name": "a", "x_m": float("nan"), "y_m": 5})


def test_spec_defaults() -> None:
    spec = WorldSpec()
    assert spec.camera.height_m == 6.0 and spec.camera.hfov_deg == 57.0
    assert spec.cars == [] and spec.fires == []
    fire = CarFire(car="a", ignite_at_s=3)
    assert fire.full_after_s == 240 and fire.peak_c == 800.0


def test_bad_image_size_rejected() -> None:
    with pytest.raises(ValueError, match="size"):
        ParkingLotWorld(WorldSpec(), 0, 120, seed=1)


def test_sun_heats_asphalt_and_car_tops_and_shadows_stay_cool() -> None:
    car = Car(name="c", x_m=0.0, y_m=10.0, heading_deg=90.0)
    night = ParkingLotWorld(WorldSpec(ambient_c=20.0, cars=[car]), W, H, seed=1)
    day_spec = WorldSpec.model_validate(
        {"ambient_c": 20.0, "cars": [car.model_dump()], "sun": {"azimuth_deg": 0.0}}
    )
    day = ParkingLotWorld(day_spec, W, H, seed=1)
    near = day.project(0.0, 7.0, 0.0)  # sunlit asphalt between the pole and the car
    shade = day.project(0.0, 8.4, 0.0)  # the car's shadow (the sun is 45 deg up in the north)
    roof = day.project(0.0, 10.0, 1.5)
    assert near is not None and shade is not None and roof is not None
    img_day, img_night = day.scene_c(0.0), night.scene_c(0.0)
    lit_c = img_day[int(near[1]), int(near[0])]
    assert 40.0 < lit_c < 70.0
    assert lit_c > img_night[int(near[1]), int(near[0])] + 20.0
    assert img_day[int(roof[1]) + 1, int(roof[0])] > 40.0
    # The sun is in the north: the car's shadow falls toward the pole and stays cooler.
    assert img_day[int(shade[1]), int(shade[0])] < lit_c - 15.0
    # The heating drifts slowly (clouds).
    assert not np.array_equal(day.scene_c(0.0), day.scene_c(60.0))
    assert day.spec.sky_c == -8.0  # a warmer day sky unless set


def test_rain_lowers_contrast_and_streaks() -> None:
    dry = ParkingLotWorld(lot_spec(), W, H, seed=1)
    wet = ParkingLotWorld(lot_spec(rain_mm_h=4.0), W, H, seed=1)
    assert float(np.std(wet.scene_c(0.0))) < 0.6 * float(np.std(dry.scene_c(0.0)))
    assert not np.array_equal(wet.scene_c(0.0), wet.scene_c(0.1))  # streaks move
    assert np.array_equal(
        wet.scene_c(0.3), ParkingLotWorld(lot_spec(rain_mm_h=4.0), W, H, seed=1).scene_c(0.3)
    )
