"""Logging set-up shared by every subcommand."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str, log_file: Path | None = None) -> None:
    """Log to stderr at ``level``, and everything at INFO to ``log_file`` if given."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.INFO)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(level.upper())
    err.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(err)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(fh)
    for noisy in ("aiocoap", "coap-server", "coap", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
