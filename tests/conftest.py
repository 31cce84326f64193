"""Shared fixtures."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from polewatch.scratch_postgres import PostgresUnavailable, ScratchPostgres
from tests.helpers import poll_until

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


ENGINES = ("sqlite", "postgresql")
_DB_NUMBERS = itertools.count(1)  # database names unique within the run


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ScratchPostgres]:
    """One throwaway PostgreSQL server for the whole run (Debian's binaries, loopback)."""
    try:
        server = ScratchPostgres().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: ScratchPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the test server, for one test."""
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    return postgres_server.create_database(f"t{next(_DB_NUMBERS)}_{name}")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The receiver database engine a storage test runs on: each runs on both."""
    return str(request.param)


@pytest.fixture
def receiver_db(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where a test's receiver database is: an SQLite file, or a fresh PostgreSQL database."""
    if engine == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return tmp_path / "receiver.sqlite"


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals from socat: a serial cable (RS-485 line, console cable)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt install socat): no pty pair")
    proc = subprocess.Popen(
        ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    ptys: list[str] = []
    try:
        assert proc.stderr is not None
        while len(ptys) < 2:
            line = proc.stderr.readline()
            if not line:
                pytest.fail("socat exited before making a pty pair")
            found = re.search(r"PTY is (\S+)", line)
            if found:
                ptys.append(found.group(1))
        yield ptys[0], ptys[1]
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def until() -> Callable[..., Awaitable[None]]:
    """The polling wait, as a fixture (test modules cannot import each other)."""
    return poll_until
