"""Opening the project's SQLite databases the one way they must be opened."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from firmware.errors import StorageError

logger = logging.getLogger(__name__)


def open_sqlite(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (creating) a database in WAL mode with full sync and apply its schema.

    ``synchronous=FULL`` because an acknowledged or committed alarm must survive power loss.
    The connection is in autocommit mode: callers open their transactions explicitly.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"{what} {path}: {exc}") from exc
    return db
