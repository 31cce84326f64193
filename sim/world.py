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
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

_MASK64 = (1 << 64) - 1
# Stream tags keep the seeded random streams of the different parts of the world independent.
_TAG_GROUND = 0x47524E44
_TAG_CAR = 0x43415253
_TAG_FIRE = 0x46495245
_TAG_FIRE_FRAME = 0x46524D45

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


class CarFire(BaseModel):
    """A fire starting in a car's engine bay and growing to engulf the car."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    car: str = Field(min_length=1, description="name of a Car in the world")
    ignite_at_s: float = Field(ge=0.0, le=1.0e6, description="seconds after scenario start")
    full_after_s: float = Field(240.0, gt=0.0, le=36_000.0, description="ignition to full fire")
    peak_c: float = Field(800.0, gt=100.0, le=1500.0, description="fully developed flame temp")


class WorldSpec(BaseModel):
    """Everything that defines a parking-lot world (the scenario's ``[world]`` table)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ambient_c: float = Field(2.0, ge=-60.0, le=60.0, description="air/ground temperature")
    sky_c: float = Field(-30.0, ge=-100.0, le=60.0, description="apparent sky temperature")
    cars: list[Car] = Field(default_factory=list)
    fires: list[CarFire] = Field(default_factory=list)
    camera: CameraPose = Field(default_factory=CameraPose)

    @model_validator(mode="after")
    def _check_car_names(self) -> Self:
        """Reject duplicate car names and fires naming a car that does not exist."""
        names = [car.name for car in self.cars]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate car names: {', '.join(map(repr, duplicates))}")
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

        self._cars = [self._car_geom(i, car) for i, car in enumerate(self.spec.cars)]
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
        frames = [f for f in self._fire_frames(t) if f is not None]
        for frame in frames:
            img += frame.glow
        # Far fires first, so nearer flames are drawn over them.
        for frame in sorted(frames, key=lambda f: -f.distance_m):
            win = img[frame.v0 : frame.v1, frame.u0 : frame.u1]
            win += frame.alpha * (frame.temp - win)
        return img

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

    def _background(self, rays: F64) -> tuple[F64, F64]:
        """Sky and asphalt temperature and depth (inf for sky) along the given rays."""
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
        return np.where(ground, grd, sky), depth

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
        temp, depth = self._background(rays)
        rows, cols = rays.shape[:2]
        for geom in self._cars:
            car = geom.car
            hl, hw, h = car.length_m / 2, car.width_m / 2, car.height_m
            boxes = (
                ("lower", np.array([-hl, -hw, 0.0]), np.array([hl, hw, _LOWER_H * h])),
                (
                    "cabin",
                    np.array(
                        [_CABIN_REAR * car.length_m, -_CABIN_HALF_W * car.width_m, _LOWER_H * h]
                    ),
                    np.array([_CABIN_FRONT * car.length_m, _CABIN_HALF_W * car.width_m, h]),
                ),
            )
            o_local = (self._origin - geom.centre) @ geom.to_local
            for kind, lo, hi in boxes:
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
                part = self._car_part_c(geom, kind, axis, d_local, p_local)
                depth[v0:v1, u0:u1][closer] = t_near[closer]
                temp[v0:v1, u0:u1][closer] = part[closer]

        h_px, w_px = self.height, self.width
        pixel_c = temp.reshape(h_px, ss, w_px, ss).mean(axis=(1, 3)).astype(np.float32)
        mid = ss // 2
        centre_depth = np.ascontiguousarray(depth[mid::ss, mid::ss])
        centre_rays = rays[mid::ss, mid::ss]
        reach = np.where(np.isfinite(centre_depth), centre_depth, _SKY_DEPTH_M)
        hits = self._origin[None, None, :] + reach[..., None] * centre_rays
        return pixel_c, centre_depth, np.ascontiguousarray(np.moveaxis(hits, -1, 0), np.float32)

    def _car_part_c(
        self, geom: _CarGeom, kind: str, axis: npt.NDArray[np.intp], d_local: F64, p_local: F64
    ) -> F64:
        """Apparent temperature of the car surface where each ray enters one of its boxes."""
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
