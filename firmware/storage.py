"""Opening the project's SQLite databases the one way they must be opened."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from firmware.errors import StorageError

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def in_transaction(db: sqlite3.Connection, fn: Callable[[], T], what: str) -> T:
    """Run ``fn`` in one immediate transaction on ``db``; roll back on any error.

    The caller holds its connection's lock. SQLite errors become :class:`StorageError` naming
    ``what`` (the database and its path); anything else is re-raised as it is.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
        result = fn()
        db.execute("COMMIT")
        return result
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"{what}: {exc}") from exc
        raise
