"""Moving actors of the simulated world (persons, groups, animals) and the ground truth they give.

Specs are the scenario's ``[[world.persons]]``, ``[[world.groups]]`` and ``[[world.animals]]``
tables. Paths are waypoints ``[t_s, x_m, y_m]`` in world coordinates (see ``sim.world``): an actor
moves linearly between waypoints, waits at the first before its time and stays at the last after
it. ``Truth`` is what a labeller would draw: the tight box of an object's visible pixels.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

Posture = Literal["standing", "sitting", "lying"]
Species = Literal["cat", "dog", "fox", "hedgehog"]
TruthClass = Literal["person", "vehicle", "animal"]
Waypoint = tuple[float, float, float]  # t_s, x_m, y_m


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _check_path(path: list[Waypoint]) -> None:
    times = [w[0] for w in path]
    if any(b < a for a, b in itertools.pairwise(times)):
        raise ValueError("path: waypoint times must not decrease")


def _standing() -> list[tuple[float, Posture]]:
    return [(0.0, "standing")]


class Person(_Spec):
    """A person following a path; walking while moving, else in the posture of the moment."""

    name: str = Field(min_length=1, max_length=64)
    path: list[Waypoint] = Field(min_length=1, max_length=256)
    # [t_s, posture]: the posture from that time on (before the first time: the first posture)
    postures: list[tuple[float, Posture]] = Field(
        default_factory=_standing, min_length=1, max_length=64
    )
    heading_deg: float = Field(0.0, ge=-360.0, le=360.0, description="facing when still")
    height_m: float = Field(1.75, ge=0.5, le=2.3)
    clothing_c: float | None = Field(None, ge=-40.0, le=45.0, description="None = ambient + 10")
    skin_c: float = Field(32.0, ge=20.0, le=40.0)
    appear_at_s: float = Field(0.0, ge=0.0, le=1.0e6)
    leave_at_s: float | None = Field(None, ge=0.0, le=1.0e6)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_path(self.path)
        times = [p[0] for p in self.postures]
        if any(b < a for a, b in itertools.pairwise(times)):
            raise ValueError("postures: times must not decrease")
        return self


class Group(_Spec):
    """``count`` persons walking in from one point to stand around a centre (a gathering)."""

    name: str = Field(min_length=1, max_length=64)
    count: int = Field(ge=1, le=50)
    x_m: float = Field(ge=-10_000.0, le=10_000.0)
    y_m: float = Field(ge=-10_000.0, le=10_000.0)
    radius_m: float = Field(1.5, gt=0.0, le=50.0)
    from_x_m: float = Field(ge=-10_000.0, le=10_000.0)
    from_y_m: float = Field(ge=-10_000.0, le=10_000.0)
    arrive_at_s: float = Field(0.0, ge=0.0, le=1.0e6, description="when the first one arrives")
    walk_s: float = Field(20.0, gt=0.0, le=3600.0, description="walk from the start point")
    leave_at_s: float | None = Field(None, ge=0.0, le=1.0e6)


class Animal(_Spec):
    """A cat, dog, fox or hedgehog following a path."""

    name: str = Field(min_length=1, max_length=64)
    species: Species
    path: list[Waypoint] = Field(min_length=1, max_length=256)
    body_c: float = Field(28.0, ge=0.0, le=42.0, description="apparent fur temperature")
    heading_deg: float = Field(0.0, ge=-360.0, le=360.0, description="facing when still")
    appear_at_s: float = Field(0.0, ge=0.0, le=1.0e6)
    leave_at_s: float | None = Field(None, ge=0.0, le=1.0e6)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_path(self.path)
        return self


@dataclass(frozen=True)
class Truth:
    """One labelled object in a rendered frame."""

    name: str  # the actor's or car's name (group members: "<group>.<i>")
    cls: TruthClass
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of width and height
    posture: Posture | None = None  # persons only
    visible: float = 1.0  # fraction of the object's pixels that are in view and not occluded


# ----------------------------------------------------------------- kinematics

_MOVING_M_S = 0.05  # slower than this counts as standing still
_STRIDE_M = 1.4  # one full walking cycle (two steps)
_TAG_GROUP = 0x47525550


@dataclass(frozen=True)
class PathState:
    """Where an actor is on its path at one instant."""

    x_m: float
    y_m: float
    speed_m_s: float
    heading_deg: float | None  # direction of travel while moving, else None
    travelled_m: float  # distance along the path so far (drives the walking cycle)


def path_at(path: list[Waypoint], t: float) -> PathState:
    """Linear interpolation along waypoints; waits at the first, stays at the last."""
    travelled = 0.0
    if t <= path[0][0]:
        return PathState(path[0][1], path[0][2], 0.0, None, 0.0)
    for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(path):
        seg = math.hypot(x1 - x0, y1 - y0)
        if t < t1:
            f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
            speed = seg / (t1 - t0) if t1 > t0 else 0.0
            heading = math.degrees(math.atan2(x1 - x0, y1 - y0)) if seg > 0 else None
            moving = speed >= _MOVING_M_S
            return PathState(
                x0 + f * (x1 - x0),
                y0 + f * (y1 - y0),
                speed if moving else 0.0,
                heading if moving else None,
                travelled + f * seg,
            )
        travelled += seg
    last = path[-1]
    return PathState(last[1], last[2], 0.0, None, travelled)


def posture_at(postures: list[tuple[float, Posture]], t: float) -> Posture:
    """The posture in force at t (the first one before its time)."""
    current = postures[0][1]
    for t0, posture in postures:
        if t >= t0:
            current = posture
    return current


def present(appear_at_s: float, leave_at_s: float | None, t: float) -> bool:
    """Whether an actor is in the world at t."""
    return t >= appear_at_s and (leave_at_s is None or t < leave_at_s)


def group_members(group: Group, seed: int, ambient_c: float) -> list[Person]:
    """The persons of a group: seeded spots around the centre and staggered arrivals."""
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, _TAG_GROUP, *group.name.encode()])
    members = []
    arrive = group.arrive_at_s
    base_angle = rng.uniform(0.0, 2.0 * math.pi)
    for i in range(group.count):
        if i:
            arrive += float(rng.uniform(1.0, 4.0))  # they come in one after another
        angle = base_angle + 2.0 * math.pi * i / group.count + float(rng.uniform(-0.3, 0.3))
        r = group.radius_m * math.sqrt(float(rng.uniform(0.35, 1.0))) if group.count > 1 else 0.0
        x = group.x_m + r * math.sin(angle)
        y = group.y_m + r * math.cos(angle)
        sx = group.from_x_m + float(rng.uniform(-0.5, 0.5))
        sy = group.from_y_m + float(rng.uniform(-0.5, 0.5))
        start = arrive - group.walk_s
        facing = math.degrees(math.atan2(group.x_m - x, group.y_m - y)) if r > 0 else 0.0
        members.append(
            Person(
                name=f"{group.name}.{i}",
                path=[(start, sx, sy), (arrive, x, y)],
                heading_deg=facing,
                height_m=float(rng.uniform(1.6, 1.9)),
                clothing_c=float(np.clip(ambient_c + 10.0 + rng.uniform(-3.0, 3.0), -40.0, 45.0)),
                appear_at_s=max(start, 0.0),
                leave_at_s=group.leave_at_s,
            )
        )
    return members


# ----------------------------------------------------------------- body shapes
# Bodies are unions of ellipsoids in the actor's frame: (forward, right, up) metres, axes along
# those directions, and an apparent temperature each. Rows: f, r, z, semi_f, semi_r, semi_z.

_HEAD, _CLOTH, _LEGS, _ARMS, _HANDS = 0, 1, 2, 3, 4  # temperature roles of person parts

_STANDING = np.array(
    [
        [0.0, 0.0, 1.63, 0.10, 0.09, 0.115, _HEAD],
        [0.0, 0.0, 1.18, 0.13, 0.21, 0.34, _CLOTH],
        [0.0, 0.0, 0.88, 0.12, 0.18, 0.14, _LEGS],
        [0.0, -0.09, 0.44, 0.08, 0.08, 0.44, _LEGS],
        [0.0, 0.09, 0.44, 0.08, 0.08, 0.44, _LEGS],
        [0.0, -0.26, 1.12, 0.06, 0.06, 0.30, _ARMS],
        [0.0, 0.26, 1.12, 0.06, 0.06, 0.30, _ARMS],
        [0.0, -0.27, 0.78, 0.05, 0.04, 0.07, _HANDS],
        [0.0, 0.27, 0.78, 0.05, 0.04, 0.07, _HANDS],
    ]
)
_SITTING = np.array(
    [
        [0.0, 0.0, 1.17, 0.10, 0.09, 0.115, _HEAD],
        [-0.02, 0.0, 0.80, 0.13, 0.21, 0.30, _CLOTH],
        [0.0, 0.0, 0.52, 0.16, 0.21, 0.10, _LEGS],
        [0.20, -0.13, 0.48, 0.24, 0.10, 0.08, _LEGS],
        [0.20, 0.13, 0.48, 0.24, 0.10, 0.08, _LEGS],
        [0.42, -0.16, 0.24, 0.07, 0.08, 0.24, _LEGS],
        [0.42, 0.16, 0.24, 0.07, 0.08, 0.24, _LEGS],
        [0.08, -0.25, 0.78, 0.12, 0.06, 0.20, _ARMS],
        [0.08, 0.25, 0.78, 0.12, 0.06, 0.20, _ARMS],
        [0.25, -0.20, 0.58, 0.05, 0.05, 0.05, _HANDS],
        [0.25, 0.20, 0.58, 0.05, 0.05, 0.05, _HANDS],
    ]
)
_LYING = np.array(
    [
        [0.78, 0.0, 0.11, 0.12, 0.10, 0.10, _HEAD],
        [0.32, 0.0, 0.17, 0.36, 0.22, 0.16, _CLOTH],
        [-0.10, 0.0, 0.13, 0.16, 0.19, 0.12, _LEGS],
        [-0.55, -0.10, 0.08, 0.38, 0.08, 0.08, _LEGS],
        [-0.55, 0.10, 0.08, 0.38, 0.08, 0.08, _LEGS],
        [0.30, -0.28, 0.08, 0.28, 0.06, 0.06, _ARMS],
        [0.30, 0.28, 0.08, 0.28, 0.06, 0.06, _ARMS],
        [-0.02, -0.30, 0.05, 0.05, 0.05, 0.04, _HANDS],
        [-0.02, 0.30, 0.05, 0.05, 0.05, 0.04, _HANDS],
    ]
)
_BODY, _FACE, _LIMB = 0, 1, 2  # temperature roles of animal parts
_CAT = np.array(
    [
        [0.0, 0.0, 0.14, 0.17, 0.075, 0.075, _BODY],
        [0.19, 0.0, 0.19, 0.055, 0.05, 0.05, _FACE],
        [0.11, 0.0, 0.06, 0.03, 0.05, 0.06, _LIMB],
        [-0.11, 0.0, 0.06, 0.03, 0.05, 0.06, _LIMB],
        [-0.24, 0.0, 0.12, 0.10, 0.015, 0.015, _LIMB],
    ]
)
_DOG = np.array(
    [
        [0.0, 0.0, 0.40, 0.32, 0.13, 0.14, _BODY],
        [0.38, 0.0, 0.50, 0.10, 0.08, 0.09, _FACE],
        [0.50, 0.0, 0.46, 0.07, 0.04, 0.04, _FACE],
        [0.22, 0.0, 0.16, 0.05, 0.10, 0.17, _LIMB],
        [-0.22, 0.0, 0.16, 0.05, 0.10, 0.17, _LIMB],
        [-0.36, 0.0, 0.45, 0.08, 0.03, 0.03, _LIMB],
    ]
)
_FOX = np.array(
    [
        [0.0, 0.0, 0.36, 0.30, 0.10, 0.11, _BODY],
        [0.36, 0.0, 0.44, 0.09, 0.06, 0.07, _FACE],
        [0.18, 0.0, 0.15, 0.04, 0.07, 0.15, _LIMB],
        [-0.18, 0.0, 0.15, 0.04, 0.07, 0.15, _LIMB],
        [-0.50, 0.0, 0.30, 0.20, 0.07, 0.07, _LIMB],  # brush
    ]
)
_HEDGEHOG = np.array(  # a low dome of spines, the face warmer than the insulating spines
    [
        [0.0, 0.0, 0.08, 0.13, 0.09, 0.08, _BODY],
        [0.14, 0.0, 0.04, 0.05, 0.035, 0.035, _FACE],
    ]
)
_ANIMALS = {"cat": _CAT, "dog": _DOG, "fox": _FOX, "hedgehog": _HEDGEHOG}
# The distance over which the legs swing once, metres.
_ANIMAL_STRIDE_M = {"cat": 0.5, "dog": 0.9, "fox": 0.7, "hedgehog": 0.15}
_SHAPES = {"standing": _STANDING, "sitting": _SITTING, "lying": _LYING}


@dataclass(frozen=True)
class Body:
    """An actor's shape at one instant: ellipsoids in world axes rotated by a heading."""

    x_m: float
    y_m: float
    heading_deg: float
    parts: npt.NDArray[np.float64]  # (E, 6): local f, r, z centre and semi-axes, metres
    temps_c: npt.NDArray[np.float64]  # (E,)


