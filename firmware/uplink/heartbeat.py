"""Heartbeats: the unit says it is alive, when the next heartbeat is due, and how it is.

Heartbeats are not queued: a lost one is simply followed by the next. The interval follows from
the site's reporting time (the silence after which the receiver calls the unit offline): a third
of it, so that two heartbeats in a row may be lost before the receiver raises anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from firmware.clock import Clock
from firmware.uplink import protocol
from firmware.uplink.client import UplinkError
from firmware.uplink.outbox import Outbox
from firmware.uplink.sender import Sender

logger = logging.getLogger(__name__)

MIN_INTERVAL_S = 10.0


@dataclass(frozen=True)
class UnitStatus:
    """What the rest of the unit tells a heartbeat."""

    rssi_dbm: int | None = None
    mode: int = protocol.MODE_ARMED
    faults: int = 0
    modem: protocol.ModemState = protocol.ModemState.REGISTERED
    modem_resets: int = 0


def heartbeat_interval(reporting_time_s: float) -> float:
    """Seconds between heartbeats for a reporting time."""
    return max(MIN_INTERVAL_S, reporting_time_s / 3)


class Heartbeats:
    """Sends a heartbeat every interval, through the sender's client (commands ride back)."""

    def __init__(
        self,
        outbox: Outbox,
        sender: Sender,
        clock: Clock,
        reporting_time_s: float,
        status: Callable[[], UnitStatus],
    ) -> None:
        self.outbox, self.sender, self.clock = outbox, sender, clock
        self.reporting_time_s = reporting_time_s
        self.interval_s = heartbeat_interval(reporting_time_s)
        self.status = status
        self.sent = 0
        self.acknowledged = 0

    def build(self, msg_id: int) -> protocol.Heartbeat:
        """This moment's heartbeat."""
        status = self.status()
        return protocol.Heartbeat(
            msg_id=msg_id,
            time_s=round(self.clock.now()),
            next_due_s=round(self.interval_s),
            reporting_s=round(self.reporting_time_s),
            queued=self.outbox.depth(),
            drift_s=self.sender.drift_s,
            rssi_dbm=status.rssi_dbm,
            mode=status.mode,
            faults=status.faults,
            modem=status.modem,
            modem_resets=min(status.modem_resets, 65535),
        )

    async def beat(self) -> bool:
        """Send one heartbeat now; True when the receiver acknowledged it."""
        msg_id = self.outbox.next_msg_id()
        self.sent += 1
        try:
            payload = protocol.encode(self.build(msg_id))
            await self.sender.exchange("heartbeat", msg_id, payload, reliable=False)
        except UplinkError as exc:
            logger.warning("heartbeat %d not acknowledged: %s", msg_id, exc)
            return False
        self.acknowledged += 1
        logger.debug("heartbeat %d acknowledged", msg_id)
        return True

    async def run(self) -> None:
        """Beat every interval until cancelled (the first one at once: a restart is news)."""
        next_t = self.clock.now()
        while True:
            await self.clock.sleep_until(next_t)
            await self.beat()
            next_t = max(next_t + self.interval_s, self.clock.now())
