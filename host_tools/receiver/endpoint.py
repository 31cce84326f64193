"""A host and port to bind or reach (its own module: the unit's command line needs it without
loading the receiver)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """A host and port to bind or reach."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> Endpoint:
        """Parse ``host``, ``host:port`` or ``[v6]:port``."""
        host, sep, port = text.rpartition(":")
        if not sep or host.endswith(":"):
            return cls(text.strip("[]"), default_port)
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bad port in {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
