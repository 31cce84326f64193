"""Shared helpers of the simulation tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

Until = Callable[..., Awaitable[None]]


async def _until(predicate: Callable[[], object], limit_s: float = 30.0) -> None:
    """Wait (real time) until ``predicate()`` holds; fail after ``limit_s``."""
    for _ in range(int(limit_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


@pytest.fixture
def until() -> Until:
    """The polling wait, as a fixture (test modules cannot import each other)."""
    return _until
