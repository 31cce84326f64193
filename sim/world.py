"""Deterministic, seeded night-time parking-lot world, rendered as a scene temperature field.

Coordinates: world x is right, y is forward, z is up, in metres; the ground is the plane z = 0.
Headings and the camera yaw are compass-like: 0 deg points along +y, 90 deg along +x.
Pixel coordinates (u, v) are continuous: pixel (col i, row j) covers [i, i+1) x [j, j+1), so its
centre is (i + 0.5, j + 0.5); v grows downwards.

The static part of the scene (sky, asphalt, parked cars) is rendered once in the constructor with
3x3 supersampling, so far objects blend into their neighbours the way a real sensor pixel
integrates them. Only fires change over time; ``scene_c`` adds them to a copy of the static image.
Measured on one core at 160x120: a frame without fire ~3 us (a copy), with one car fire 8-12 m
away 0.5-0.9 ms (growing with the flames); the constructor takes ~40 ms.

Moving things (persons, group members, animals, arriving cars; see ``sim.actors``) are ray-cast
per frame, each only inside its projected box, at the same 3x3 sub-samples, and composited by
depth with the static scene; bodies are unions of ellipsoids. ``truth(t)`` labels every person,
animal and car from those same sub-samples. Measured with 10 actors in view (12 objects) at
160x120, best of 7 runs of 90 frames, pinned to one core of a 2-core machine under a load
average of ~4 (other jobs): 4.6 ms a frame; expect roughly half on an idle core.
Day (``sun``) and rain (``rain_mm_h``) change the static render; by default neither is set
and a night scene renders exactly as before.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.actors import (
    Animal,
    Body,
    Group,
    Person,
    Posture,
    Truth,
    TruthClass,
    Waypoint,
    animal_body,
    group_members,
    path_at,
    person_body,
)

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

_MASK64 = (1 << 64) - 1
# Stream tags keep the seeded random streams of the different parts of the world independent.
_TAG_GROUND = 0x47524E44
_TAG_CAR = 0x43415253
_TAG_FIRE = 0x46495245
_TAG_FIRE_FRAME = 0x46524D45

_TAG_RAIN = 0x5241494E
_TAG_SUN = 0x53554E
_PART_ENGINE, _PART_TYRE = 1, 2  # car part codes of sub-samples (0: anything else)
_SHADE_K = 1.0  # clothing/fur seen edge-on looks this much cooler (lower emissivity, sky)

_SUPERSAMPLE = 3  # odd, so the middle sub-sample is exactly the pixel centre
_SKY_DEPTH_M = 1.0e6  # stand-in distance for sky pixels where a finite hit point is needed

# Car shape, as fractions of the car's length/width/height (a lower body box plus a cabin box).
_LOWER_H = 0.55
_CABIN_REAR, _CABIN_FRONT, _CABIN_HALF_W = -0.30, 0.20, 0.42
_HOOD_START = 0.20  # hood (engine bay) is the part of the lower body with lx > 0.2 L
_WHEEL_X = 0.30  # wheel centres at lx = +-0.3 L
_WHEEL_R_M = 0.33
_UNDER_GAP_M = 0.18  # ground clearance: the dark gap under the body between the wheels
_STALL_DEPTH_M, _STALL_WIDTH_M, _LINE_W_M = 5.0, 2.6, 0.12

# Fire model.
_FIRE_SPOT_R_M = 0.15  # radius of the first flames (a ~0.3 m spot)
_FIRE_T0_ABOVE_AMBIENT = 130.0  # apparent temperature of the first small flames above ambient
_FIRE_FLAME_ABOVE_ROOF_M = 2.0  # flame tips above the roof when fully developed
_FIRE_LAYERS = 6  # stacked ellipsoids making up the flame column
_FIRE_SMOOTH_CHANNELS = 2 + 3 * _FIRE_LAYERS
_FIRE_RAG_MODES = 3


class CameraPose(BaseModel):
    """Pose and field of view of a pole-mounted camera looking down at the ground plane."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    height_m: float = Field(6.0, gt=0.0, le=100.0, description="mount height above ground")
    pitch_deg: float = Field(25.0, ge=-90.0, le=90.0, description="tilt down below horizontal")
    yaw_deg: float = Field(0.0, ge=-360.0, le=360.0, description="0 = along +y, 90 = along +x")
    x_m: float = Field(0.0, ge=-10_000.0, le=10_000.0)
    y_m: float = Field(0.0, ge=-10_000.0, le=10_000.0)
    hfov_deg: float = Field(57.0, gt=1.0, lt=170.0, description="horizontal field of view")


class Car(BaseModel):
    """A parked car: an oriented box on the ground with a cabin, windows, wheels and engine."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=64)
    x_m: float = Field(ge=-10_000.0, le=10_000.0, description="footprint centre")
    y_m: float = Field(ge=-10_000.0, le=10_000.0, description="footprint centre")
    heading_deg: float = Field(0.0, ge=-360.0, le=360.0, description="direction the nose points")
    length_m: float = Field(4.5, gt=0.5, le=30.0)
    width_m: float = Field(1.8, gt=0.3, le=10.0)
    height_m: float = Field(1.5, gt=0.3, le=10.0)
    body_c: float | None = Field(None, ge=-60.0, le=300.0, description="None = ambient")
    engine_c: float | None = Field(None, ge=-60.0, le=300.0, description="None = cold engine")
    # An arriving car drives along path (absent before its first time) and parks at its end.
    path: list[Waypoint] | None = Field(None, min_length=1, max_length=256)
    parked_at_s: float | None = Field(
        None, ge=0.0, le=1.0e6, description="engine cools from then on (default: end of path)"
    )
    engine_cool_tau_s: float = Field(900.0, gt=0.0, le=1.0e6, description="engine cooling e-time")

    @model_validator(mode="after")
    def _check_path(self) -> Self:
        """A path's times must not decrease, and it must end where the car parks."""
        if self.path is None:
            return self
        times = [w[0] for w in self.path]
        if any(b < a for a, b in itertools.pairwise(times)):
            raise ValueError("path: waypoint times must not decrease")
        end = self.path[-1]
        if math.hypot(end[1] - self.x_m, end[2] - self.y_m) > 0.01:
            raise ValueError(
                f"path: must end at the parking spot x_m={self.x_m}, y_m={self.y_m},"
                f" ends at {end[1]}, {end[2]}"
            )
        return self

    def parked_s(self) -> float | None:
        """When the car parked (its engine starts cooling), or None for a constant engine."""
        if self.parked_at_s is not None:
            return self.parked_at_s
        return self.path[-1][0] if self.path is not None else None

    def engine_at(self, t: float, ambient_c: float) -> float | None:
        """Engine bay temperature at t: hot while driving, cooling exponentially once parked."""
        if self.engine_c is None:
            return None
        parked = self.parked_s()
        if parked is None or t <= parked:
            return self.engine_c
        return ambient_c + (self.engine_c - ambient_c) * math.exp(
            -(t - parked) / self.engine_cool_tau_s
        )


class CarFire(BaseModel):
    """A fire starting in a car's engine bay and growing to engulf the car."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    car: str = Field(min_length=1, description="name of a Car in the world")
    ignite_at_s: float = Field(ge=0.0, le=1.0e6, description="seconds after scenario start")
    full_after_s: float = Field(240.0, gt=0.0, le=36_000.0, description="ignition to full fire")
    peak_c: float = Field(800.0, gt=100.0, le=1500.0, description="fully developed flame temp")


class Sunlight(BaseModel):
    """Daytime sun: heats sunlit asphalt and car tops; shadows of cars stay cooler."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    elevation_deg: float = Field(45.0, ge=5.0, le=90.0, description="sun above the horizon")
    azimuth_deg: float = Field(180.0, ge=-360.0, le=360.0, description="compass, 0 = +y")
    asphalt_c: float = Field(50.0, ge=-40.0, le=90.0, description="sunlit asphalt")
    roof_c: float = Field(60.0, ge=-40.0, le=100.0, description="sunlit car roofs and hoods")
    sky_c: float = Field(-8.0, ge=-100.0, le=60.0, description="day sky unless [world] sets sky_c")
    drift_k: float = Field(1.5, ge=0.0, le=20.0, description="slow heating drift (clouds)")
    drift_period_s: float = Field(300.0, gt=1.0, le=1.0e5)


