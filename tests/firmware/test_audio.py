"""The aplay audio backend: clip validation, the command line, and playback where aplay exists."""

from __future__ import annotations

import os
import shutil
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.clock import SystemClock
from firmware.config.board import AudioAplay
from firmware.errors import ConfigError, HardwareError
from firmware.hal import registry
from firmware.hal.audio import AplayPlayer, aplay_command, clip_seconds
from firmware.hal.registry import HalContext


def test_a_generated_clip_is_valid_and_its_length_known(make_wav: Callable[..., Path]) -> None:
    assert clip_seconds(make_wav(seconds=0.5)) == 0.5
    assert clip_seconds(make_wav("u8.wav", seconds=0.25, width=1)) == 0.25


def test_bad_clips_are_rejected_with_the_reason(
    make_wav: Callable[..., Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no such clip"):
        clip_seconds(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(ConfigError, match=r"notes\.wav is not a PCM WAV file"):
        clip_seconds(text)
    with pytest.raises(ConfigError, match="sample rate 12345 Hz"):
        clip_seconds(make_wav("odd.wav", rate=12345))
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
    with pytest.raises(ConfigError, match="the clip is empty"):
        clip_seconds(empty)


def test_the_command_line_names_device_and_clip() -> None:
    assert aplay_command("/usr/bin/aplay", "plughw:CARD=Headphones", "-odd name.wav") == [
        "/usr/bin/aplay",
        "-q",
        "-D",
        "plughw:CARD=Headphones",
        "--",  # a clip whose name starts with "-" is not an option
        "-odd name.wav",
    ]


def test_without_aplay_the_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(HardwareError, match="apt install alsa-utils"):
        registry.create(
            "audio", "audio", AudioAplay(backend="aplay"), HalContext(clock=SystemClock())
        )


@pytest.mark.skipif(shutil.which("aplay") is None, reason="aplay is not installed (alsa-utils)")
def test_playback_on_the_null_device_and_stop_ends_it(
    make_wav: Callable[..., Path], tmp_path: Path
) -> None:
    player = registry.create(
        "audio",
        "audio",
        AudioAplay(backend="aplay", device="null"),
        HalContext(clock=SystemClock()),
    )
    assert isinstance(player, AplayPlayer)
    clip = make_wav(seconds=0.5)
    player.play(str(clip))  # ALSA's null device takes the whole clip at once
    assert wait_until(lambda: not player.playing, 5.0)
    # A clip that never ends: aplay reads it from a pipe we keep open, so only stop() ends it.
    fifo = tmp_path / "endless.wav"
    os.mkfifo(fifo)
    writer = threading.Thread(target=feed_forever, args=(fifo, clip), daemon=True)
    writer.start()
    player.play(str(fifo))
    assert wait_until(lambda: player.playing, 2.0)
    player.stop()
    assert not player.playing
    player.close()


def feed_forever(fifo: Path, clip: Path) -> None:
    header = clip.read_bytes()[:44]
    try:
        with fifo.open("wb") as pipe:
            pipe.write(header)
            pipe.flush()
            while True:  # until aplay is gone and the pipe breaks
                time.sleep(0.2)
                pipe.write(b"\x00" * 800)
                pipe.flush()
    except BrokenPipeError:
        return


def wait_until(predicate: Callable[[], bool], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


@pytest.mark.skipif(shutil.which("aplay") is None, reason="aplay is not installed (alsa-utils)")
def test_a_device_that_does_not_exist_is_a_hardware_error(make_wav: Callable[..., Path]) -> None:
    player = registry.create(
        "audio",
        "audio",
        AudioAplay(backend="aplay", device="hw:CARD=NoSuchCard"),
        HalContext(clock=SystemClock()),
    )
    with pytest.raises(HardwareError, match="aplay on 'hw:CARD=NoSuchCard' failed"):
        player.play(str(make_wav()))
