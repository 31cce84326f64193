"""The receiver's database engine: SQLite (one receiver) or PostgreSQL (several), one interface.

Every module that keeps tables (the store, the workflow, users, audit, reports) writes its SQL
once, in the subset both engines run: ``?`` placeholders, ``ON CONFLICT``, ``RETURNING``, and
``CREATE TABLE IF NOT EXISTS`` scripts with SQLite's type names, which :mod:`.postgres` maps to
PostgreSQL's. What differs (the greatest of several values, the catalogue) is asked of the engine.

A transaction is a function of a connection, run by :meth:`Database.write`: SQLite runs it under
one ``BEGIN IMMEDIATE`` (writers queue); PostgreSQL runs it ``SERIALIZABLE`` and runs it again
when another receiver's transaction conflicted with it, so the functions must do nothing but
database work.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from firmware.errors import StorageError
from firmware.storage import in_transaction, open_sqlite

logger = logging.getLogger(__name__)

T = TypeVar("T")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Cursor(Protocol):
    """What a statement gives back."""

    @property
    def rowcount(self) -> int:
        """Rows changed by an INSERT, UPDATE or DELETE."""
        ...

    def fetchone(self) -> Any:
        """The next row (by index or column name), or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...


class Connection(Protocol):
    """A connection inside a transaction: statements with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""
        ...


class IntegrityError(StorageError):
    """A statement broke a constraint (a duplicate key, say); its transaction is rolled back."""


class Database(ABC):
    """One receiver database, thread-safe."""

    kind: str  # "sqlite" or "postgresql"
    where: str  # the file, or the URL without its password
    label: str  # "receiver database <where>", for messages
    shared: bool  # whether several receivers may use it at once

    @abstractmethod
    def migrate(self, schema: str) -> None:
        """Apply a module's ``CREATE TABLE IF NOT EXISTS`` script."""

    @abstractmethod
    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one transaction; roll back on any error (StorageError for the engine's)."""

    @abstractmethod
    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` for reading (one consistent snapshot)."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection."""

    @abstractmethod
    def greatest(self, *exprs: str) -> str:
        """SQL for the greatest of several non-null values."""

    @abstractmethod
    def references(self, table: str) -> list[tuple[str, str]]:
        """(table, column) of every foreign key that references ``table``."""


class _SqliteConnection:
    """sqlite3's connection, with its constraint errors turned into :class:`IntegrityError`."""

    def __init__(self, db: sqlite3.Connection, label: str) -> None:
        self._db, self._label = db, label

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(f"{self._label}: {exc}") from exc


class SqliteDatabase(Database):
    """SQLite in WAL mode: one connection behind a lock, for a single receiver."""

    kind = "sqlite"
    shared = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.label = f"receiver database {path}"
        self._db = open_sqlite(path, "", "receiver database")
        self._db.row_factory = sqlite3.Row
        self._conn = _SqliteConnection(self._db, self.label)
        self._lock = threading.Lock()

    def migrate(self, schema: str) -> None:
        with self._lock:
            try:
                self._db.executescript(schema)
            except sqlite3.Error as exc:
                raise StorageError(f"{self.label}: {exc}") from exc

    def write(self, fn: Callable[[Connection], T]) -> T:
        with self._lock:
            return in_transaction(self._db, lambda: fn(self._conn), self.label)

    def read(self, fn: Callable[[Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise StorageError(f"{self.label}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def greatest(self, *exprs: str) -> str:
        return f"MAX({', '.join(exprs)})"  # SQLite's MAX of several arguments is scalar

    def references(self, table: str) -> list[tuple[str, str]]:
        def query(c: Connection) -> list[tuple[str, str]]:
            found = []
            names = c.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            for (name,) in names:
                for fk in c.execute(f'PRAGMA foreign_key_list("{name}")').fetchall():
                    if fk["table"] == table:
                        found.append((str(name), str(fk["from"])))
            return found

        return self.read(query)


def is_postgres(location: str | Path) -> bool:
    """Whether a ``--db`` value names a PostgreSQL database rather than an SQLite file."""
    return str(location).startswith(POSTGRES_SCHEMES)


def database_arg(value: str) -> Path | str:
    """A ``--db`` value as the receiver takes it: a URL stays a string, anything else a path.

    The environment variable ``POLEWATCH_DB`` is the default, so that a URL is not in argv
    (a password is better in ``~/.pgpass`` or ``PGPASSWORD``, which libpq reads itself).
    """
    return value if is_postgres(value) else Path(value)


def default_database() -> Path | str:
    """``$POLEWATCH_DB``, or ``var/receiver.sqlite``."""
    return database_arg(os.environ.get("POLEWATCH_DB") or "var/receiver.sqlite")


def open_database(location: str | Path) -> Database:
    """The database at ``location``: a ``postgresql://`` URL, or an SQLite file's path."""
    if is_postgres(location):
        from host_tools.receiver.postgres import PostgresDatabase

        return PostgresDatabase(str(location))
    return SqliteDatabase(Path(location))
