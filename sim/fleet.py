"""Uplink-only simulated units: the unit's real uplink (outbox, OSCORE, sender, heartbeats,
commands) without cameras, for link tests and fleet runs with many units.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from firmware.clock import Clock
from firmware.config.site import ReceiverEndpoint, UplinkConfig
from firmware.uplink import protocol
from firmware.uplink.heartbeat import UnitStatus
from firmware.uplink.stack import Uplink
from host_tools.provision.oscore import provision_oscore

logger = logging.getLogger(__name__)


class LightUnit:
    """An uplink-only unit: raises scripted alarms, and carries out commands by recording them."""

    def __init__(
        self,
        unit_id: str,
        data_dir: Path,
        receiver: ReceiverEndpoint,
        clock: Clock,
        config: UplinkConfig | None = None,
        receiver_keys: Path | None = None,
    ) -> None:
        security = data_dir / "oscore"
        if receiver_keys is not None and not security.exists():
            provision_oscore(unit_id, security, receiver_keys)
        self.unit_id, self.clock = unit_id, clock
        self.executed: list[tuple[protocol.CommandOp, str | None]] = []
        self.executed_at: list[float] = []  # clock time of each
        self.raised: list[tuple[int, int]] = []  # (alarm id, msg id) of each alarm raised
        self.uplink = Uplink(
            receiver,
            config or UplinkConfig(),
            data_dir,
            clock,
            self._execute,
            lambda: UnitStatus(mode=protocol.MODE_ARMED, faults=len(self.uplink.faults.open)),
        )
        self._tasks: list[asyncio.Task[None]] = []

    def raise_alarm(
        self,
        zone: str = "lot",
        priority: int = 1,
        event: protocol.EventKind = protocol.EventKind.FIRE,
    ) -> str:
        """Open an alarm now (committed to the outbox when this returns); return its reference."""
        alarm_id = self.uplink.outbox.next_alarm_id()
        ref = f"{self.unit_id}/{alarm_id}"
        now_s = round(self.clock.now())
        msg_id = self.uplink.commit(
            lambda msg_id: protocol.Alarm(
                msg_id=msg_id,
                time_s=now_s,
                alarm_id=alarm_id,
                event=event,
                priority=priority,
                zone=zone,
            ),
            priority,
            ref,
        )
        self.raised.append((alarm_id, msg_id))
        return ref

    def _execute(
        self, op: protocol.CommandOp, arg: str | None
    ) -> tuple[protocol.CommandStatus, str | None]:
        self.executed.append((op, arg))
        self.executed_at.append(self.clock.now())
        return protocol.CommandStatus.DONE, None

    def start(self) -> None:
        """Start delivering and sending heartbeats."""
        self._tasks = [asyncio.create_task(loop) for loop in self.uplink.loops()]
        for task in self._tasks:
            task.add_done_callback(self._died)

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("unit %s: uplink loop stopped: %r", self.unit_id, task.exception())

    async def stop(self) -> None:
        """Stop and release everything (what is not delivered stays in the outbox)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.uplink.close()
