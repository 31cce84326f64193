"""free_port: a loopback port that the kernel does not hand to client sockets."""

from __future__ import annotations

import socket

from polewatch.netutil import _ephemeral_low, free_port


def test_a_free_port_is_below_the_ephemeral_range_and_binds() -> None:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        port = free_port(kind)
        assert 0 < port < _ephemeral_low()
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))
