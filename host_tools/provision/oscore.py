"""Creating a unit's OSCORE context pair: one copy for the unit, one for the receiver.

The unit's sender id is its key id (kid), which travels in every request; it is kept short
(two bytes: 65,535 units per receiver) because LTE bytes cost money. The receiver's sender id is
empty. Master secret and salt are random and written owner-only; they are never printed.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

from firmware.uplink.security import write_context

logger = logging.getLogger(__name__)

KID_BYTES = 2


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
    raise RuntimeError("no free key id left on this receiver")


def provision_oscore(unit_id: str, unit_context_dir: Path, receiver_dir: Path) -> bytes:
    """Create the pair for ``unit_id``; return its key id. Refuses to overwrite an existing one."""
    units = receiver_units_dir(receiver_dir)
    unit_home = units / unit_id
    if unit_home.exists():
        raise FileExistsError(f"{unit_home}: unit {unit_id!r} is already provisioned here")
    units.mkdir(parents=True, exist_ok=True, mode=0o700)
    kid = _next_kid(units)
    secret, salt = secrets.token_bytes(32), secrets.token_bytes(8)
    write_context(unit_context_dir, sender_id=kid, recipient_id=b"", secret=secret, salt=salt)
    unit_home.mkdir(mode=0o700)
    write_context(unit_home / "oscore", sender_id=b"", recipient_id=kid, secret=secret, salt=salt)
    (unit_home / "unit.json").write_text(json.dumps({"unit_id": unit_id, "kid_hex": kid.hex()}))
    logger.info("provisioned unit %s with key id %s", unit_id, kid.hex())
    return kid
