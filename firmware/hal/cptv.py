"""Replays a recorded CPTV thermal clip (Cacophony Project format) as a thermal camera.

Frames come at the clip's own frame rate when its header states one, else at the board config's
``fps``, paced by the clock as the simulated camera is. At the end the clip starts again when
``loop`` is set; otherwise reads fail with :class:`HardwareError` (the camera has "gone").
"""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from firmware.errors import ConfigError, HardwareError
from firmware.hal.base import History, ThermalCamera, ThermalFrame
from firmware.hal.registry import HalContext, register
from firmware.hal.sim import FRAME_HISTORY, _FramePacer

logger = logging.getLogger(__name__)

# What a damaged file makes the CPTV reader raise: gzip, its own checks, short reads.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, struct.error, zlib.error)
# Centi-kelvin of -120..+230 C: what radiometric frames hold; raw Lepton counts are far below.
_CENTI_KELVIN = (15_000, 50_000)


@register("thermal", "cptv")
class CptvThermalCamera(ThermalCamera):
    """A thermal camera that plays back a CPTV file, frame by frame."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        self.name = name
        self.path = Path(config.path)
        self.loop = bool(config.loop)
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._frames: Iterator[Any] = iter(())
        reader = self._open()
        first = self._next_pix()
        if first is None:
            self.close()
            raise HardwareError(f"{self.path}: the CPTV clip has no frames")
        self._pending: np.ndarray[Any, np.dtype[np.uint16]] | None = first
        self.height, self.width = int(reader.y_resolution), int(reader.x_resolution)
        if (self.width, self.height) != (config.width, config.height):
            self.close()
            raise ConfigError(
                f"thermal: the clip {self.path} is {self.width}x{self.height} but the board "
                f"config says width = {config.width}, height = {config.height}"
            )
        self.clip_fps = float(reader.fps or 0) or None
        self.fps = self.clip_fps or float(config.fps)
        if self.clip_fps is not None and self.clip_fps != config.fps:
            logger.info(
                "%s: the clip runs at %g fps (the board config says %g): replaying at %g",
                self.path,
                self.clip_fps,
                config.fps,
                self.fps,
            )
        self.radiometric = bool(config.radiometric)
        median = float(np.median(first))
        if self.radiometric and not _CENTI_KELVIN[0] <= median <= _CENTI_KELVIN[1]:
            self.close()
            raise ConfigError(
                f"thermal: the clip {self.path} holds raw counts (median {median:.0f}), not "
                "centi-kelvin: set radiometric = false"
            )
        self.sensor_model = reader.model.decode(errors="replace") if reader.model else None
        self.pacer = _FramePacer(ctx.clock, self.fps)
        self.index = 0
        self.loops = 0
        self.history = History(maxlen=FRAME_HISTORY)
        logger.info(
            "replaying %s: %dx%d at %g fps, %s, loop %s",
            self.path,
            self.width,
            self.height,
            self.fps,
            "radiometric" if self.radiometric else "raw counts",
            self.loop,
        )

    def _open(self) -> Any:
        """(Re)open the file and its reader at the first frame."""
        self._close_file()
        try:
            self._file = self.path.open("rb")
        except FileNotFoundError:
            raise HardwareError(f"{self.path}: no such CPTV file") from None
        except OSError as exc:
            raise HardwareError(f"{self.path}: cannot open the CPTV file: {exc.strerror}") from exc
        from cptv import CPTVReader  # imported here: only boards that replay clips need it

        try:
            reader = CPTVReader(self._file)
        except _READ_ERRORS as exc:
            self._close_file()
            raise HardwareError(f"{self.path}: not a readable CPTV file ({exc})") from exc
        self._frames = iter(reader)
        return reader

    def _next_pix(self) -> np.ndarray[Any, np.dtype[np.uint16]] | None:
        """The next recorded (non-background) frame's pixels, or None at the end of the clip."""
        try:
            for frame in self._frames:
                if not frame.background_frame:
                    return np.asarray(frame.pix, dtype=np.uint16)
        except _READ_ERRORS as exc:
            raise HardwareError(f"{self.path}: damaged CPTV frame ({exc})") from exc
        return None

    def read(self) -> ThermalFrame:
        """The clip's next frame, at its time."""
        t = self.pacer.next()
        with self._lock:
            if self._file is None:
                raise HardwareError(f"{self.path}: the CPTV replay is closed")
            pix, self._pending = self._pending, None
            if pix is None:
                pix = self._next_pix()
            if pix is None and self.loop:
                self._open()
                self.loops += 1
                self.history.record(t, "loop", self.loops)
                pix = self._next_pix()
            if pix is None:
                self.history.record(t, "fault", "end of clip")
                raise HardwareError(f"{self.path}: end of the CPTV clip (loop is off)")
            self.index += 1
            self.history.record(t, "frame", self.index)
            return ThermalFrame(self.index, t, pix, self.radiometric)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Close the file."""
        self._close_file()
