"""Creating a unit's OSCORE context pair: one copy for the unit, one for the receiver.

The unit's sender id is its key id (kid), which travels in every request; it is kept short
(two bytes: 65,535 units per receiver) because LTE bytes cost money. The receiver's sender id is
empty. Master secret and salt are random and written owner-only; they are never printed.

The receiver allocates key ids, so registration happens where its key directory is: either
locally (:func:`provision_oscore`, the technician has the directory) or in the receiver process
behind its registration API (:func:`register_unit`, which hands back the unit's side once). A
unit's receiver-side directory appears complete, by a rename, so that a running receiver that
rescans its units never sees half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from firmware.errors import PolewatchError
from firmware.uplink.security import write_context

logger = logging.getLogger(__name__)

KID_BYTES = 2
STAGING = ".provision"  # beside units/, so a half-written unit is never under units/


class ProvisionError(PolewatchError, RuntimeError):
    """A unit could not be provisioned (no key id left, a bad answer from the receiver)."""


@dataclass(frozen=True)
class UnitSecret:
    """The unit's side of a new context: its key id, and the shared master secret and salt."""

    unit_id: str
    kid: bytes
    secret: bytes = field(repr=False)
    salt: bytes = field(repr=False)


def receiver_units_dir(receiver_dir: Path) -> Path:
    """Where a receiver keeps its units' contexts."""
    return receiver_dir / "units"


def _next_kid(units_dir: Path) -> bytes:
    used = set()
    for meta in units_dir.glob("*/unit.json"):
        used.add(bytes.fromhex(json.loads(meta.read_text())["kid_hex"]))
    for n in range(1, 2 ** (8 * KID_BYTES)):
        kid = n.to_bytes(KID_BYTES, "big")
        if kid not in used:
            return kid
    raise ProvisionError(f"{units_dir}: no free key id left on this receiver")


@contextlib.contextmanager
def _locked(receiver_dir: Path) -> Iterator[Path]:
    """Serialise registrations (key id allocation) on one receiver directory."""
    staging = receiver_dir / STAGING
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (staging / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield staging
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def register_unit(unit_id: str, receiver_dir: Path) -> UnitSecret:
    """Create the receiver's side for ``unit_id``; return the unit's side (refuses a known id)."""
    units = receiver_units_dir(receiver_dir)
    units.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(receiver_dir) as staging:
        unit_home = units / unit_id
        if unit_home.exists():
            raise FileExistsError(f"{unit_home}: unit {unit_id!r} is already provisioned here")
        kid = _next_kid(units)
        secret, salt = secrets.token_bytes(32), secrets.token_bytes(8)
        stage = Path(tempfile.mkdtemp(prefix=f"{unit_id}.", dir=staging))  # owner-only
        try:
            write_context(
                stage / "oscore", sender_id=b"", recipient_id=kid, secret=secret, salt=salt
            )
            (stage / "unit.json").write_text(json.dumps({"unit_id": unit_id, "kid_hex": kid.hex()}))
            os.rename(stage, unit_home)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    logger.info("registered unit %s with key id %s in %s", unit_id, kid.hex(), units)
    return UnitSecret(unit_id, kid, secret, salt)


def write_unit_context(unit: UnitSecret, unit_context_dir: Path) -> None:
    """Write the unit's side of its context (owner-only; refuses an existing directory)."""
    write_context(
        unit_context_dir, sender_id=unit.kid, recipient_id=b"", secret=unit.secret, salt=unit.salt
    )


def provision_oscore(unit_id: str, unit_context_dir: Path, receiver_dir: Path) -> bytes:
    """Create the pair for ``unit_id``; return its key id. Refuses to overwrite an existing one."""
    if unit_context_dir.exists():
        raise FileExistsError(f"{unit_context_dir}: a unit context is already there")
    unit = register_unit(unit_id, receiver_dir)
    write_unit_context(unit, unit_context_dir)
    logger.info("provisioned unit %s with key id %s", unit_id, unit.kid.hex())
    return unit.kid
