"""LTE modem supervision: a state machine over the modem's status, with a logged reason for
every transition and every reset (the Cacophony modemd idea, with rate-limited resets).

Polls run in a worker thread (AT commands block). A modem that is not registered for
``unregistered_reset_s`` gets a soft reset (AT+CFUN=1,1); one whose AT port does not answer
``hung_polls`` times in a row gets a hard reset (its power key). A missing SIM gets no reset (none
would help) but a fault. At most ``max_resets_per_hour`` resets, so that a dead cell cannot make
the modem reset all night.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from firmware.clock import Clock
from firmware.errors import HardwareError
from firmware.hal.base import Modem, ModemStatus
from firmware.uplink import protocol
from firmware.uplink.faults import Faults

logger = logging.getLogger(__name__)

HOUR_S = 3600.0
SUBJECT = "modem"  # the fault's subject


class LinkState(enum.StrEnum):
    """Where the modem stands."""

    UNKNOWN = "unknown"
    NO_SIM = "no-sim"
    SEARCHING = "searching"
    REGISTERED = "registered"
    HUNG = "hung"

    @property
    def code(self) -> protocol.ModemState:
        """The state's code in heartbeats."""
        return protocol.ModemState[self.name]


@dataclass(frozen=True)
class Transition:
    """One change of state, and why."""

    t: float
    old: LinkState
    new: LinkState
    reason: str


@dataclass(frozen=True)
class Reset:
    """One reset the supervisor did, and why."""

    t: float
    hard: bool
    reason: str


class ModemSupervisor:
    """Polls the modem, follows its state, and resets it when the link is dead."""

    def __init__(
        self,
        modem: Modem,
        clock: Clock,
        faults: Faults | None = None,
        *,
        poll_s: float = 30.0,
        unregistered_reset_s: float = 300.0,
        hung_polls: int = 3,
        max_resets_per_hour: int = 4,
    ) -> None:
        self.modem, self.clock, self.faults = modem, clock, faults
        self.poll_s = poll_s
        self.unregistered_reset_s = unregistered_reset_s
        self.hung_polls = hung_polls
        self.max_resets_per_hour = max_resets_per_hour
        self.state = LinkState.UNKNOWN
        self.last: ModemStatus | None = None  # the last answer; kept while the port is hung
        self.transitions: deque[Transition] = deque(maxlen=100)
        self.resets: deque[Reset] = deque(maxlen=100)
        self.reset_count = 0  # since the supervisor started
        self.held_back = 0  # resets the hourly limit held back
        self._since = clock.now()  # when the current state began, or the last reset
        self._hung = 0  # unanswered polls in a row

    @classmethod
    def from_config(
        cls, modem: Modem, config: Any, clock: Clock, faults: Faults | None = None
    ) -> ModemSupervisor:
        """A supervisor with the timings of the board's ``[modem]`` table."""
        return cls(
            modem,
            clock,
            faults,
            poll_s=config.poll_s,
            unregistered_reset_s=config.unregistered_reset_s,
            hung_polls=config.hung_polls,
            max_resets_per_hour=config.max_resets_per_hour,
        )

    @property
    def rssi_dbm(self) -> int | None:
        """The last known signal, none while the modem is not registered."""
        if self.state != LinkState.REGISTERED or self.last is None:
            return None
        return self.last.rssi_dbm

    def poll(self) -> LinkState:
        """Ask the modem once, judge the answer, and reset it if the link is dead. Blocking."""
        reset = self.judge(self.ask())
        if reset is not None:
            self.do_reset(reset)
        return self.state

    def ask(self) -> ModemStatus | HardwareError:
        """The modem's status, or why it did not give one. Blocking (AT commands)."""
        try:
            return self.modem.status()
        except HardwareError as exc:
            return exc

    def judge(self, answer: ModemStatus | HardwareError) -> Reset | None:
        """Move the state machine on an answer; the reset that is due, if any (counted)."""
        now = self.clock.now()
        if isinstance(answer, HardwareError):
            self._hung += 1
            self._move(LinkState.HUNG, f"AT port: {answer}", now)
            if self._hung >= self.hung_polls:
                return self._reset(True, f"no answer to {self._hung} polls in a row", now)
            return None
        self._hung = 0
        self.last = answer
        if answer.sim != "READY":
            self._move(LinkState.NO_SIM, f"SIM: {answer.sim}", now)
        elif not answer.registered:
            self._move(LinkState.SEARCHING, f"registration: {answer.registration}", now)
            waited = now - self._since
            if waited >= self.unregistered_reset_s:
                self._fault(f"not registered for {waited:.0f} s")
                return self._reset(False, f"not registered for {waited:.0f} s", now)
        else:
            self._move(LinkState.REGISTERED, _describe(answer), now)
        return None

    def do_reset(self, reset: Reset) -> None:
        """Carry out a reset that :meth:`judge` asked for. Blocking."""
        try:
            self.modem.reset(reset.hard)
        except HardwareError as exc:
            logger.error("modem %s reset failed: %s", "hard" if reset.hard else "soft", exc)

    def _move(self, new: LinkState, reason: str, now: float) -> None:
        if new == self.state:
            return
        log = logger.info if new == LinkState.REGISTERED else logger.warning
        log("modem %s -> %s: %s", self.state, new, reason)
        self.transitions.append(Transition(now, self.state, new, reason))
        self.state, self._since = new, now
        if new == LinkState.REGISTERED:
            if self.faults is not None:
                self.faults.clear(protocol.FaultCode.MODEM, SUBJECT)
        elif new in (LinkState.NO_SIM, LinkState.HUNG):
            self._fault(f"{new}: {reason}")

    def _fault(self, detail: str) -> None:
        if self.faults is not None:
            self.faults.raise_(protocol.FaultCode.MODEM, SUBJECT, detail)

    def _reset(self, hard: bool, reason: str, now: float) -> Reset | None:
        kind = "hard" if hard else "soft"
        recent = sum(1 for r in self.resets if now - r.t < HOUR_S)
        if recent >= self.max_resets_per_hour:
            if self.held_back == 0:  # say it once, not at every poll
                logger.error(
                    "modem %s reset held back (%d in the last hour): %s", kind, recent, reason
                )
            self.held_back += 1
            return None
        logger.warning("modem %s reset: %s", kind, reason)
        reset = Reset(now, hard, reason)
        self.resets.append(reset)
        self.reset_count += 1
        self.held_back = 0
        self._since, self._hung = now, 0  # give it time to come back before judging again
        return reset

    async def run(self) -> None:
        """Poll every ``poll_s`` until cancelled; AT commands and resets run in a thread."""
        while True:
            try:
                reset = self.judge(await asyncio.to_thread(self.ask))
                if reset is not None:
                    await asyncio.to_thread(self.do_reset, reset)
            except Exception:  # supervision must outlive a bug in one poll
                logger.exception("modem poll failed")
            await self.clock.sleep_until(self.clock.now() + self.poll_s)


def _describe(status: ModemStatus) -> str:
    parts = [f"on {status.operator or '?'}", status.registration or "registered"]
    if status.technology:
        parts.append(status.technology)
    if status.rssi_dbm is not None:
        parts.append(f"RSSI {status.rssi_dbm} dBm")
    if status.rsrp_dbm is not None:
        parts.append(f"RSRP {status.rsrp_dbm} dBm")
    if status.rsrq_db is not None:
        parts.append(f"RSRQ {status.rsrq_db} dB")
    return ", ".join(parts)
