"""A throwaway PostgreSQL server for the tests and ``make bench-fleet``: Debian's own binaries
(``initdb``, ``pg_ctl``), a data directory in a temporary folder, loopback only, trust auth.

initdb refuses to run as root, so as root the server runs as the ``postgres`` user that Debian's
package creates. Nothing of the machine's own PostgreSQL clusters is touched.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from firmware.errors import PolewatchError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60
SERVICE_USER = "postgres"


class PostgresUnavailable(PolewatchError):
    """No PostgreSQL server binaries here (the Debian package ``postgresql`` is not installed)."""


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``."""
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found:
            return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if versions:
        return Path(versions[0]).parent
    raise PostgresUnavailable(
        "no initdb/pg_ctl found: install PostgreSQL (Debian: apt-get install postgresql)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ScratchPostgres:
    """Start with ``with ScratchPostgres() as pg:``; ``pg.create_database(name)`` gives a URL."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        self.port = _free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="polewatch-pg-"))
        self.data = self._tmp / "data"
        self.log = self._tmp / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root and no runuser to drop to postgres")
            self._as_user = ["runuser", "-u", SERVICE_USER, "--"]
            shutil.chown(self._tmp, SERVICE_USER)
        self.started = False

    def _run(self, *args: str) -> None:
        cmd = [*self._as_user, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-600:]}"
            )

    def start(self) -> ScratchPostgres:
        """initdb and start the server on a free loopback port."""
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{self._tmp}'"
            " -c fsync=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip
        self.started = True
        logger.info("scratch PostgreSQL on 127.0.0.1:%d (%s)", self.port, self.data)
        return self

    def url(self, dbname: str = "postgres") -> str:
        """A URL for one of its databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete its files."""
        if self.started:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
            except PostgresUnavailable as exc:
                logger.warning("scratch PostgreSQL: %s", exc)
            self.started = False
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ScratchPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
