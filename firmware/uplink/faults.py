"""Fault and restore reporting: each fault is sent once when it starts and once when it ends."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from firmware.clock import Clock
from firmware.uplink import protocol
from firmware.uplink.commands import Commit

logger = logging.getLogger(__name__)

FAULT_PRIORITY = 3
DISK_LOW_BYTES = 64 * 1024 * 1024  # below this the outbox may soon be unable to commit alarms


class Faults:
    """The unit's open faults, keyed by (code, subject); thread-safe."""

    def __init__(self, clock: Clock, commit: Commit, next_fault_id: Callable[[], int]) -> None:
        self.clock, self.commit, self.next_fault_id = clock, commit, next_fault_id
        self.open: dict[tuple[protocol.FaultCode, str], int] = {}
        self._lock = threading.Lock()

    def raise_(self, code: protocol.FaultCode, subject: str, detail: str) -> None:
        """Report a fault, unless it is already open."""
        with self._lock:
            if (code, subject) in self.open:
                return
            fault_id = self.next_fault_id()
            self.open[(code, subject)] = fault_id
        logger.error("fault %d: %s %s: %s", fault_id, code.name.lower(), subject, detail)
        now_s = round(self.clock.now())
        self.commit(
            lambda msg_id: protocol.Fault(
                msg_id=msg_id,
                time_s=now_s,
                fault_id=fault_id,
                code=code,
                subject=subject[:32] or None,
                detail=detail[:120] or None,
            ),
            FAULT_PRIORITY,
            f"fault {fault_id}",
        )

    def clear(self, code: protocol.FaultCode, subject: str) -> None:
        """Report that a fault is over, if it was open."""
        with self._lock:
            fault_id = self.open.pop((code, subject), None)
        if fault_id is None:
            return
        logger.info("fault %d over: %s %s", fault_id, code.name.lower(), subject)
        now_s = round(self.clock.now())
        self.commit(
            lambda msg_id: protocol.Restore(
                msg_id=msg_id,
                time_s=now_s,
                fault_id=fault_id,
                code=code,
                subject=subject[:32] or None,
            ),
            FAULT_PRIORITY,
            f"fault {fault_id}",
        )

    def check_disk(self, path: Path, low_bytes: int = DISK_LOW_BYTES) -> None:
        """Raise or clear the low-disk fault for the filesystem holding ``path``."""
        free = shutil.disk_usage(path).free
        if free < low_bytes:
            self.raise_(
                protocol.FaultCode.DISK_LOW,
                "outbox",
                f"{free // 1_000_000} MB free, below {low_bytes // 1_000_000} MB",
            )
        else:
            self.clear(protocol.FaultCode.DISK_LOW, "outbox")
