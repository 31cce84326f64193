"""Which SIA event code an alarm-queue entry becomes on its way to an alarm receiving centre.

Each kind of alarm has a pair of codes: one for the opening and one for the closing (restoral).
Updates in between are not sent: SIA has no code for "still burning", and the receiving centre
already has the alarm. Test alarms are sent once, as a test report, and their closing not at all.
The table is documented in docs/protocol.md ("Forwarding"); every code is in the SIA DC-03 code
list that pysiaalarm carries, which the tests check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiaCodes:
    """The SIA codes of one kind of alarm: on opening, and on closing (None: not sent)."""

    open: str
    close: str | None
    meaning: str


# Events from a unit's alarms (protocol.EventKind names, lower case).
EVENT_CODES: dict[str, SiaCodes] = {
    "fire": SiaCodes("FA", "FR", "fire alarm / fire restoral"),
    "person": SiaCodes("BA", "BR", "burglary (intrusion) alarm / restoral"),
    "vehicle": SiaCodes("BA", "BR", "burglary (intrusion) alarm / restoral"),
    "motion_night": SiaCodes("BA", "BR", "burglary (intrusion) alarm / restoral"),
    "person_down": SiaCodes("MA", "MR", "medical alarm / restoral"),
    "loitering": SiaCodes("UA", "UR", "untyped zone alarm / restoral"),
    "gathering": SiaCodes("UA", "UR", "untyped zone alarm / restoral"),
    "tamper": SiaCodes("TA", "TR", "tamper alarm / restoral"),
    "sensor_fault": SiaCodes("UT", "UJ", "untyped zone trouble / trouble restore"),
}

# Faults a unit reports (``fault:<protocol.FaultCode name>``) and the receiver's own entries.
FAULT_CODES: dict[str, SiaCodes] = {
    "fault:camera": SiaCodes("UT", "UJ", "untyped zone trouble / trouble restore"),
    "fault:tamper": SiaCodes("TA", "TR", "tamper alarm / restoral"),
    "fault:actuator": SiaCodes("YA", "YH", "bell fault / bell restored"),
    "fault:modem": SiaCodes("YS", "YK", "communications trouble / restoral"),
    "fault:clock": SiaCodes("YX", "YZ", "service required / service completed"),
    "fault:config": SiaCodes("YX", "YZ", "service required / service completed"),
    "fault:disk_low": SiaCodes("YX", "YZ", "service required / service completed"),
    "offline": SiaCodes("YS", "YK", "communications trouble / restoral"),
}

UNKNOWN = SiaCodes("UA", "UR", "untyped zone alarm / restoral")  # a kind added after this table
UNKNOWN_FAULT = SiaCodes("YX", "YZ", "service required / service completed")
TEST_CODE = "TX"  # test report: an alarm raised while the unit is in test mode


def sia_code(event: str, phase: str, test: bool = False) -> str | None:
    """The SIA code for an alarm's ``event`` at ``phase`` (open/update/close); None: not sent."""
    if phase == "update":
        return None
    if test:
        return TEST_CODE if phase == "open" else None
    codes = EVENT_CODES.get(event) or FAULT_CODES.get(event)
    if codes is None:
        codes = UNKNOWN_FAULT if event.startswith("fault:") else UNKNOWN
        logger.warning("no SIA code for event %r; sending %s", event, codes.open)
    return codes.open if phase == "open" else codes.close


def all_codes() -> set[str]:
    """Every code this mapping can produce."""
    pairs = [*EVENT_CODES.values(), *FAULT_CODES.values(), UNKNOWN, UNKNOWN_FAULT]
    return {c for p in pairs for c in (p.open, p.close) if c} | {TEST_CODE}
