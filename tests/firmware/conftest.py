"""Fixtures for the firmware tests."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import pytest

WavMaker = Callable[..., Path]


@pytest.fixture
def make_wav(tmp_path: Path) -> WavMaker:
    """Write a small PCM WAV clip (a quiet tone) and return its path."""

    def make(
        name: str = "clip.wav", seconds: float = 1.0, rate: int = 8000, width: int = 2
    ) -> Path:
        path = tmp_path / name
        frames = int(seconds * rate)
        sample = (0).to_bytes(width, "little", signed=width > 1)
        loud = (3).to_bytes(width, "little", signed=width > 1)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(width)
            wav.setframerate(rate)
            wav.writeframes(b"".join(loud if i % 8 < 4 else sample for i in range(frames)))
        return path

    return make
