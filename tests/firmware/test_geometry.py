"""Camera calibration: boxes measured in metres against the simulator's own projection, and the
check that relabels as animals the persons too small to be one."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from firmware.config.load import load_site, validate_model
from firmware.config.site import CameraCalibration, SiteConfig, SizeCheckConfig
from firmware.detect.base import Detection
from firmware.detect.geometry import GroundPlane, PersonSizeCheck, size_check
from firmware.detect.pipeline import ThermalPipeline
from firmware.errors import ConfigError
from sim import actors, world

ROOT = Path(__file__).resolve().parents[2]
W, H = 160, 120
POLE = CameraCalibration(height_m=6.0, pitch_deg=27.0, hfov_deg=57.0)  # the scenarios' pole
DEFAULT_MIN_M = SizeCheckConfig().person_min_m


def _world(cal: CameraCalibration, persons: list[actors.Person] | None = None) -> Any:
    pose = world.CameraPose(height_m=cal.height_m, pitch_deg=cal.pitch_deg, hfov_deg=cal.hfov_deg)
    spec = world.WorldSpec(ambient_c=10.0, sky_c=-10.0, camera=pose, persons=persons or [])
    return world.ParkingLotWorld(spec, W, H, 1)


@pytest.mark.parametrize(
    "cal",
    [
        POLE,
        CameraCalibration(height_m=0.75, pitch_deg=18.0),
        CameraCalibration(height_m=4.0, pitch_deg=40.0, hfov_deg=90.0),
    ],
)
def test_a_one_metre_bar_across_the_view_measures_one_metre_anywhere(
    cal: CameraCalibration,
) -> None:
    """The simulator projects a bar lying on the ground across the line of sight; measured where
    it lies, it is 1 m long whatever its distance and side."""
    scene = _world(cal)
    plane = GroundPlane(cal, W, H)
    measured = 0
    for y, x in itertools.product((2.0, 5.0, 9.0, 16.0, 30.0), (-3.0, 0.0, 2.0)):
        left, right = scene.project(x - 0.5, y), scene.project(x + 0.5, y)
        if left is None or right is None or not (0 <= left[1] < H - 1 and 0 <= left[0] < W):
            continue
        assert left[1] == pytest.approx(right[1], abs=1e-9)  # across the view: one row
        box = (left[0], left[1] - 0.5, right[0], left[1])
        assert plane.extent_m(box) == pytest.approx(1.0, rel=1e-6)
        measured += 1
    assert measured >= 6


def test_what_cannot_be_measured_is_none() -> None:
    plane = GroundPlane(POLE, W, H)
    horizon = H / 2 - plane.focal_px * 0.5095  # tan(27 degrees): the horizon's row
    assert plane.depth_m(horizon - 1.0) is None  # sky
    assert plane.extent_m((70.0, 100.0, 90.0, float(H))) is None  # its foot out of the frame
    assert plane.extent_m((70.0, horizon - 9.0, 90.0, horizon - 0.5)) is None
    assert plane.depth_m(H / 2) == pytest.approx(6.0 / 0.4540, rel=1e-3)  # sin 27 degrees


@pytest.mark.parametrize("height", [1.1, 1.75])
def test_persons_in_every_posture_measure_above_the_default_minimum(height: float) -> None:
    """Standing, sitting and lying (along the line of sight too), near and far, as the simulator
    draws them: a child at least the default minimum, an adult half as much again."""
    sizes: dict[str, float] = {}
    plane = GroundPlane(POLE, W, H)
    for posture, heading in itertools.product(("standing", "sitting", "lying"), (0.0, 45.0, 90.0)):
        persons = [
            actors.Person(
                name=f"p{i}",
                path=[(0.0, (i % 2 * 2 - 1) * 3.0 * (i % 3), float(d))],
                postures=[(0.0, posture)],
                heading_deg=heading,
                height_m=height,
            )
            for i, d in enumerate((6, 9, 13, 18, 25))
        ]
        for truth in _world(POLE, persons).truth(1.0):
            x0, y0, x1, y1 = truth.box[0] * W, truth.box[1] * H, truth.box[2] * W, truth.box[3] * H
            size = plane.extent_m((x0, y0, x1, y1))
            if size is not None and truth.visible >= 0.65 and y1 - y0 >= 3.0:
                key = f"{posture} {heading:.0f} {truth.name}"
                sizes[key] = size
    assert len(sizes) >= 30
    floor = DEFAULT_MIN_M if height < 1.5 else 1.5 * DEFAULT_MIN_M
    small = {k: round(v, 2) for k, v in sizes.items() if v < floor}
    assert not small, f"persons of {height} m measured under {floor} m: {small}"


@pytest.mark.parametrize(
    ("height_m", "pitch_deg"), list(itertools.product((0.5, 0.75, 0.9), (15.0, 18.0, 30.0)))
)
def test_the_clips_hedgehog_measures_under_any_person_from_a_trail_camera(
    height_m: float, pitch_deg: float
) -> None:
    """The box the model put on the real clip's hedgehog that measures largest (16.5 by 6
    pixels, its foot 63 rows down), for a trail camera strapped 0.5-0.9 m up a trunk and tilted
    15-30 degrees."""
    plane = GroundPlane(CameraCalibration(height_m=height_m, pitch_deg=pitch_deg), W, H)
    size = plane.extent_m((59.1, 57.2, 75.6, 63.1))
    assert size is not None and size < DEFAULT_MIN_M


def test_the_check_relabels_only_persons_measured_too_small() -> None:
    check = PersonSizeCheck(GroundPlane(POLE, W, H), DEFAULT_MIN_M)
    small = Detection("person", 0.7, (78.0, 70.0, 81.0, 72.0), lying=0.9)  # 0.2 m, 15 m off
    tall = Detection("person", 0.8, (78.0, 50.0, 82.0, 72.0), lying=0.1)  # 1.5 m
    small_car = Detection("vehicle", 0.6, (78.0, 70.0, 81.0, 72.0))
    at_the_edge = Detection("person", 0.5, (10.0, 117.0, 12.0, float(H)))  # foot out of view
    in_the_sky = Detection("person", 0.5, (10.0, 2.0, 12.0, 4.0))
    out = check.apply([small, tall, small_car, at_the_edge, in_the_sky])
    assert out[0].cls == "animal" and out[0].lying is None
    assert (out[0].score, out[0].box, out[0].sensor) == (small.score, small.box, small.sensor)
    assert out[1:] == [tall, small_car, at_the_edge, in_the_sky]


def test_only_a_calibrated_camera_gets_the_check() -> None:
    assert size_check(None, DEFAULT_MIN_M, W, H) is None
    site = load_site(ROOT / "sim" / "sites" / "people_lot.toml")
    assert site.calibration.thermal == POLE
    assert ThermalPipeline(site, W, H, True).size is not None
    bare = site.model_copy(
        update={"calibration": site.calibration.model_copy(update={"thermal": None})}
    )
    assert ThermalPipeline(bare, W, H, True).size is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"pitch_deg": 0.0, "height_m": 6.0}, "calibration.thermal.pitch_deg"),
        ({"pitch_deg": 27.0}, "calibration.thermal.height_m"),
        ({"pitch_deg": 27.0, "height_m": 6.0, "tilt": 3.0}, "calibration.thermal.tilt"),
    ],
)
def test_a_bad_calibration_is_refused_where_it_is(table: dict[str, float], message: str) -> None:
    values = {"unit": {"id": "pole-1"}, "receiver": {"host": "127.0.0.1"}}
    values["calibration"] = {"thermal": table}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_model(SiteConfig, values, ROOT / "site.toml")
