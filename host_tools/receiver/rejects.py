"""Counting and logging what the receiver rejects, without letting garbage flood the log."""

from __future__ import annotations

import logging
import time
from collections import Counter

logger = logging.getLogger(__name__)

LOG_BURST = 5  # log the first few rejections of each reason in a window, then summarise
LOG_WINDOW_S = 60.0

# Reasons, as counted and exported.
UNPARSABLE = "unparsable"  # not a CoAP message at all (dropped by aiocoap's transport)
UNPROTECTED = "unprotected"  # plain CoAP without OSCORE
UNKNOWN_UNIT = "unknown_unit"  # OSCORE with a key id no unit has
FORGED = "forged"  # OSCORE that does not verify: wrong key, or tampered in transit
REPLAYED = "replayed"  # a sequence number already seen
MALFORMED = "malformed"  # verified, but the payload does not match the protocol
OVERSIZED = "oversized"  # verified, but larger than any valid message
REASONS = (UNPARSABLE, UNPROTECTED, UNKNOWN_UNIT, FORGED, REPLAYED, MALFORMED, OVERSIZED)


class Rejects:
    """Counts rejections by reason and logs them at a bounded rate."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._window_start = time.monotonic()
        self._in_window: Counter[str] = Counter()

    def reject(self, reason: str, peer: object, detail: str) -> None:
        """Count one rejection; log it unless this reason has been logged a lot lately."""
        self.counts[reason] += 1
        now = time.monotonic()
        if now - self._window_start > LOG_WINDOW_S:
            suppressed = {r: n - LOG_BURST for r, n in self._in_window.items() if n > LOG_BURST}
            if suppressed:
                logger.warning(
                    "rejected in the last %.0f s without a log line: %s",
                    now - self._window_start,
                    suppressed,
                )
            self._window_start, self._in_window = now, Counter()
        self._in_window[reason] += 1
        if self._in_window[reason] <= LOG_BURST:
            logger.warning("rejected (%s) from %s: %s", reason, peer, detail)

    @property
    def total(self) -> int:
        """All rejections so far."""
        return sum(self.counts.values())


class UnparsableFilter(logging.Filter):
    """Counts aiocoap's "unparsable message" records as rejections and keeps them out of the log.

    aiocoap drops datagrams that are not CoAP inside its transport and only logs them; this is
    the one place where they can be seen. It is also attached to the event loop's logger: aiocoap
    0.4.17 lets a ``UnicodeDecodeError`` escape its datagram handler when a text option is not
    UTF-8, and the loop then logs it with a traceback per datagram, which a flood of garbage
    would turn into a flood of tracebacks.
    """

    def __init__(self, rejects: Rejects) -> None:
        super().__init__()
        self.rejects = rejects

    def filter(self, record: logging.LogRecord) -> bool:
        """Count and swallow the unparsable-message warnings; let the rest through."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UnicodeDecodeError) and _from_aiocoap_decode(record):
            self.rejects.reject(UNPARSABLE, "-", "CoAP option is not UTF-8")
            return False
        if record.msg == "Ignoring unparsable message from %s":
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            self.rejects.reject(UNPARSABLE, peer, "not a CoAP message")
            return False
        return True


def _from_aiocoap_decode(record: logging.LogRecord) -> bool:
    tb = record.exc_info[2] if record.exc_info else None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(("aiocoap/message.py", "aiocoap/options.py")):
            return True
        tb = tb.tb_next
    return False
