"""Device interfaces that every backend implements, and the recorded history sim backends keep.

A backend must implement the abstract methods; it may override ``close``. Methods that block
(frame capture) are called from a worker thread, never from the event loop.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

KELVIN_OFFSET = 273.15


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded happening of a device: when, what, and a value."""

    t: float
    what: str
    value: Any = None


class History:
    """A thread-safe, timestamped record of what a device did.

    ``maxlen`` bounds it for devices that record continuously (a camera's frames over hours);
    the oldest entries then go first.
    """

    def __init__(self, maxlen: int | None = None) -> None:
        self.entries: deque[HistoryEntry] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def record(self, t: float, what: str, value: Any = None) -> None:
        """Append one entry."""
        with self._lock:
            self.entries.append(HistoryEntry(t, what, value))

    def snapshot(self) -> list[HistoryEntry]:
        """A copy of the entries so far."""
        with self._lock:
            return list(self.entries)


@dataclass(frozen=True)
class ThermalFrame:
    """One thermal frame: radiometric centi-kelvin, or raw counts when not radiometric."""

    index: int
    t: float
    data: npt.NDArray[np.uint16]
    radiometric: bool

    def celsius(self) -> npt.NDArray[np.float32]:
        """Temperatures in degrees Celsius (radiometric frames only)."""
        if not self.radiometric:
            raise ValueError("raw-count frames carry no absolute temperature")
        return self.data.astype(np.float32) / 100.0 - np.float32(KELVIN_OFFSET)


@dataclass(frozen=True)
class VisibleFrame:
    """One visible-light frame, RGB."""

    index: int
    t: float
    rgb: npt.NDArray[np.uint8]


class ThermalCamera(abc.ABC):
    """A thermal camera."""

    width: int
    height: int
    fps: float
    radiometric: bool

    @abc.abstractmethod
    def read(self) -> ThermalFrame:
        """Block until the next frame and return it."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        """Release the device."""


class VisibleCamera(abc.ABC):
    """A visible-light camera."""

    width: int
    height: int
    fps: float

    @abc.abstractmethod
    def read(self) -> VisibleFrame:
        """Block until the next frame and return it."""

    def close(self) -> None:  # noqa: B027
        """Release the device."""


class Output(abc.ABC):
    """A switched output: relay, light, strobe or siren. Starts off."""

    name: str
    kind: str

    @abc.abstractmethod
    def set(self, on: bool) -> None:
        """Switch the output; raise :class:`~firmware.errors.ActuatorFault` if it cannot."""

    @property
    @abc.abstractmethod
    def is_on(self) -> bool:
        """The output's state as the backend last set (or read back) it."""

    def close(self) -> None:  # noqa: B027
        """Release the output (it must be off by then)."""


class AudioPlayer(abc.ABC):
    """Plays pre-recorded voice clips."""

    @abc.abstractmethod
    def play(self, clip: str) -> None:
        """Start playing a clip (returns at once)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop whatever plays."""

    def close(self) -> None:
        """Stop and release."""
        self.stop()


@dataclass(frozen=True)
class ModemStatus:
    """What the modem says of the link."""

    registered: bool
    operator: str | None = None
    rssi_dbm: int | None = None
    sim: str = "READY"  # what AT+CPIN? says: READY, SIM PIN, NOT INSERTED, ...
    rsrp_dbm: int | None = None  # LTE reference signal received power
    rsrq_db: int | None = None  # LTE reference signal received quality
    technology: str | None = None  # LTE, WCDMA, GSM, ...
    registration: str | None = None  # home, roaming, searching, denied, idle, unknown


class Modem(abc.ABC):
    """The LTE modem's supervision side."""

    @abc.abstractmethod
    def status(self) -> ModemStatus:
        """Query registration and signal."""

    @abc.abstractmethod
    def reset(self, hard: bool) -> None:
        """Restart the modem: by command, or (``hard``) by its power key when it is hung."""

    def close(self) -> None:  # noqa: B027
        """Release the port."""
