"""Voice clips played with ALSA's ``aplay`` (Debian ``alsa-utils``), one at a time.

Clips are checked when the site config loads (:func:`clip_seconds`): a PCM WAV file that ``aplay``
plays without conversion, so that nothing is found wrong the night a clip is needed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import wave
from pathlib import Path
from typing import Any

from firmware.errors import ConfigError, HardwareError
from firmware.hal.base import AudioPlayer
from firmware.hal.registry import HalContext, register

logger = logging.getLogger(__name__)

START_CHECK_S = 0.05  # aplay fails on a bad device at once; wait this long to report it
STOP_WAIT_S = 1.0
SAMPLE_WIDTHS = (1, 2, 3, 4)  # bytes: U8, S16_LE, S24_3LE, S32_LE
RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)
MAX_CHANNELS = 2


def clip_seconds(path: Path) -> float:
    """Check that ``path`` is a WAV clip aplay can play and return its length in seconds."""
    if not path.is_file():
        raise ConfigError(f"no such clip {str(path)!r}")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width = wav.getnchannels(), wav.getsampwidth()
            rate, frames = wav.getframerate(), wav.getnframes()
            compression = wav.getcomptype()
    except (wave.Error, EOFError) as exc:
        # The wave module reads integer PCM only, which is what the unit's speakers get.
        raise ConfigError(f"{path.name} is not a PCM WAV file: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    if compression != "NONE":
        raise ConfigError(f"{path.name}: compressed WAV ({compression}) is not supported")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ConfigError(f"{path.name}: {channels} channels; mono or stereo only")
    if width not in SAMPLE_WIDTHS:
        raise ConfigError(f"{path.name}: {8 * width}-bit samples are not supported")
    if rate not in RATES:
        raise ConfigError(
            f"{path.name}: sample rate {rate} Hz; use one of {', '.join(map(str, RATES))}"
        )
    if frames == 0:
        raise ConfigError(f"{path.name}: the clip is empty")
    return frames / rate


def aplay_command(executable: str, device: str, clip: str) -> list[str]:
    """The command line that plays ``clip`` on ALSA ``device``."""
    return [executable, "-q", "-D", device, "--", clip]


@register("audio", "aplay")
class AplayPlayer(AudioPlayer):
    """Plays clips with ``aplay -D DEVICE``; stopping terminates the process."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        executable = shutil.which("aplay")
        if executable is None:
            raise HardwareError("the aplay audio backend needs aplay (apt install alsa-utils)")
        self.executable = executable
        self.device: str = config.device
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def command(self, clip: str) -> list[str]:
        """The command line for one clip."""
        return aplay_command(self.executable, self.device, clip)

    def play(self, clip: str) -> None:
        """Start ``clip`` (stopping whatever plays); raise HardwareError if aplay cannot."""
        with self._lock:
            self._stop_locked()
            try:
                proc = subprocess.Popen(
                    self.command(clip),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            except OSError as exc:
                raise HardwareError(f"aplay could not start: {exc}") from exc
            try:
                code = proc.wait(timeout=START_CHECK_S)
            except subprocess.TimeoutExpired:
                self._proc = proc  # playing
                logger.debug("aplay %d playing %s on %s", proc.pid, clip, self.device)
                return
            err = ""
            if proc.stderr is not None:
                err = proc.stderr.read().decode(errors="replace").strip()
                proc.stderr.close()
            if code != 0:
                raise HardwareError(f"aplay on {self.device!r} failed ({code}): {err[:200]}")

    @property
    def playing(self) -> bool:
        """Whether a clip is playing now."""
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the clip that plays, if any."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            logger.debug("aplay %d stopped", proc.pid)
        if proc.stderr is not None:
            proc.stderr.close()