class WorldSpec(BaseModel):
    """Everything that defines a parking-lot world (the scenario's ``[world]`` table)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ambient_c: float = Field(2.0, ge=-60.0, le=60.0, description="air/ground temperature")
    sky_c: float = Field(-30.0, ge=-100.0, le=60.0, description="apparent sky temperature")
    cars: list[Car] = Field(default_factory=list)
    fires: list[CarFire] = Field(default_factory=list)
    camera: CameraPose = Field(default_factory=CameraPose)
    persons: list[Person] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)
    animals: list[Animal] = Field(default_factory=list)
    sun: Sunlight | None = Field(None, description="daytime sunlight; None = night")
    rain_mm_h: float = Field(0.0, ge=0.0, le=200.0, description="rain rate; 0 = dry")

    @model_validator(mode="after")
    def _check_car_names(self) -> Self:
        """Reject duplicate names of cars and actors and fires naming a car that does not exist."""
        names = [car.name for car in self.cars]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate car names: {', '.join(map(repr, duplicates))}")
        owners: dict[str, str] = {n: f"cars[{i}]" for i, n in enumerate(names)}
        actor_names = [(f"persons[{i}]", p.name) for i, p in enumerate(self.persons)]
        actor_names += [(f"animals[{i}]", a.name) for i, a in enumerate(self.animals)]
        for i, g in enumerate(self.groups):
            actor_names.append((f"groups[{i}]", g.name))
            actor_names += [(f"groups[{i}] member {k}", f"{g.name}.{k}") for k in range(g.count)]
        for where, name in actor_names:
            if name in owners:
                raise ValueError(
                    f"duplicate name {name!r}: {where} and {owners[name]} (names must be unique"
                    " across cars, persons, groups and animals)"
                )
            owners[name] = where
        for i, fire in enumerate(self.fires):
            if fire.car not in names:
                known = ", ".join(map(repr, names)) or "none"
                raise ValueError(
                    f"fires[{i}] names car {fire.car!r}, which does not exist (cars: {known})"
                )
        return self


def _u64(value: int) -> int:
    """Map any int to a non-negative 64-bit value, as numpy seed sequences require."""
    return value & _MASK64


def _frame_ms(t: float) -> int:
    """Time key of per-frame randomness: whole milliseconds, so it does not depend on call order."""
    return _u64(round(t * 1000.0))


def _smoothstep(x: float) -> float:
    """3x^2 - 2x^3 on [0, 1]: starts like t^2 (fire engineering's t-squared fire), ends flat."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _heading_axes(heading_deg: float) -> tuple[F64, F64]:
    """Unit forward and right vectors (3-D, horizontal) for a compass-like heading."""
    h = math.radians(heading_deg)
    fwd = np.array([math.sin(h), math.cos(h), 0.0])
    right = np.array([math.cos(h), -math.sin(h), 0.0])
    return fwd, right


@dataclass(frozen=True)
class _CarGeom:
    """Precomputed frame and part temperatures of one car."""

    car: Car
    centre: F64  # (3,) footprint centre on the ground
    to_local: F64  # (3, 3): world vector @ to_local = (lx forward, ly right, z up)
    body_side: float
    body_top: float
    roof: float
    glass_side: float
    glass_front: float
    tyre: float
    under: float
    engine: float | None


@dataclass(frozen=True)
class _FireSetup:
    """Per-fire constants: which car, where it starts, and its seeded flicker parameters."""

    fire: CarFire
    geom: _CarGeom
    ign_lx: float
    ign_z: float
    t0_c: float
    smooth_freq: F64  # (channels, 3) Hz
    smooth_phase: F64  # (channels, 3) rad
    rag_k: F64  # (modes, 2) spatial frequencies in rad per flame width
    rag_phase: F64  # (modes,)


@dataclass(frozen=True)
class _FireFrame:
    """One fire rendered at one instant: flame opacity/temperature in a window, and heat glow."""

    v0: int
    v1: int
    u0: int
    u1: int
    alpha: F32  # (v1 - v0, u1 - u0) flame opacity 0..1
    temp: F32  # (v1 - v0, u1 - u0) flame temperature, deg C
    glow: F32  # (height, width) warming of surfaces near the fire, K
    distance_m: float  # camera to fire, to draw far fires first


@dataclass(frozen=True)
class _Actor:
    """Something drawn per frame: a person, an animal, or an arriving car (spec index)."""

    index: int  # its id in the sub-sample id buffer (cars keep their spec index)
    person: Person | None = None
    animal: Animal | None = None
    car: int | None = None


@dataclass(frozen=True)
class _Labelled:
    """An object truth() reports: where its sub-samples are and how many it has in all."""

    index: int
    name: str
    cls: TruthClass
    win: tuple[int, int, int, int]  # r0, r1, c0, c1 in sub-samples, clipped to the image
    total: int  # sub-samples of the whole object unoccluded, off-screen ones included
    posture: Posture | None = None


@dataclass(frozen=True)
class _ActorFrame:
    """Moving objects composited at one instant, at sub-sample resolution."""

    t: float
    ids: npt.NDArray[np.int16]  # object id each sub-sample sees (-1: background)
    temp: F32  # temperature of moving objects' sub-samples (0 elsewhere)
    dyn: npt.NDArray[np.bool_]  # sub-samples showing a moving object
    drawn: list[_Labelled]


@dataclass(frozen=True)
class _CoolingMap:
    """Where a parked car's cooling engine and tyres are in the image (pixel coverage)."""

    index: int
    v0: int
    v1: int
    u0: int
    u1: int
    engine: F32
    tyre: F32


class ParkingLotWorld:
    """Seeded night-time parking lot seen by a pole camera, rendered as scene temperature."""

    def __init__(self, spec: WorldSpec, width: int, height: int, seed: int) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        started = time.perf_counter()
        self.spec = spec.model_copy(deep=True)
        self.width = int(width)
        self.height = int(height)
        self.seed = int(seed)
        cam = self.spec.camera
        self._origin = np.array([cam.x_m, cam.y_m, cam.height_m])
        yaw, pitch = math.radians(cam.yaw_deg), math.radians(cam.pitch_deg)
        self._fwd = np.array(
            [math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), -math.sin(pitch)]
        )
        self._right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
        self._up = np.cross(self._right, self._fwd)
        # Square pixels: the vertical field of view follows from the aspect ratio.
        self._fx = (self.width / 2.0) / math.tan(math.radians(cam.hfov_deg) / 2.0)
        self._cx = self.width / 2.0
        self._cy = self.height / 2.0
        self._rays = self._make_rays(1)

        if self.spec.sun is not None and "sky_c" not in spec.model_fields_set:
            self.spec.sky_c = self.spec.sun.sky_c
        self._wet = 1.0 - math.exp(-self.spec.rain_mm_h / 3.0)  # how wet surfaces are, 0..1
        if self._wet > 0:  # rain clouds: an overcast sky a little below air temperature
            cloud_c = self.spec.ambient_c - 3.0
            self.spec.sky_c += min(1.0, 0.5 + self._wet) * (cloud_c - self.spec.sky_c)
        self._cars = [self._car_geom(i, car) for i, car in enumerate(self.spec.cars)]
        self._sun_dir = _sun_direction(self.spec.sun)
        static_c, depth, hits = self._render_static(_SUPERSAMPLE)
        self._static_c: F32 = static_c
        self._depth: F64 = depth
        self._hits: F32 = hits  # (3, height, width) world point seen by each pixel centre
        self._depth32: F32 = np.minimum(depth, _SKY_DEPTH_M).astype(np.float32)
        by_name = {g.car.name: g for g in self._cars}
        self._fires = [
            self._fire_setup(i, f, by_name[f.car]) for i, f in enumerate(self.spec.fires)
        ]
        self._cache_t: float | None = None
        self._cache_frames: list[_FireFrame | None] = []
        self._actors = self._make_actors()
        self._static_truth = self._static_car_truth()
        self._frame_cache: _ActorFrame | None = None
        logger.debug(
            "world %dx%d seed=%d: %d cars, %d fires, static render %.1f ms",
            self.width,
            self.height,
            self.seed,
            len(self._cars),
            len(self._fires),
            (time.perf_counter() - started) * 1000.0,
        )

    # ----------------------------------------------------------------- public API

    def scene_c(self, t: float) -> F32:
        """Scene temperature in deg C, float32 (height, width), at t seconds after start."""
        img = self._static_c.copy()
        self._add_slow_changes(img, t)
        frames = [f for f in self._fire_frames(t) if f is not None]
        for frame in frames:
            img += frame.glow
        # Far fires first, so nearer flames are drawn over them.
        for frame in sorted(frames, key=lambda f: -f.distance_m):
            win = img[frame.v0 : frame.v1, frame.u0 : frame.u1]
            win += frame.alpha * (frame.temp - win)
        if self._actors:
            self._draw_actors(img, self._actor_frame(t))
        if self._wet > 0:
            self._rain_streaks(img, t)
        return img

    def truth(self, t: float) -> list[Truth]:
        """Labels of every person, animal and car in view at t, from the rendered pixels."""
        frame = self._actor_frame(t)
        out = []
        for obj in [*self._static_truth, *frame.drawn]:
            out.append(self._label(frame.ids, obj))
        return [truth for truth in out if truth is not None]

    def project(self, x_m: float, y_m: float, z_m: float = 0.0) -> tuple[float, float] | None:
        """Continuous pixel (u, v) of a world point, or None if it is behind the camera."""
        dx, dy, dz = x_m - self._origin[0], y_m - self._origin[1], z_m - self._origin[2]
        fwd, right, up = self._fwd, self._right, self._up
        zc = dx * fwd[0] + dy * fwd[1] + dz * fwd[2]
        if zc <= 1e-9:
            return None
        xc = dx * right[0] + dy * right[1] + dz * right[2]
        yc = dx * up[0] + dy * up[1] + dz * up[2]
        return (float(self._cx + self._fx * xc / zc), float(self._cy - self._fx * yc / zc))

    def fire_box(self, fire_index: int, t: float) -> tuple[int, int, int, int] | None:
        """Pixel box (u0, v0, u1, v1), ends exclusive, of a fire's visible flames at t, or None."""
        if not 0 <= fire_index < len(self._fires):
            raise IndexError(f"fire index {fire_index} out of range (world has {len(self._fires)})")
        frame = self._fire_frames(t)[fire_index]
        if frame is None or frame.alpha.size == 0:
            return None
        peak = float(frame.alpha.max())
        if peak < 0.05:  # hidden behind something, or off-screen
            return None
        # A sub-pixel fire never reaches opacity 0.5 in any pixel: box its strongest pixels then.
        rows, cols = np.nonzero(frame.alpha >= min(0.5, 0.5 * peak))
        return (
            frame.u0 + int(cols.min()),
            frame.v0 + int(rows.min()),
            frame.u0 + int(cols.max()) + 1,
            frame.v0 + int(rows.max()) + 1,
        )

    # ----------------------------------------------------------------- static scene

    def _make_rays(self, ss: int) -> F64:
        """Unit view rays (height*ss, width*ss, 3) through sub-pixel sample centres."""
        us = (np.arange(self.width * ss) + 0.5) / ss
        vs = (np.arange(self.height * ss) + 0.5) / ss
        xn = (us - self._cx) / self._fx
        yn = (self._cy - vs) / self._fx
        rays = (
            self._fwd[None, None, :]
            + xn[None, :, None] * self._right[None, None, :]
            + yn[:, None, None] * self._up[None, None, :]
        )
        norm: F64 = np.linalg.norm(rays, axis=-1, keepdims=True)
        unit: F64 = rays / norm
        return unit

    def _car_geom(self, index: int, car: Car) -> _CarGeom:
        """Frame and apparent part temperatures of a car (seeded paint/ageing variation)."""
        spec = self.spec
        rng = np.random.default_rng([_u64(self.seed), _TAG_CAR, index])
        fwd, right = _heading_axes(car.heading_deg)
        to_local = np.stack([fwd, right, np.array([0.0, 0.0, 1.0])], axis=1)
        # Surfaces facing the clear sky cool radiatively below air temperature; less when cloudy.
        sky_cooling = float(np.clip((spec.ambient_c - spec.sky_c) / 32.0, 0.0, 1.5))
        body = (spec.ambient_c if car.body_c is None else car.body_c) + rng.uniform(-0.3, 0.3)
        # Glass has a low emissivity in the LWIR band's sense of "reflects the sky": looks cold.
        glass_side = body + 0.30 * (spec.sky_c - body)
        glass_front = body + 0.40 * (spec.sky_c - body)  # the windshield faces more of the sky
        tyre = body + 0.5
        if car.engine_c is not None:  # recently driven: tyres are warm too
            tyre += 0.25 * max(car.engine_c - spec.ambient_c, 0.0)
        return _CarGeom(
            car=car,
            centre=np.array([car.x_m, car.y_m, 0.0]),
            to_local=to_local,
            body_side=body - 0.5 * sky_cooling,
            body_top=body - 2.0 * sky_cooling,
            roof=body - 2.5 * sky_cooling,
            glass_side=glass_side,
            glass_front=glass_front,
            tyre=tyre,
            under=spec.ambient_c + 1.0,  # sheltered from the sky under the car
            engine=car.engine_c,
        )

    def _background(self, rays: F64) -> tuple[F64, F64, F64]:
        """Sky and asphalt temperature, depth (inf for sky) and sun heating weight along rays."""
        spec = self.spec
        dz = rays[..., 2]
        ground = dz < -1e-9
        with np.errstate(divide="ignore"):
            depth = np.where(ground, -self._origin[2] / np.where(ground, dz, -1.0), np.inf)
        # Sky: coldest at the zenith, approaching the air temperature toward the horizon.
        elev_deg = np.degrees(np.arcsin(np.clip(dz, 0.0, 1.0)))
        near_horizon = spec.sky_c + 0.8 * (spec.ambient_c - spec.sky_c)
        sky = spec.sky_c + (near_horizon - spec.sky_c) * np.exp(-elev_deg / 8.0)

        t_g = np.where(ground, depth, 0.0)
        gx = self._origin[0] + t_g * rays[..., 0]
        gy = self._origin[1] + t_g * rays[..., 1]
        grd = spec.ambient_c + self._asphalt_texture(gx, gy)
        grd -= (
            self._line_mask(gx, gy) * 0.5 * float(np.clip((spec.ambient_c - spec.sky_c) / 32, 0, 1))
        )
        # At grazing angles asphalt reflects more of the cold sky.
        grd -= (spec.ambient_c - spec.sky_c) * 0.15 * (1.0 - np.abs(dz)) ** 8
        sun_w = np.zeros_like(grd)
        if spec.sun is not None:
            # Sunlit asphalt heats up; in a car's shadow it stays near the air temperature.
            lit = ground & ~self._in_car_shadow(gx, gy, ground)
            sun_w = np.where(lit, 1.0, np.where(ground, 0.2, 0.0))
            heat = (spec.sun.asphalt_c - spec.ambient_c) * sun_w
            grd += heat - 0.3 * heat * self._line_mask(gx, gy)  # white paint absorbs less
        return np.where(ground, grd, sky), depth, sun_w

    def _in_car_shadow(
        self, gx: F64, gy: F64, ground: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """Ground points from which the way to the sun is blocked by a parked car."""
        shadow = np.zeros(gx.shape, dtype=bool)
        sun = self._sun_dir
        elev = max(math.asin(min(max(float(sun[2]), -1.0), 1.0)), math.radians(5.0))
        for geom in self._cars:
            car = geom.car
            if car.path is not None:
                continue
            reach = math.hypot(car.length_m, car.width_m) / 2 + car.height_m / math.tan(elev) + 0.5
            near = ground & (np.hypot(gx - geom.centre[0], gy - geom.centre[1]) < reach)
            if not near.any():
                continue
            pts = np.stack([gx[near] - geom.centre[0], gy[near] - geom.centre[1]], axis=-1)
            p_local = pts @ geom.to_local[:2, :]  # (n, 3); z = 0
            s_local = sun @ geom.to_local
            blocked = np.zeros(len(pts), dtype=bool)
            for _, lo, hi in _car_boxes(car):
                with np.errstate(divide="ignore", invalid="ignore"):
                    t1 = (lo - p_local) / s_local
                    t2 = (hi - p_local) / s_local
                t_in = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf).max(axis=-1)
                t_out = np.nan_to_num(np.maximum(t1, t2), nan=np.inf).min(axis=-1)
                blocked |= (t_in <= t_out) & (t_out > 0)
            shadow[near] |= blocked
        return shadow

    def _asphalt_texture(self, gx: F64, gy: F64) -> F64:
        """Fixed, seeded, low-frequency +-0.3 K pattern anchored to the ground."""
        rng = np.random.default_rng([_u64(self.seed), _TAG_GROUND])
        n = 5
        wavelength = rng.uniform(2.0, 12.0, n)
        angle = rng.uniform(0.0, 2.0 * math.pi, n)
        phase = rng.uniform(0.0, 2.0 * math.pi, n)
        amp = rng.uniform(0.5, 1.0, n)
        tex = np.zeros_like(gx)
        for i in range(n):
            k = 2.0 * math.pi / wavelength[i]
            tex += amp[i] * np.sin(
                k * (math.cos(angle[i]) * gx + math.sin(angle[i]) * gy) + phase[i]
            )
        return tex * (0.3 / float(amp.sum()))

    def _line_mask(self, gx: F64, gy: F64) -> F64:
        """1 where a painted stall line is: the two long sides of each car's parking stall."""
        mask = np.zeros_like(gx)
        for geom in self._cars:
            lx = (gx - geom.centre[0]) * geom.to_local[0, 0] + (
                gy - geom.centre[1]
            ) * geom.to_local[1, 0]
            ly = (gx - geom.centre[0]) * geom.to_local[0, 1] + (
                gy - geom.centre[1]
            ) * geom.to_local[1, 1]
            on = (np.abs(lx) < _STALL_DEPTH_M / 2) & (
                np.abs(np.abs(ly) - _STALL_WIDTH_M / 2) < _LINE_W_M / 2
            )
            mask[on] = 1.0
        return mask

    def _window(
        self, corners: F64, ss: int, rows: int, cols: int
    ) -> tuple[int, int, int, int] | None:
        """Pixel window (v0, v1, u0, u1) of the projection of world points, padded by a pixel."""
        rel = corners - self._origin
        zc = rel @ self._fwd
        if np.any(zc <= 1e-3):  # partly behind the camera: search the whole image
            return 0, rows, 0, cols
        u = (self._cx + self._fx * (rel @ self._right) / zc) * ss
        v = (self._cy - self._fx * (rel @ self._up) / zc) * ss
        u0, u1 = max(math.floor(float(u.min())) - 1, 0), min(math.ceil(float(u.max())) + 1, cols)
        v0, v1 = max(math.floor(float(v.min())) - 1, 0), min(math.ceil(float(v.max())) + 1, rows)
        if u0 >= u1 or v0 >= v1:
            return None
        return v0, v1, u0, u1

    def _render_static(self, ss: int) -> tuple[F32, F64, F32]:
        """Supersampled sky, asphalt and cars: (temperature, centre depth, centre hit points)."""
        rays = self._make_rays(ss)
        temp, depth, sun_w = self._background(rays)
        rows, cols = rays.shape[:2]
        ids = np.full((rows, cols), -1, dtype=np.int16)  # which car each sub-sample sees
        codes = np.zeros((rows, cols), dtype=np.int8)  # which car part (engine, tyre, other)
        for index, geom in enumerate(self._cars):
            car = geom.car
            if car.path is not None:  # arriving cars move: drawn per frame
                continue
            o_local = (self._origin - geom.centre) @ geom.to_local
            for kind, lo, hi in _car_boxes(car):
                corners = np.array(
                    [
                        [x, y, z]
                        for x in (lo[0], hi[0])
                        for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])
                    ]
                )
                world_corners = geom.centre + corners @ geom.to_local.T
                win = self._window(world_corners, ss, rows, cols)
                if win is None:
                    continue
                v0, v1, u0, u1 = win
                d_local = rays[v0:v1, u0:u1] @ geom.to_local
                t_near, axis, hit = _ray_box(o_local, d_local, lo, hi)
                closer = hit & (t_near < depth[v0:v1, u0:u1])
                if not closer.any():
                    continue
                p_local = o_local + t_near[..., None] * d_local
                part, code, sun_part = self._car_part_c(geom, kind, axis, d_local, p_local)
                depth[v0:v1, u0:u1][closer] = t_near[closer]
                temp[v0:v1, u0:u1][closer] = part[closer]
                ids[v0:v1, u0:u1][closer] = index
                codes[v0:v1, u0:u1][closer] = code[closer]
                sun_w[v0:v1, u0:u1][closer] = sun_part[closer]

        if self._wet > 0:  # wet surfaces are pulled toward the air (and rain) temperature
            surface = np.isfinite(depth)
            temp[surface] += 0.7 * self._wet * (self.spec.ambient_c - temp[surface])
        h_px, w_px = self.height, self.width
        self._ss_z: F32 = (depth * (rays @ self._fwd)).astype(np.float32)  # depth along fwd
        self._ss_ids = ids
        self._sun_weight: F32 = (
            sun_w.reshape(h_px, ss, w_px, ss).mean(axis=(1, 3)).astype(np.float32)
        )
        self._cooling = self._cooling_maps(ids, codes, ss)
        pixel_c = temp.reshape(h_px, ss, w_px, ss).mean(axis=(1, 3)).astype(np.float32)
        mid = ss // 2
        centre_depth = np.ascontiguousarray(depth[mid::ss, mid::ss])
        centre_rays = rays[mid::ss, mid::ss]
        reach = np.where(np.isfinite(centre_depth), centre_depth, _SKY_DEPTH_M)
        hits = self._origin[None, None, :] + reach[..., None] * centre_rays
        return pixel_c, centre_depth, np.ascontiguousarray(np.moveaxis(hits, -1, 0), np.float32)

    def _car_part_c(
        self, geom: _CarGeom, kind: str, axis: npt.NDArray[np.intp], d_local: F64, p_local: F64
    ) -> tuple[F64, npt.NDArray[np.int8], F64]:
        """Surface temperature where rays enter a car box, part codes, and sun heating weight."""
        temp = self._car_surface_c(geom, kind, axis, d_local, p_local)
        lx, z = p_local[..., 0], p_local[..., 2]
        top = (axis == 2) & (d_local[..., 2] < 0)
        front = (axis == 0) & (d_local[..., 0] < 0)
        code = np.zeros(lx.shape, dtype=np.int8)
        sun_w = np.zeros(lx.shape)
        if kind == "lower":
            if geom.engine is not None:
                code[(top & (lx > _HOOD_START * geom.car.length_m)) | front] = _PART_ENGINE
            wheel = (axis == 1) & (
                np.hypot(np.abs(lx) - _WHEEL_X * geom.car.length_m, z - _WHEEL_R_M) < _WHEEL_R_M
            )
            code[wheel] = _PART_TYRE
        sun = self.spec.sun
        if sun is not None:
            # Normal of the face each ray enters, in world axes, against the sun direction.
            normal = np.zeros(p_local.shape)
            np.put_along_axis(
                normal,
                axis[..., None],
                -np.sign(np.take_along_axis(d_local, axis[..., None], axis=-1)),
                axis=-1,
            )
            facing = np.clip(normal @ (self._sun_dir @ geom.to_local), 0.0, 1.0)
            gain = sun.roof_c - self.spec.ambient_c
            sun_w = np.where(top, 1.0, 0.5 * facing)
            if kind == "cabin":  # glass reflects the sky and heats less than paint
                sun_w = np.where(top, sun_w, 0.3 * facing)
            sun_w = sun_w * (code != _PART_TYRE)
            temp = temp + gain * sun_w
        return temp, code, sun_w

    def _car_surface_c(
        self, geom: _CarGeom, kind: str, axis: npt.NDArray[np.intp], d_local: F64, p_local: F64
    ) -> F64:
        """Apparent night-time temperature of the car surface where each ray enters a box."""
        car = geom.car
        lx, ly, z = p_local[..., 0], p_local[..., 1], p_local[..., 2]
        top = (axis == 2) & (d_local[..., 2] < 0)
        front = (axis == 0) & (d_local[..., 0] < 0)  # entering through the lx = +L/2 face
        if kind == "cabin":
            out = np.full(lx.shape, geom.glass_side)
            out[front] = geom.glass_front
            # Pillars and roof rails are painted metal, not glass.
            pillar = (
                (
                    (axis == 1)
                    & (
                        (lx < _CABIN_REAR * car.length_m + 0.12)
                        | (lx > _CABIN_FRONT * car.length_m - 0.12)
                    )
                )
                | ((axis == 0) & (np.abs(ly) > _CABIN_HALF_W * car.width_m - 0.1))
                | (z > car.height_m - 0.06)
            )
            out[pillar] = geom.body_side
            out[top] = geom.roof
            return out
        out = np.full(lx.shape, geom.body_side)
        out[top] = geom.body_top
        if geom.engine is not None:
            out[(top & (lx > _HOOD_START * car.length_m)) | front] = geom.engine
        low = ~top
        wheel = (axis == 1) & (
            np.hypot(np.abs(lx) - _WHEEL_X * car.length_m, z - _WHEEL_R_M) < _WHEEL_R_M
        )
        out[low & (z < _UNDER_GAP_M)] = geom.under
        out[wheel] = geom.tyre
        return out

    # ----------------------------------------------------------------- slow changes

    def _cooling_maps(
        self, ids: npt.NDArray[np.int16], codes: npt.NDArray[np.int8], ss: int
    ) -> list[_CoolingMap]:
        """Pixel coverage of engine and tyre surfaces of parked cars whose engines cool."""
        maps = []
        for index, geom in enumerate(self._cars):
            car = geom.car
            if car.path is not None or car.engine_c is None or car.parked_s() is None:
                continue
            rows, cols = np.nonzero(ids == index)
            if rows.size == 0:
                continue
            v0, v1 = int(rows.min()) // ss, int(rows.max()) // ss + 1
            u0, u1 = int(cols.min()) // ss, int(cols.max()) // ss + 1
            win_ids = ids[v0 * ss : v1 * ss, u0 * ss : u1 * ss] == index
            win_codes = codes[v0 * ss : v1 * ss, u0 * ss : u1 * ss]
            shape = (v1 - v0, ss, u1 - u0, ss)
            engine = (win_ids & (win_codes == _PART_ENGINE)).reshape(shape).mean(axis=(1, 3))
            tyre = (win_ids & (win_codes == _PART_TYRE)).reshape(shape).mean(axis=(1, 3))
            maps.append(
                _CoolingMap(
                    index, v0, v1, u0, u1, engine.astype(np.float32), tyre.astype(np.float32)
                )
            )
        return maps

    def _add_slow_changes(self, img: F32, t: float) -> None:
        """Engines cooling after parking, and the sun's heating drifting with passing clouds."""
        ambient = self.spec.ambient_c
        keep = 1.0 - 0.7 * self._wet
        for cool in self._cooling:
            car = self.spec.cars[cool.index]
            assert car.engine_c is not None
            now = car.engine_at(t, ambient)
            assert now is not None
            d_engine = (now - car.engine_c) * keep
            d_tyre = 0.25 * (max(now - ambient, 0.0) - max(car.engine_c - ambient, 0.0)) * keep
            win = img[cool.v0 : cool.v1, cool.u0 : cool.u1]
            win += cool.engine * np.float32(d_engine) + cool.tyre * np.float32(d_tyre)
        sun = self.spec.sun
        if sun is not None and sun.drift_k > 0:
            rng = np.random.default_rng([_u64(self.seed), _TAG_SUN])
            phase = rng.uniform(0.0, 2.0 * math.pi, 2)
            w = 2.0 * math.pi * t / sun.drift_period_s
            drift = sun.drift_k * (
                0.7 * math.sin(w + phase[0]) + 0.3 * math.sin(2.7 * w + phase[1])
            )
            img += self._sun_weight * np.float32(drift)

    def _rain_streaks(self, img: F32, t: float) -> None:
        """Falling drops near the camera: short faint streaks pulled toward the air temperature."""
        rng = np.random.default_rng([_u64(self.seed), _TAG_RAIN, _frame_ms(t)])
        n = min(int(4.0 * self.spec.rain_mm_h) + 1, 300)
        length = rng.integers(2, 7, n)
        rows = np.repeat(rng.integers(0, self.height, n), length) + np.concatenate(
            [np.arange(k) for k in length]
        )
        cols = np.repeat(rng.integers(0, self.width, n), length)
        ok = rows < self.height
        rows, cols = rows[ok], cols[ok]
        target = np.float32(self.spec.ambient_c - 1.0)
        img[rows, cols] += np.float32(0.3) * (target - img[rows, cols])

    # ----------------------------------------------------------------- actors

    def _make_actors(self) -> list[_Actor]:
        """Everything drawn per frame, with its object id (cars keep their spec index)."""
        spec = self.spec
        actors = [_Actor(i, car=i) for i, car in enumerate(spec.cars) if car.path is not None]
        persons = list(spec.persons)
        for group in spec.groups:
            persons += group_members(group, self.seed, spec.ambient_c)
        next_id = len(spec.cars)
        for person in persons:
            actors.append(_Actor(next_id, person=person))
            next_id += 1
        for animal in spec.animals:
            actors.append(_Actor(next_id, animal=animal))
            next_id += 1
        return actors

    def _grid(self, r0: int, r1: int, c0: int, c1: int) -> tuple[F64, F64]:
        """Normalised image coordinates (xn per column, yn per row) of sub-sample centres."""
        ss = _SUPERSAMPLE
        xn = ((np.arange(c0, c1) + 0.5) / ss - self._cx) / self._fx
        yn = (self._cy - (np.arange(r0, r1) + 0.5) / ss) / self._fx
        return xn, yn

    def _ss_window(self, corners: F64) -> tuple[int, int, int, int] | None:
        """Sub-sample window (r0, r1, c0, c1) around projected points, not clipped to the image."""
        ss = _SUPERSAMPLE
        rows, cols = self.height * ss, self.width * ss
        rel = corners - self._origin
        zc = rel @ self._fwd
        if np.all(zc <= 1e-3):
            return None
        if np.any(zc <= 1e-3):  # partly behind the camera: the whole image
            return 0, rows, 0, cols
        u = (self._cx + self._fx * (rel @ self._right) / zc) * ss
        v = (self._cy - self._fx * (rel @ self._up) / zc) * ss
        # Off-screen parts count toward the visible fraction, up to an image size away.
        c0 = max(math.floor(float(u.min())) - 1, -cols)
        c1 = min(math.ceil(float(u.max())) + 1, 2 * cols)
        r0 = max(math.floor(float(v.min())) - 1, -rows)
        r1 = min(math.ceil(float(v.max())) + 1, 2 * rows)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def _car_samples(self, geom: _CarGeom, win: tuple[int, int, int, int]) -> tuple[F64, F64]:
        """Depth (along the view axis; inf = miss) and temperature of a car's sub-samples."""
        r0, r1, c0, c1 = win
        xn, yn = self._grid(r0, r1, c0, c1)
        dirs = (
            self._fwd[None, None, :]
            + xn[None, :, None] * self._right[None, None, :]
            + yn[:, None, None] * self._up[None, None, :]
        )
        d_local = dirs @ geom.to_local
        o_local = (self._origin - geom.centre) @ geom.to_local
        tz = np.full(dirs.shape[:2], np.inf)
        temp = np.zeros(dirs.shape[:2])
        for kind, lo, hi in _car_boxes(geom.car):
            t_near, axis, hit = _ray_box(o_local, d_local, lo, hi)
            closer = hit & (t_near < tz)
            if not closer.any():
                continue
            p_local = o_local + t_near[..., None] * d_local
            part, _, _ = self._car_part_c(geom, kind, axis, d_local, p_local)
            tz[closer] = t_near[closer]
            temp[closer] = part[closer]
        if self._wet > 0:
            temp += 0.7 * self._wet * (self.spec.ambient_c - temp)
        return tz, temp

    def _static_car_truth(self) -> list[_Labelled]:
        """Parked cars as labelled objects: their windows and unoccluded sub-sample counts."""
        out = []
        for index, geom in enumerate(self._cars):
            car = geom.car
            if car.path is not None:
                continue
            corners = np.concatenate(
                [
                    geom.centre + _box_corners(lo, hi) @ geom.to_local.T
                    for _, lo, hi in _car_boxes(car)
                ]
            )
            win = self._ss_window(corners)
            if win is None:
                continue
            tz, _ = self._car_samples(geom, win)
            total = int(np.isfinite(tz).sum())
            clipped = self._clip(win)
            if total and clipped is not None:
                out.append(_Labelled(index, car.name, "vehicle", clipped, total))
        return out

    def _clip(self, win: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """A sub-sample window clipped to the image, or None if nothing is left."""
        ss = _SUPERSAMPLE
        r0, r1, c0, c1 = win
        r0, r1 = max(r0, 0), min(r1, self.height * ss)
        c0, c1 = max(c0, 0), min(c1, self.width * ss)
        return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None

    def _moving_car_geom(self, index: int, t: float) -> _CarGeom | None:
        """An arriving car's frame and temperatures at t (None before its path starts)."""
        car = self.spec.cars[index]
        assert car.path is not None
        if t < car.path[0][0]:
            return None
        state = path_at(car.path, t)
        heading = state.heading_deg if state.heading_deg is not None else car.heading_deg
        fwd, right = _heading_axes(heading)
        engine = car.engine_at(t, self.spec.ambient_c)
        base = self._cars[index]
        body = base.tyre - 0.5
        if car.engine_c is not None:
            body -= 0.25 * max(car.engine_c - self.spec.ambient_c, 0.0)
        tyre = (
            body + 0.5 + (0.0 if engine is None else 0.25 * max(engine - self.spec.ambient_c, 0.0))
        )
        return replace(
            base,
            centre=np.array([state.x_m, state.y_m, 0.0]),
            to_local=np.stack([fwd, right, np.array([0.0, 0.0, 1.0])], axis=1),
            engine=engine,
            tyre=tyre,
        )

    def _body_samples(
        self, body: Body, temps: F64, win: tuple[int, int, int, int]
    ) -> tuple[F32, F32]:
        """Depth (along the view axis; inf = miss) and temperature of a body's sub-samples."""
        r0, r1, c0, c1 = win
        xn, yn = self._grid(r0, r1, c0, c1)
        fwd_h, right_h = _heading_axes(body.heading_deg)
        # Rows of m map world vectors to the body frame (forward, right, up).
        m = np.stack([fwd_h, right_h, np.array([0.0, 0.0, 1.0])])
        parts = body.parts
        centres = np.array([body.x_m, body.y_m, 0.0]) + parts[:, :3] @ m
        inv = 1.0 / parts[:, 3:6]
        f = (m @ self._fwd)[None, :] * inv  # (E, 3): the camera axes in each unit-sphere frame
        x = (m @ self._right)[None, :] * inv
        y = (m @ self._up)[None, :] * inv
        o = ((self._origin - centres) @ m.T) * inv
        # The ray fwd + xn right + yn up meets ellipsoid e where a t^2 + 2 b t + c = 0; a, b and
        # the discriminant b^2 - a c are polynomials in (xn, yn). Their coefficients are formed
        # in float64 around each ellipsoid's projected centre, so float32 evaluation is accurate.
        vec = np.stack([f, x, y, o], axis=1)  # (E, 4, 3)
        g = np.einsum("eij,ekj->eik", vec, vec)  # all the dot products at once
        c = g[:, 3, 3] - 1.0
        a_poly = np.stack(
            [g[:, 0, 0], 2 * g[:, 0, 1], 2 * g[:, 0, 2], g[:, 1, 1], g[:, 2, 2], 2 * g[:, 1, 2]],
            axis=1,
        )
        b0, b1, b2 = g[:, 3, 0], g[:, 3, 1], g[:, 3, 2]
        zero = np.zeros_like(b0)
        b_poly = np.stack([b0, b1, b2, zero, zero, zero], axis=1)
        d_poly = np.stack([b0 * b0, 2 * b0 * b1, 2 * b0 * b2, b1 * b1, b2 * b2, 2 * b1 * b2], 1)
        d_poly -= a_poly * c[:, None]
        rel = centres - self._origin
        zc = rel @ self._fwd
        x0, y0 = (rel @ self._right) / zc, (rel @ self._up) / zc
        dx = (xn[None, :] - x0[:, None]).astype(np.float32)[:, None, :]  # (E, 1, C)
        dy = (yn[None, :] - y0[:, None]).astype(np.float32)[:, :, None]  # (E, R, 1)
        dxy = dy * dx
        a = _poly_eval(_poly_shift(a_poly, x0, y0), dx, dy, dxy)
        b = _poly_eval(_poly_shift(b_poly, x0, y0), dx, dy, dxy)
        disc = _poly_eval(_poly_shift(d_poly, x0, y0), dx, dy, dxy)
        # A tiny, far ellipsoid can leave the float32 quadratic term at or below zero: no hit
        # (dividing by it would paint NaN pixels).
        flat_a = a <= 0
        disc[flat_a] = 0
        a[flat_a] = 1
        np.maximum(disc, np.float32(0), out=disc)
        t_hit = (-b - np.sqrt(disc)) / a
        t_hit[disc <= 0] = np.inf
        nearest = np.argmin(t_hit, axis=0)
        n = nearest.size
        flat = nearest.ravel() * n + np.arange(n)  # gather each sample's nearest ellipsoid
        tz: F32 = t_hit.ravel()[flat].reshape(nearest.shape)
        # Cosine of the view angle on the surface: edges look a little cooler.
        disc /= a
        cos = np.sqrt(np.minimum(disc.ravel()[flat].reshape(nearest.shape), np.float32(1)))
        temp: F32 = temps.astype(np.float32)[nearest] - np.float32(_SHADE_K) * (1 - cos)
        return tz, temp

    def _body_window(self, body: Body) -> tuple[int, int, int, int] | None:
        """Sub-sample window around a body's bounding box."""
        fwd_h, right_h = _heading_axes(body.heading_deg)
        m = np.stack([fwd_h, right_h, np.array([0.0, 0.0, 1.0])])
        centres = np.array([body.x_m, body.y_m, 0.0]) + body.parts[:, :3] @ m
        # World-axis half extents of each ellipsoid (its axes are rotated about z only).
        r = body.parts[:, 3:6] @ np.abs(m)
        lo, hi = (centres - r).min(axis=0), (centres + r).max(axis=0)
        return self._ss_window(_box_corners(lo, hi))

    def _actor_samples(
        self, actor: _Actor, t: float
    ) -> (
        tuple[
            _Labelled,
            tuple[int, int, int, int],
            npt.NDArray[np.floating[Any]],
            npt.NDArray[np.floating[Any]],
        ]
        | None
    ):
        """One moving object at t: its label (window unclipped), depth and temperature."""
        ambient = self.spec.ambient_c
        posture: Posture | None = None
        cls: TruthClass
        tz: npt.NDArray[np.floating[Any]]
        temp: npt.NDArray[np.floating[Any]]
        if actor.car is not None:
            geom = self._moving_car_geom(actor.car, t)
            if geom is None:
                return None
            corners = np.concatenate(
                [
                    geom.centre + _box_corners(lo, hi) @ geom.to_local.T
                    for _, lo, hi in _car_boxes(geom.car)
                ]
            )
            win = self._ss_window(corners)
            if win is None:
                return None
            tz, temp = self._car_samples(geom, win)
            name, cls = geom.car.name, "vehicle"
        else:
            if actor.person is not None:
                got = person_body(actor.person, t, ambient)
                if got is None:
                    return None
                body, posture = got
                name, cls = actor.person.name, "person"
            else:
                assert actor.animal is not None
                maybe = animal_body(actor.animal, t)
                if maybe is None:
                    return None
                body, name, cls = maybe, actor.animal.name, "animal"
            win = self._body_window(body)
            if win is None:
                return None
            temps = body.temps_c + 0.5 * self._wet * (ambient - body.temps_c)  # wet clothes, fur
            tz, temp = self._body_samples(body, temps, win)
        label = _Labelled(actor.index, name, cls, win, int(np.isfinite(tz).sum()), posture)
        return label, win, tz, temp

    def _actor_frame(self, t: float) -> _ActorFrame:
        """All moving objects composited by depth over the static scene (cached for the last t)."""
        cached = self._frame_cache
        if cached is not None and cached.t == t:
            return cached
        if not self._actors:
            empty = np.zeros((0, 0), np.float32)
            frame = _ActorFrame(t, self._ss_ids, empty, np.zeros((0, 0), bool), [])
            self._frame_cache = frame
            return frame
        z = self._ss_z.copy()
        ids = self._ss_ids.copy()
        temp = np.zeros_like(z)
        dyn = np.zeros(z.shape, dtype=bool)
        drawn = []
        for actor in self._actors:
            got = self._actor_samples(actor, t)
            if got is None:
                continue
            label, win, tz, temp_a = got
            clipped = self._clip(win)
            if label.total == 0 or clipped is None:
                continue
            r0, r1, c0, c1 = clipped
            sub = (slice(r0 - win[0], r1 - win[0]), slice(c0 - win[2], c1 - win[2]))
            tz_in = tz[sub]
            closer = tz_in < z[r0:r1, c0:c1]
            z[r0:r1, c0:c1][closer] = tz_in[closer]
            ids[r0:r1, c0:c1][closer] = label.index
            temp[r0:r1, c0:c1][closer] = temp_a[sub][closer]
            dyn[r0:r1, c0:c1][closer] = True
            drawn.append(replace(label, win=clipped))
        frame = _ActorFrame(t, ids, temp, dyn, drawn)
        self._frame_cache = frame
        return frame

    def _draw_actors(self, img: F32, frame: _ActorFrame) -> None:
        """Blend the moving objects' sub-samples into the pixels they cover."""
        ss = _SUPERSAMPLE
        base = img.copy()  # overlapping windows then give the same pixels twice
        for label in frame.drawn:
            r0, r1, c0, c1 = label.win
            v0, v1, u0, u1 = r0 // ss, -(-r1 // ss), c0 // ss, -(-c1 // ss)
            shape = (v1 - v0, ss, u1 - u0, ss)
            rows, cols = slice(v0 * ss, v1 * ss), slice(u0 * ss, u1 * ss)
            cover = frame.dyn[rows, cols].reshape(shape).mean(axis=(1, 3), dtype=np.float32)
            warm = frame.temp[rows, cols].reshape(shape).mean(axis=(1, 3), dtype=np.float32)
            img[v0:v1, u0:u1] = base[v0:v1, u0:u1] * (np.float32(1.0) - cover) + warm

    def _label(self, ids: npt.NDArray[np.int16], obj: _Labelled) -> Truth | None:
        """The truth of one object from the sub-samples that show it, or None if none do."""
        ss = _SUPERSAMPLE
        r0, r1, c0, c1 = obj.win
        mask = ids[r0:r1, c0:c1] == obj.index
        count = int(mask.sum())
        if count == 0:
            return None
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        w, h = self.width * ss, self.height * ss
        box = (
            (c0 + int(cols[0])) / w,
            (r0 + int(rows[0])) / h,
            (c0 + int(cols[-1]) + 1) / w,
            (r0 + int(rows[-1]) + 1) / h,
        )
        return Truth(obj.name, obj.cls, box, obj.posture, min(count / max(obj.total, 1), 1.0))

    # ----------------------------------------------------------------- fires

    def _fire_setup(self, index: int, fire: CarFire, geom: _CarGeom) -> _FireSetup:
        """Seeded constants of one fire."""
        rng = np.random.default_rng([_u64(self.seed), _TAG_FIRE, index])
        car = geom.car
        return _FireSetup(
            fire=fire,
            geom=geom,
            ign_lx=0.35 * car.length_m,  # engine bay, middle of the hood
            ign_z=_LOWER_H * car.height_m + 0.5 * _FIRE_SPOT_R_M,
            t0_c=min(self.spec.ambient_c + _FIRE_T0_ABOVE_AMBIENT, fire.peak_c),
            # Flame puffing of car-sized fires is around 1 Hz; mix in faster turbulence.
            smooth_freq=rng.uniform(0.4, 3.0, (_FIRE_SMOOTH_CHANNELS, 3)),
            smooth_phase=rng.uniform(0.0, 2.0 * math.pi, (_FIRE_SMOOTH_CHANNELS, 3)),
            rag_k=rng.uniform(5.0, 14.0, (_FIRE_RAG_MODES, 2))
            * rng.choice([-1.0, 1.0], (_FIRE_RAG_MODES, 2)),
            rag_phase=rng.uniform(0.0, 2.0 * math.pi, _FIRE_RAG_MODES),
        )

    def _fire_frames(self, t: float) -> list[_FireFrame | None]:
        """All fires rendered at t (cached for the last t: scene_c and fire_box share it)."""
        if self._cache_t != t:
            self._cache_frames = [
                self._render_fire(i, setup, t) for i, setup in enumerate(self._fires)
            ]
            self._cache_t = t
        return self._cache_frames

    def _render_fire(self, index: int, setup: _FireSetup, t: float) -> _FireFrame | None:
        """Flames as stacked, flickering ellipsoids around the car, plus heat glow around it."""
        fire, geom = setup.fire, setup.geom
        car = geom.car
        tau = t - fire.ignite_at_s
        if tau < 0:
            return None
        ambient = self.spec.ambient_c
        progress = min(tau / fire.full_after_s, 1.0)
        s = _smoothstep(progress)  # heat release, t-squared at first
        grow = math.sqrt(s)  # burning area ~ heat release, so its radius ~ sqrt
        height_growth = s**0.4  # flame height ~ Q^(2/5)
        # Smooth flicker channels in [-1, 1], functions of t only; plus per-frame jitter.
        smooth = np.sin(2.0 * math.pi * setup.smooth_freq * t + setup.smooth_phase).mean(axis=1)
        frame_rng = np.random.default_rng([_u64(self.seed), _TAG_FIRE_FRAME, index, _frame_ms(t)])
        jitter = frame_rng.standard_normal(2 + _FIRE_RAG_MODES)

        flame_c = setup.t0_c + (fire.peak_c - setup.t0_c) * s
        flicker = 1.0 + 0.06 * smooth[0] + 0.015 * jitter[0]
        r0 = _FIRE_SPOT_R_M
        cen_lx = setup.ign_lx * (1.0 - grow)
        half_l = r0 + (car.length_m / 2 + 0.25 - r0) * grow
        half_w = r0 + (car.width_m / 2 + 0.25 - r0) * grow
        z_bot = setup.ign_z * (1.0 - grow) + 0.15 * grow  # burning tyres/fuel reach the ground
        z_top_full = car.height_m + _FIRE_FLAME_ABOVE_ROOF_M
        z_top = setup.ign_z + 2 * r0 + (z_top_full - setup.ign_z - 2 * r0) * height_growth
        z_top = z_bot + (z_top - z_bot) * (1.0 + 0.12 * smooth[1] + 0.03 * jitter[1])

        # Layers: (centre local xyz, semi-axes, temperature, optical length)
        layers = []
        spacing = (z_top - z_bot) / (_FIRE_LAYERS - 1)
        reach = 0.0
        for k in range(_FIRE_LAYERS):
            q = k / (_FIRE_LAYERS - 1)
            taper = 1.0 - 0.7 * q**1.3
            wobble = smooth[2 + 3 * k : 5 + 3 * k]
            a = max(r0, half_l * taper) * (1.0 + 0.12 * wobble[0])
            b = max(r0, half_w * taper) * (1.0 + 0.12 * wobble[0])
            c = 0.75 * spacing + r0
            sway = 0.3 * q * max(half_w, r0)  # upper flames sway more
            centre = np.array(
                [cen_lx + sway * wobble[1], sway * wobble[2], z_bot + (z_top - z_bot) * q]
            )
            temp_c = ambient + (flame_c - ambient) * flicker * (1.0 - 0.4 * q)
            optical = 0.2 * min(a, b, c) * (1.0 + 2.5 * q)  # upper layers: thinner hot gas
            layers.append((centre, np.array([a, b, c]), temp_c, optical))
            reach = max(reach, abs(centre[0]) + a, abs(centre[1]) + b)

        # World-space box around all layers, projected to the image window to render in.
        box = np.array(
            [
                [x, y, z]
                for x in (-reach, reach)
                for y in (-reach, reach)
                for z in (z_bot - r0, z_top + c)
            ]
        )
        world_box = geom.centre + box @ geom.to_local.T
        fire_centre = geom.centre + np.array([cen_lx, 0.0, (z_bot + z_top) / 2]) @ geom.to_local.T
        distance = float(np.linalg.norm(fire_centre - self._origin))
        glow = self._heat_glow(geom, cen_lx, half_l, half_w, z_top, s, grow)
        win = self._window(world_box, 1, self.height, self.width)
        if win is None:
            empty = np.zeros((0, 0), np.float32)
            return _FireFrame(0, 0, 0, 0, empty, empty, glow, distance)
        v0, v1, u0, u1 = win
        d_local = (self._rays[v0:v1, u0:u1] @ geom.to_local).astype(np.float32)
        d_sq = d_local * d_local
        o_local = (self._origin - geom.centre) @ geom.to_local
        depth = self._depth32[v0:v1, u0:u1]

        # Ragged, upward-travelling flame edges: modulate optical depth by a few travelling waves
        # (separable: sin(x + y) = sin x cos y + cos x sin y keeps it to outer products).
        proj = self.project(*fire_centre)
        uc, vc = proj if proj is not None else (self.width / 2, self.height / 2)
        width_px = max(self._fx * 2.0 * max(half_l, half_w) / max(distance, 1e-3), 1.0)
        xn = (np.arange(u0, u1) + 0.5 - uc) / width_px
        yn = (np.arange(v0, v1) + 0.5 - vc) / width_px + 1.5 * t
        rag = np.zeros((v1 - v0, u1 - u0), np.float32)
        for m in range(_FIRE_RAG_MODES):
            kx, ky = setup.rag_k[m]
            ax = (kx * xn + setup.rag_phase[m] + 0.3 * jitter[2 + m]).astype(np.float32)
            ay = (ky * yn).astype(np.float32)
            rag += np.sin(ay)[:, None] * np.cos(ax)[None, :]
            rag += np.cos(ay)[:, None] * np.sin(ax)[None, :]
        rag = np.maximum(rag * np.float32(0.5 / _FIRE_RAG_MODES) + np.float32(1.0), np.float32(0))

        tau_sum = np.zeros_like(rag)
        rad_sum = np.zeros_like(rag)
        for centre, axes, temp_c, optical in layers:
            inv = 1.0 / axes
            o_s = (o_local - centre) * inv
            chord = _ray_ellipsoid_chord(
                d_sq @ (inv * inv).astype(np.float32),
                d_local @ (o_s * inv).astype(np.float32),
                float(o_s @ o_s) - 1.0,
                depth,
            )
            tau_sum += chord * np.float32(1.0 / optical)
            # Radiance-weighted (T^4) mix: the hot core dominates what the sensor sees.
            rad_sum += chord * np.float32(((temp_c + 273.15) / 1000.0) ** 4 / optical)
        tau_sum *= rag
        rad_sum *= rag
        safe = np.where(tau_sum > 0, tau_sum, np.float32(1.0))
        temp = (rad_sum / safe) ** np.float32(0.25) * np.float32(1000.0) - np.float32(273.15)
        alpha = np.float32(1.0) - np.exp(-tau_sum)
        return _FireFrame(v0, v1, u0, u1, alpha, temp, glow, distance)

    def _heat_glow(
        self,
        geom: _CarGeom,
        cen_lx: float,
        half_l: float,
        half_w: float,
        z_top: float,
        s: float,
        grow: float,
    ) -> F32:
        """Warming (K) of surfaces near the fire, falling off with distance from the flames."""
        amp = 2.0 + 150.0 * s
        sigma = 0.3 + 1.5 * grow
        hx, hy, hz = self._hits[0], self._hits[1], self._hits[2]
        rx = hx - np.float32(geom.centre[0])
        ry = hy - np.float32(geom.centre[1])
        lx = rx * np.float32(geom.to_local[0, 0]) + ry * np.float32(geom.to_local[1, 0])
        ly = rx * np.float32(geom.to_local[0, 1]) + ry * np.float32(geom.to_local[1, 1])
        dl = np.maximum(np.abs(lx - np.float32(cen_lx)) - np.float32(half_l), 0)
        dw = np.maximum(np.abs(ly) - np.float32(half_w), 0)
        dz = np.maximum(hz - np.float32(z_top), 0)
        d2 = (dl * dl + dw * dw + dz * dz) * np.float32(1.0 / (sigma * sigma))
        glow: F32 = (np.float32(amp) * np.exp(-d2)).astype(np.float32)
        return glow


def _ray_box(
    origin: F64, dirs: F64, lo: F64, hi: F64
) -> tuple[F64, npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Slab test of rays against an axis-aligned box: entry distance, entry axis, hit mask."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t1 = (lo - origin) * inv
        t2 = (hi - origin) * inv
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    t_near = tmin.max(axis=-1)
    t_far = tmax.min(axis=-1)
    axis = tmin.argmax(axis=-1)
    with np.errstate(invalid="ignore"):
        hit = (t_near <= t_far) & (t_near > 1e-6)
    return t_near, axis, hit


def _ray_ellipsoid_chord(a: F32, half_b: F32, c: float, max_t: F32) -> F32:
    """Length inside an ellipsoid, before max_t, of rays solving a t^2 + 2 half_b t + c = 0."""
    disc = np.maximum(half_b * half_b - a * np.float32(c), np.float32(0))
    root = np.sqrt(disc)
    inv_a = np.float32(1.0) / a
    t_in = np.maximum((-half_b - root) * inv_a, np.float32(0))
    t_out = np.minimum((root - half_b) * inv_a, max_t)
    # A miss has root = 0, so t_in >= t_out there and the chord clips to 0.
    chord: F32 = np.maximum(t_out - t_in, np.float32(0))
    return chord


def _car_boxes(car: Car) -> tuple[tuple[str, F64, F64], ...]:
    """The car's lower body and cabin as (kind, lo, hi) boxes in its local frame."""
    hl, hw, h = car.length_m / 2, car.width_m / 2, car.height_m
    return (
        ("lower", np.array([-hl, -hw, 0.0]), np.array([hl, hw, _LOWER_H * h])),
        (
            "cabin",
            np.array([_CABIN_REAR * car.length_m, -_CABIN_HALF_W * car.width_m, _LOWER_H * h]),
            np.array([_CABIN_FRONT * car.length_m, _CABIN_HALF_W * car.width_m, h]),
        ),
    )


def _box_corners(lo: F64, hi: F64) -> F64:
    """The 8 corners of an axis-aligned box."""
    return np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )


def _sun_direction(sun: Sunlight | None) -> F64:
    """Unit vector toward the sun (world axes); straight up when there is no sun."""
    if sun is None:
        return np.array([0.0, 0.0, 1.0])
    el, az = math.radians(sun.elevation_deg), math.radians(sun.azimuth_deg)
    return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])


def _poly_shift(p: F64, x0: F64, y0: F64) -> F64:
    """Coefficients (1, x, y, x^2, y^2, xy) of p(x0 + dx, y0 + dy) as a polynomial in dx, dy."""
    q = p.copy()
    q[:, 0] = (p[:, 0] + p[:, 1] * x0 + p[:, 2] * y0 + p[:, 3] * x0 * x0 + p[:, 4] * y0 * y0) + p[
        :, 5
    ] * x0 * y0
    q[:, 1] = p[:, 1] + 2 * p[:, 3] * x0 + p[:, 5] * y0
    q[:, 2] = p[:, 2] + 2 * p[:, 4] * y0 + p[:, 5] * x0
    return q


def _poly_eval(q: F64, dx: F32, dy: F32, dxy: F32) -> F32:
    """Evaluate per-ellipsoid quadratics (E, 6) on (E, R, C) grids, in float32."""
    k = q.astype(np.float32)[:, :, None, None]
    row = k[:, 0] + dy * (k[:, 2] + k[:, 4] * dy)
    col = dx * (k[:, 1] + k[:, 3] * dx)
    out: F32 = row + col
    if np.any(k[:, 5]):
        out += k[:, 5] * dxy
    return out
