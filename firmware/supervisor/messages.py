"""Supervisor link messages: types, codes and payload layouts, shared by the Pico and the unit.

Every request from the unit gets one answer with the same sequence number: STATUS (done, with the
supervisor's status) or NAK (refused, with a reason). The supervisor also sends EVENTs on its own
(with its own sequence numbers). Integers are big-endian.
"""

import struct

# Unit -> supervisor.
CONFIG = 0x01  # heartbeat timeout (ms, u32), then each channel's maximum on-time (s, u16)
HEARTBEAT = 0x02  # empty: "the unit is alive"
SET = 0x03  # channel (u8), on (u8 0/1)
GET_STATUS = 0x04  # empty
# Supervisor -> unit.
STATUS = 0x81  # status block
NAK = 0x82  # reason (u8)
EVENT = 0x83  # event (u8), argument (u8), then the status block

# Supervisor states.
STARTING = 0  # since power-on, waiting for the unit's first heartbeat
RUNNING = 1  # heartbeats arrive
CYCLING = 2  # heartbeats stopped: outputs off, the unit's power is cut
WAITING = 3  # power restored, waiting (with backoff) for the unit to come back
GAVE_UP = 4  # too many power cycles: outputs stay off until heartbeats return
STATE_NAMES = ("starting", "running", "cycling", "waiting", "gave-up")

# NAK reasons.
BAD_CHANNEL = 1
BAD_LENGTH = 2
UNKNOWN_TYPE = 3
REFUSED = 4  # switching on while the supervisor does not hear heartbeats
BAD_VALUE = 5
NAK_NAMES = (
    "",
    "no such channel",
    "bad payload length",
    "unknown message type",
    "refused: no heartbeat",
    "bad value",
)

# Events.
BOOTED = 1  # argument: 0
TAMPER = 2  # argument: 1 open, 0 closed
CUTOFF = 3  # argument: the channel its maximum on-time switched off
UNIT_LOST = 4  # argument: the power-cycle attempt now starting
GIVE_UP = 5  # argument: the attempts made
UNIT_BACK = 6  # argument: 0
EVENT_NAMES = ("", "booted", "tamper", "cutoff", "unit-lost", "gave-up", "unit-back")

# state, outputs (bit per channel), tamper, supply mV, power cycles, bad frames, attempts
STATUS_FORMAT = ">BBBHHHB"
STATUS_SIZE = struct.calcsize(STATUS_FORMAT)
CONFIG_HEAD = ">I"
SET_FORMAT = ">BB"


def pack_status(
    state: int, outputs: int, tamper: bool, supply_mv: int, cycles: int, bad: int, attempts: int
) -> bytes:
    """The status block."""
    return struct.pack(
        STATUS_FORMAT,
        state,
        outputs & 0xFF,
        1 if tamper else 0,
        min(supply_mv, 0xFFFF),
        min(cycles, 0xFFFF),
        min(bad, 0xFFFF),
        min(attempts, 0xFF),
    )


def unpack_status(payload: bytes) -> tuple[int, int, int, int, int, int, int]:
    """The status block's fields, in :func:`pack_status`'s order."""
    if len(payload) < STATUS_SIZE:
        raise ValueError("status block too short")
    s = struct.unpack(STATUS_FORMAT, payload[:STATUS_SIZE])
    return s[0], s[1], s[2], s[3], s[4], s[5], s[6]


def pack_config(heartbeat_timeout_ms: int, max_on_s: list[int]) -> bytes:
    """A CONFIG payload: the heartbeat timeout, and channel 0, 1, ...'s maximum on-times."""
    out = struct.pack(CONFIG_HEAD, heartbeat_timeout_ms)
    for seconds in max_on_s:
        out += struct.pack(">H", seconds)
    return out


def unpack_config(payload: bytes) -> tuple[int, list[int]]:
    """``(heartbeat_timeout_ms, [max_on_s per channel])``; raise ValueError on a bad length."""
    if len(payload) < 4 or (len(payload) - 4) % 2:
        raise ValueError("bad CONFIG length")
    timeout = struct.unpack(CONFIG_HEAD, payload[:4])[0]
    limits = [struct.unpack(">H", payload[i : i + 2])[0] for i in range(4, len(payload), 2)]
    return int(timeout), [int(v) for v in limits]
