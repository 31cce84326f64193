"""Small helpers the tests of several folders share (test modules cannot import each other)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def poll_until(predicate: Callable[[], object], limit_s: float = 30.0) -> None:
    """Wait (real time) until ``predicate()`` holds; fail after ``limit_s``."""
    for _ in range(int(limit_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")
