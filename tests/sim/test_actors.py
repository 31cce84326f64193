"""Persons, groups, animals and arriving cars in the world, and the ground truth they give."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sim.actors import Person, Truth, path_at
from sim.world import ParkingLotWorld, WorldSpec

W, H = 160, 120
CAMERA = {"height_m": 6.0, "pitch_deg": 27.0}


def world(seed: int = 1, **data: object) -> ParkingLotWorld:
    """A world with the standard pole camera."""
    return ParkingLotWorld(WorldSpec.model_validate({"camera": CAMERA, **data}), W, H, seed)


def one(truths: list[Truth], name: str) -> Truth:
    """The truth of the named object."""
    found = [tr for tr in truths if tr.name == name]
    assert len(found) == 1, truths
    return found[0]


def size_px(tr: Truth) -> tuple[float, float]:
    """Box width and height in pixels."""
    x0, y0, x1, y1 = tr.box
    return (x1 - x0) * W, (y1 - y0) * H


def person(name: str, x: float, y: float, **extra: object) -> dict[str, object]:
    """A still person spec."""
    return {"name": name, "path": [[0.0, x, y]], **extra}


def test_far_person_is_smaller_than_near_person() -> None:
    w = world(persons=[person("near", -1.0, 8.0), person("far", 1.0, 20.0)])
    truths = w.truth(0.0)
    near_w, near_h = size_px(one(truths, "near"))
    far_w, far_h = size_px(one(truths, "far"))
    assert far_h < 0.6 * near_h and far_w < near_w
    assert one(truths, "near").cls == "person" and one(truths, "near").posture == "standing"


def test_person_is_warm_where_the_truth_box_is() -> None:
    w = world(ambient_c=2.0, persons=[person("p", 0.0, 9.0)])
    img = w.scene_c(0.0)
    x0, y0, x1, y1 = one(w.truth(0.0), "p").box
    inside = img[int(y0 * H) : int(np.ceil(y1 * H)), int(x0 * W) : int(np.ceil(x1 * W))]
    assert float(inside.max()) > 25.0  # the face
    assert float(np.median(img)) < 5.0
    # Nothing warm outside the box.
    outside = img.copy()
    outside[int(y0 * H) : int(np.ceil(y1 * H)), int(x0 * W) : int(np.ceil(x1 * W))] = 0.0
    assert float(outside.max()) < 5.0


def test_postures_give_different_box_shapes() -> None:
    w = world(
        persons=[
            person("stand", -3.0, 9.0),
            person("sit", 0.0, 9.0, postures=[[0.0, "sitting"]]),
            person("lie", 3.0, 9.0, postures=[[0.0, "lying"]], heading_deg=90.0),
        ]
    )
    truths = w.truth(0.0)
    sw, sh = size_px(one(truths, "stand"))
    tw, th = size_px(one(truths, "sit"))
    lw, lh = size_px(one(truths, "lie"))
    assert sh > 1.5 * sw  # standing: taller than wide
    assert lw > 1.5 * lh  # lying: wider than tall
    assert sh / sw > th / tw > lh / lw  # sitting in between
    assert th < 0.85 * sh
    assert {one(truths, n).posture for n in ("stand", "sit", "lie")} == {
        "standing",
        "sitting",
        "lying",
    }


def test_posture_changes_over_time_and_walking_counts_as_standing() -> None:
    w = world(
        persons=[
            {
                "name": "p",
                "path": [[0.0, -3.0, 9.0], [5.0, 0.0, 9.0]],
                "postures": [[0.0, "sitting"], [8.0, "lying"]],
            }
        ]
    )
    assert one(w.truth(2.0), "p").posture == "standing"  # walking
    assert one(w.truth(6.0), "p").posture == "sitting"
    assert one(w.truth(9.0), "p").posture == "lying"


def test_car_hides_a_person_behind_it() -> None:
    car = {"name": "car", "x_m": 0.0, "y_m": 10.0, "heading_deg": 90.0}
    alone = world(persons=[person("p", 0.0, 12.0)])
    hidden = world(cars=[car], persons=[person("p", 0.0, 12.0)])
    assert one(alone.truth(0.0), "p").visible == pytest.approx(1.0)
    part = one(hidden.truth(0.0), "p").visible
    assert 0.0 < part < 0.7
    # The person in front of the car makes the car less visible instead.
    front = world(cars=[car], persons=[person("p", 0.0, 8.0)])
    assert one(front.truth(0.0), "car").visible < one(hidden.truth(0.0), "car").visible
    assert one(front.truth(0.0), "car").cls == "vehicle"


def test_image_edge_cuts_visibility() -> None:
    w = world(persons=[person("edge", -5.6, 9.0), person("out", 0.0, -5.0)])
    truths = w.truth(0.0)
    edge = one(truths, "edge")
    assert 0.0 < edge.visible < 1.0 and edge.box[0] == 0.0
    assert not [tr for tr in truths if tr.name == "out"]


def test_animals_have_their_sizes() -> None:
    w = world(
        animals=[
            {"name": "cat", "species": "cat", "path": [[0.0, -1.5, 8.0]], "heading_deg": 90},
            {"name": "dog", "species": "dog", "path": [[0.0, 1.5, 8.0]], "heading_deg": 90},
            {"name": "fox", "species": "fox", "path": [[0.0, 4.0, 8.0]], "heading_deg": 90},
            {"name": "hog", "species": "hedgehog", "path": [[0.0, -4.0, 8.0]], "heading_deg": 90},
        ]
    )
    truths = w.truth(0.0)
    cat, dog, fox, hog = (one(truths, n) for n in ("cat", "dog", "fox", "hog"))
    assert {t.cls for t in (cat, dog, fox, hog)} == {"animal"} and cat.posture is None
    assert size_px(dog)[0] > 1.5 * size_px(cat)[0]
    assert size_px(dog)[0] > size_px(dog)[1]  # seen from the side: longer than high
    assert size_px(fox)[0] > 1.5 * size_px(cat)[0] and size_px(fox)[1] < size_px(dog)[1]
    assert size_px(hog)[0] < size_px(cat)[0] and size_px(hog)[1] < size_px(cat)[1]


def test_truth_and_scene_are_deterministic() -> None:
    data = {
        "persons": [person("p", 0.0, 9.0)],
        "groups": [
            {"name": "g", "count": 4, "x_m": 2.0, "y_m": 14.0, "from_x_m": -8, "from_y_m": 14}
        ],
    }
    a, b = world(seed=5, **data), world(seed=5, **data)
    a.scene_c(30.0)
    for t in (3.0, 12.0, 12.0):
        assert np.array_equal(a.scene_c(t), b.scene_c(t))
        assert a.truth(t) == b.truth(t)
    assert world(seed=6, **data).truth(30.0) != a.truth(30.0)


def test_group_members_arrive_staggered_and_gather() -> None:
    w = world(
        groups=[
            {
                "name": "g",
                "count": 5,
                "x_m": 0.0,
                "y_m": 14.0,
                "radius_m": 2.0,
                "from_x_m": -5.0,
                "from_y_m": 12.0,
                "arrive_at_s": 20.0,
                "walk_s": 10.0,
            }
        ]
    )
    assert len(w.truth(5.0)) == 0  # nobody yet
    early = [tr for tr in w.truth(12.0) if tr.cls == "person"]
    late = [tr for tr in w.truth(60.0) if tr.cls == "person"]
    assert 0 < len(early) < 5
    assert sorted(tr.name for tr in late) == [f"g.{i}" for i in range(5)]
    centre = w.project(0.0, 14.0, 0.9)
    assert centre is not None
    for tr in late:  # all gathered around the centre
        assert abs((tr.box[0] + tr.box[2]) / 2 * W - centre[0]) < 25


def test_path_interpolation() -> None:
    path = [(10.0, 0.0, 0.0), (20.0, 10.0, 0.0), (20.0, 10.0, 0.0), (30.0, 10.0, 5.0)]
    assert (path_at(path, 0.0).x_m, path_at(path, 0.0).speed_m_s) == (0.0, 0.0)
    mid = path_at(path, 15.0)
    assert (mid.x_m, mid.y_m, mid.speed_m_s, mid.heading_deg) == (5.0, 0.0, 1.0, 90.0)
    assert path_at(path, 25.0).y_m == pytest.approx(2.5)
    assert path_at(path, 25.0).travelled_m == pytest.approx(12.5)
    end = path_at(path, 99.0)
    assert (end.x_m, end.y_m, end.speed_m_s, end.heading_deg) == (10.0, 5.0, 0.0, None)


def test_walking_person_moves_across_the_image() -> None:
    w = world(persons=[{"name": "p", "path": [[0.0, -4.0, 10.0], [8.0, 4.0, 10.0]]}])
    left, right = one(w.truth(1.0), "p"), one(w.truth(7.0), "p")
    assert right.box[0] > left.box[2]
    assert not np.array_equal(w.scene_c(1.0), w.scene_c(1.2))


def test_appear_and_leave() -> None:
    w = world(persons=[person("p", 0.0, 9.0, appear_at_s=5.0, leave_at_s=10.0)])
    assert [tr.name for tr in w.truth(4.0)] == []
    assert [tr.name for tr in w.truth(7.0)] == ["p"]
    assert [tr.name for tr in w.truth(10.0)] == []


def test_validation_errors_name_the_key() -> None:
    with pytest.raises(ValidationError, match=r"persons\.0\n.*path: waypoint times"):
        WorldSpec.model_validate({"persons": [{"name": "p", "path": [[5.0, 0, 0], [1.0, 1, 1]]}]})
    with pytest.raises(ValidationError, match="duplicate name 'x'"):
        WorldSpec.model_validate(
            {"cars": [{"name": "x", "x_m": 0, "y_m": 5}], "persons": [person("x", 0, 9)]}
        )
    with pytest.raises(ValidationError, match=r"duplicate name 'g\.0'"):
        WorldSpec.model_validate(
            {
                "persons": [person("g.0", 0, 9)],
                "groups": [
                    {"name": "g", "count": 2, "x_m": 0, "y_m": 9, "from_x_m": 0, "from_y_m": 20}
                ],
            }
        )
    with pytest.raises(ValidationError, match=r"animals\.0\.species"):
        WorldSpec.model_validate(
            {"animals": [{"name": "a", "species": "cow", "path": [[0, 0, 5]]}]}
        )
    with pytest.raises(ValidationError, match=r"cars\.0\n.*path: must end at the parking spot"):
        WorldSpec.model_validate(
            {"cars": [{"name": "c", "x_m": 0, "y_m": 5, "path": [[0, 9, 9], [5, 1, 5]]}]}
        )
    with pytest.raises(ValidationError, match="postures"):
        Person.model_validate(
            {"name": "p", "path": [[0, 0, 0]], "postures": [[5, "lying"], [1, "sitting"]]}
        )


def test_arriving_car_drives_in_and_parks() -> None:
    car = {
        "name": "c",
        "x_m": 2.0,
        "y_m": 10.0,
        "heading_deg": 0.0,
        "engine_c": 120.0,
        "path": [[5.0, -12.0, 10.0], [15.0, 2.0, 10.0]],
    }
    w = world(cars=[car])
    assert w.truth(2.0) == []  # not yet arrived
    moving, parked = one(w.truth(10.0), "c"), one(w.truth(20.0), "c")
    assert moving.cls == "vehicle" and moving.box[2] < parked.box[2]
    assert one(w.truth(30.0), "c") == parked


def test_engine_cools_after_parking() -> None:
    car = {
        "name": "c",
        "x_m": 0.0,
        "y_m": 9.0,
        "heading_deg": 180.0,
        "engine_c": 120.0,
        "parked_at_s": 0.0,
        "engine_cool_tau_s": 600.0,
    }
    w = world(ambient_c=2.0, cars=[car])
    hot, warm, cold = (float(w.scene_c(t).max()) for t in (0.0, 600.0, 3000.0))
    assert 100.0 < hot <= 121.0
    assert hot > warm > cold
    assert warm == pytest.approx(2.0 + 118.0 / np.e, abs=4.0)
    assert cold < 10.0