def person_body(person: Person, t: float, ambient_c: float) -> tuple[Body, Posture] | None:
    """A person's body at t (None when not in the world), and the posture to label it with."""
    if not present(person.appear_at_s, person.leave_at_s, t):
        return None
    state = path_at(person.path, t)
    posture: Posture = "standing" if state.speed_m_s > 0 else posture_at(person.postures, t)
    shape = _SHAPES[posture].copy()
    scale = person.height_m / 1.75
    if state.speed_m_s > 0:  # walking: legs and arms swing in opposition
        swing = math.sin(2.0 * math.pi * state.travelled_m / _STRIDE_M)
        shape[3, 0] += 0.16 * swing
        shape[4, 0] -= 0.16 * swing
        shape[5:7, 0] += np.array([-0.08, 0.08]) * swing
        shape[7:9, 0] += np.array([-0.12, 0.12]) * swing
    clothing = ambient_c + 10.0 if person.clothing_c is None else person.clothing_c
    roles = np.array(
        [person.skin_c - 1.0, clothing, clothing - 1.5, clothing - 0.5, person.skin_c - 3.0]
    )
    parts = shape[:, :6] * scale
    heading = state.heading_deg if state.heading_deg is not None else person.heading_deg
    body = Body(state.x_m, state.y_m, heading, parts, roles[shape[:, 6].astype(int)])
    return body, posture


def animal_body(animal: Animal, t: float) -> Body | None:
    """An animal's body at t, or None when it is not in the world."""
    if not present(animal.appear_at_s, animal.leave_at_s, t):
        return None
    state = path_at(animal.path, t)
    shape = _ANIMALS[animal.species]
    parts = shape[:, :6].copy()
    legs = np.flatnonzero(shape[:, 6] == _LIMB)
    if state.speed_m_s > 0 and legs.size:  # trotting legs
        swing = math.sin(2.0 * math.pi * state.travelled_m / _ANIMAL_STRIDE_M[animal.species])
        parts[legs[0], 0] += 0.04 * swing
    roles = np.array([animal.body_c, animal.body_c + 2.0, animal.body_c - 2.0])
    heading = state.heading_deg if state.heading_deg is not None else animal.heading_deg
    return Body(state.x_m, state.y_m, heading, parts, roles[shape[:, 6].astype(int)])
