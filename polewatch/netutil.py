"""Small network helpers for simulations and tests on loopback."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port that is free right now on ``host`` (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
