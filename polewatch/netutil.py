"""Small network helpers for simulations and tests on loopback."""

from __future__ import annotations

import logging
import random
import socket
from pathlib import Path

logger = logging.getLogger(__name__)

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # below: well-known and registered services


def _ephemeral_low() -> int:
    """The first port the kernel hands to client sockets (32768 where it does not say)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port that is free right now on ``host`` (UDP by default).

    Picked below the kernel's ephemeral range: a port the kernel chose would be one it also
    hands to client sockets, and a client opened before the caller binds could take it (a test
    then failed with "address already in use").
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(_LOWEST, low) if low > _LOWEST else 0
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port found on {host} below {low}")
