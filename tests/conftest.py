"""Shared fixtures."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import poll_until

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals from socat: a serial cable (RS-485 line, console cable)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt install socat): no pty pair")
    proc = subprocess.Popen(
        ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    ptys: list[str] = []
    try:
        assert proc.stderr is not None
        while len(ptys) < 2:
            line = proc.stderr.readline()
            if not line:
                pytest.fail("socat exited before making a pty pair")
            found = re.search(r"PTY is (\S+)", line)
            if found:
                ptys.append(found.group(1))
        yield ptys[0], ptys[1]
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def until() -> Callable[..., Awaitable[None]]:
    """The polling wait, as a fixture (test modules cannot import each other)."""
    return poll_until
