"""Backend registry: every device kind has backends registered by name, chosen by the board config.

As gpiozero chooses a pin factory by name, the unit opens ``registry.create("thermal", cfg, ctx)``
and gets whichever backend ``cfg.backend`` names. Backends register themselves on import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from firmware.clock import Clock
from firmware.errors import BackendNotFound

logger = logging.getLogger(__name__)

DeviceKind = Literal["thermal", "visible", "output", "audio", "modem"]


class SceneSource(Protocol):
    """What simulated cameras render: a scene temperature field over time."""

    def scene_c(self, t: float) -> npt.NDArray[np.float32]:
        """Scene temperature in degrees Celsius, ``t`` seconds after the simulation start."""
        ...


class SensorModel(Protocol):
    """Turns a scene into what a thermal sensor outputs."""

    def capture(self, scene_c: npt.NDArray[np.float32], t: float) -> npt.NDArray[np.uint16]:
        """Sensor output for the scene at time ``t``."""
        ...


@dataclass
class HalContext:
    """What backends may need beyond their own config."""

    clock: Clock
    # Simulation only: the world cameras see, how the sensor renders it, and when it started.
    scene: SceneSource | None = None
    sensor_factory: Callable[..., SensorModel] | None = None
    sim_start: float = 0.0
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


class SharedDevice(Protocol):
    """A device several backends of one unit use together (a serial link, a Modbus bus)."""

    users: int

    def close(self) -> None: ...


D = TypeVar("D", bound=SharedDevice)
_shared_lock = threading.Lock()


def acquire_shared(ctx: HalContext, key: str, open_device: Callable[[], D]) -> D:
    """The device kept under ``key`` in the unit's context, opened on first use.

    Each acquire is paired with one :func:`release_shared`; the last release closes it.
    """
    with _shared_lock:
        device: D | None = ctx.extras.get(key)
        if device is None:
            device = open_device()
            ctx.extras[key] = device
        device.users += 1
        return device


def release_shared(ctx: HalContext, key: str, device: SharedDevice) -> None:
    """Give back one use of a shared device; close it when nobody uses it any more."""
    with _shared_lock:
        device.users -= 1
        if device.users == 0:
            if ctx.extras.get(key) is device:
                del ctx.extras[key]
            device.close()


Factory = Callable[[str, Any, HalContext], Any]
_BACKENDS: dict[tuple[str, str], Factory] = {}


def register(kind: DeviceKind, name: str) -> Callable[[Factory], Factory]:
    """Class or function decorator: make ``factory(name, config, ctx)`` the ``name`` backend."""

    def deco(factory: Factory) -> Factory:
        _BACKENDS[(kind, name)] = factory
        return factory

    return deco


def available(kind: DeviceKind) -> list[str]:
    """Names of the backends registered for a kind."""
    _load_builtin()
    return sorted(name for k, name in _BACKENDS if k == kind)


def create(kind: DeviceKind, device_name: str, config: Any, ctx: HalContext) -> Any:
    """Open the backend that ``config.backend`` names for this kind of device."""
    _load_builtin()
    backend = str(config.backend)
    try:
        factory = _BACKENDS[(kind, backend)]
    except KeyError:
        raise BackendNotFound(
            f"{kind} backend {backend!r} (for {device_name!r}) is not available in this build; "
            f"available: {', '.join(available(kind)) or 'none'}"
        ) from None
    logger.info("opening %s %r with backend %r", kind, device_name, backend)
    return factory(device_name, config, ctx)


def _load_builtin() -> None:
    # Importing a backend module registers it. Imported lazily so that the registry's users do not
    # pay for (or need) a hardware library they do not use.
    from firmware.hal import audio, cptv, gpio, jetson, modbus, modem, sim, supervisor  # noqa: F401
