"""The receiver's units: their OSCORE contexts, found by key id, with verification counted."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from aiocoap import oscore
from aiocoap.credentials import CredentialsMap

from firmware.uplink.security import close_context, load_context
from host_tools.provision.oscore import receiver_units_dir
from host_tools.receiver import rejects as R
from host_tools.receiver.rejects import Rejects

logger = logging.getLogger(__name__)

CLAIM_PREFIX = "unit:"
# Several receivers hold copies of the same contexts. A receiver answers with its own sequence
# number (a fresh nonce) when it cannot reuse the request's, as in Echo recovery; each instance
# numbers from its own range, so two never encrypt under the same nonce. OSCORE's partial IV has
# 40 bits: 256 instances of 2**32 numbers each.
INSTANCE_RANGE = 2**32
MAX_INSTANCES = 256


def reserve_sequence_range(context_dir: Path, instance: int) -> None:
    """Move a context's next sender sequence number into ``instance``'s range (if below it).

    Instance 0 (a single receiver) keeps aiocoap's numbering as it is.
    """
    if not 0 <= instance < MAX_INSTANCES:
        raise ValueError(f"receiver instance {instance}: must be 0..{MAX_INSTANCES - 1}")
    if instance == 0:
        return
    path = context_dir / "sequence.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        state = {"next-to-send": 0, "received": "unknown"}
    start, end = instance * INSTANCE_RANGE, (instance + 1) * INSTANCE_RANGE
    if not start <= int(state["next-to-send"]) < end:
        # The replay window may be another instance's: "unknown" makes aiocoap rebuild it
        # (Echo recovery), which never accepts a replay.
        state = {"next-to-send": start, "received": "unknown"}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)


class _CountingContext:
    """Wraps a unit's context so that failed verifications are counted and logged."""

    def __init__(self, inner: Any, unit_id: str, rejects: Rejects) -> None:
        self._inner, self._unit_id, self._rejects = inner, unit_id, rejects

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def unprotect(self, request: Any) -> Any:
        """Verify and decrypt; count what fails, and let aiocoap answer as it does."""
        try:
            return self._inner.unprotect(request)
        except oscore.ReplayError as exc:
            self._rejects.reject(R.REPLAYED, request.remote, f"unit {self._unit_id}: {exc}")
            raise
        except (oscore.ProtectionInvalid, oscore.DecodeError) as exc:
            self._rejects.reject(R.FORGED, request.remote, f"unit {self._unit_id}: {exc}")
            raise


class UnitKeys(CredentialsMap):  # type: ignore[misc]
    """Server credentials: one OSCORE context per provisioned unit, looked up by key id.

    aiocoap's own lookup tries every context in turn; a dict by key id keeps ingest O(1) with
    thousands of units.
    """

    def __init__(self, receiver_dir: Path, rejects: Rejects, instance: int = 0) -> None:
        super().__init__()
        self.rejects = rejects
        self.instance = instance
        self.units_dir = receiver_units_dir(receiver_dir)
        self.by_kid: dict[bytes, tuple[str, Any]] = {}
        self._scanned_mtime: float | None = None
        self.scan()
        logger.info("%d unit(s) known in %s", len(self.by_kid), self.units_dir)

    def scan(self) -> None:
        """Load the contexts of units provisioned since the last scan."""
        self._scanned_mtime = self._mtime()
        known = {unit for unit, _ in self.by_kid.values()}
        for meta in sorted(self.units_dir.glob("*/unit.json")):
            info = json.loads(meta.read_text())
            if info["unit_id"] not in known:
                self.add(info["unit_id"], bytes.fromhex(info["kid_hex"]), meta.parent / "oscore")

    def add(self, unit_id: str, kid: bytes, context_dir: Path) -> None:
        """Load one unit's context (in this receiver instance's sequence number range)."""
        reserve_sequence_range(context_dir, self.instance)
        ctx = load_context(context_dir)
        logger.info("unit %s: OSCORE context loaded (key id %s)", unit_id, kid.hex())
        ctx.authenticated_claims = [CLAIM_PREFIX + unit_id]
        self.by_kid[kid] = (unit_id, _CountingContext(ctx, unit_id, self.rejects))
        self[f":{unit_id}"] = ctx

    def find_oscore(self, unprotected: dict[Any, Any]) -> Any:
        """The context for a request's key id; unknown ids are counted and refused."""
        kid = unprotected.get(oscore.COSE_KID)
        found = self.by_kid.get(kid) if isinstance(kid, bytes) else None
        if found is None and self._mtime() != self._scanned_mtime:
            self.scan()  # a unit was provisioned while we run (one stat per unknown key id)
            found = self.by_kid.get(kid) if isinstance(kid, bytes) else None
        if found is None or unprotected.get(oscore.COSE_KID_CONTEXT) is not None:
            self.rejects.reject(R.UNKNOWN_UNIT, "-", f"key id {kid!r} is not provisioned here")
            raise KeyError(kid)
        return found[1]

    def _mtime(self) -> float | None:
        try:
            return self.units_dir.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return None


def close_all(keys: UnitKeys) -> None:
    """Persist every unit context's state and release its lock (on receiver shutdown)."""
    for _unit, ctx in keys.by_kid.values():
        close_context(ctx._inner)
    keys.by_kid.clear()
    keys.clear()


def unit_of(claims: list[str]) -> str | None:
    """The unit an OSCORE-verified request came from, from its authenticated claims."""
    for claim in claims:
        if isinstance(claim, str) and claim.startswith(CLAIM_PREFIX):
            return claim[len(CLAIM_PREFIX) :]
    return None
