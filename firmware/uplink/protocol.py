"""The polewatch wire protocol: CBOR maps with small integer keys, one home for both ends.

The unit encodes with it and the receiver decodes with it (and the other way for
acknowledgements), so the two can never disagree. ``docs/protocol.md`` is its specification; this
module rejects anything that does not match it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

import cbor2

from firmware.errors import ProtocolError

logger = logging.getLogger(__name__)

VERSION = 1
CONTENT_FORMAT_CBOR = 60  # application/cbor, RFC 7049 / IANA CoAP content-formats
MAX_MESSAGE_BYTES = 1024  # larger than any valid message; anything bigger is refused unread

# Envelope keys, shared by every message kind. The unit's identity is not among them: OSCORE's
# security context says who sent a message, so a payload cannot claim to be another unit.
K_VERSION, K_KIND, K_MSG_ID, K_TIME = 0, 1, 2, 3


class Kind(enum.IntEnum):
    """Message kinds (key 1)."""

    ALARM = 1
    HEARTBEAT = 2
    FAULT = 3
    RESTORE = 4
    COMMAND_RESULT = 5
    ACK = 16


class Phase(enum.IntEnum):
    """Where an alarm message stands in the alarm's lifecycle (key 5 of an alarm)."""

    OPEN = 0
    UPDATE = 1
    CLOSE = 2


class EventKind(enum.IntEnum):
    """What the unit saw (key 6 of an alarm). Codes are stable; new kinds get new numbers."""

    FIRE = 1
    PERSON = 2
    VEHICLE = 3
    LOITERING = 4
    GATHERING = 5
    PERSON_DOWN = 6
    MOTION_NIGHT = 7
    TAMPER = 8
    SENSOR_FAULT = 9


class AckStatus(enum.IntEnum):
    """How the receiver took a message (key 5 of an acknowledgement)."""

    STORED = 0
    DUPLICATE = 1


class FaultCode(enum.IntEnum):
    """What is wrong (key 5 of a fault or restore)."""

    CAMERA = 1  # no frames, frozen frames, values out of range
    ACTUATOR = 2  # an output did not switch
    DISK_LOW = 3  # the outbox's disk is nearly full
    MODEM = 4  # the LTE modem is not registered or does not answer
    CONFIG = 5  # a new config was rejected; the unit runs on its last good one
    CLOCK = 6  # the unit's clock is far from the receiver's
    TAMPER = 7  # a camera is covered, blinded, turned away or defocused


class ModemState(enum.IntEnum):
    """Where the unit's LTE modem stands (key 11 of a heartbeat)."""

    REGISTERED = 0
    SEARCHING = 1  # not registered on a network (searching, or denied)
    NO_SIM = 2
    HUNG = 3  # the AT port does not answer
    UNKNOWN = 4  # not asked yet


class CommandOp(enum.IntEnum):
    """What an operator asks a unit to do (second element of a command)."""

    TRIGGER = 1  # run a deterrence profile (argument: its name)
    SILENCE = 2  # switch every output off now
    ARM = 3
    DISARM = 4
    TEST_ON = 5  # rules evaluated and reported, outputs not switched
    TEST_OFF = 6
    CONFIG_UPDATE = 7  # fetch and apply a new site config (argument: its version)


class CommandStatus(enum.IntEnum):
    """How a command went (key 5 of a command result)."""

    DONE = 0
    REJECTED = 1  # not valid on this unit (unknown profile, bad argument)
    FAILED = 2  # valid, but carrying it out failed
    EXPIRED = 3  # arrived after its expiry time


# A field's checker takes the raw CBOR value and returns it (possibly converted) or raises.
Checker = Callable[[Any], Any]


def _uint(lo: int = 0, hi: int = 2**64 - 1) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"expected an unsigned integer {lo}..{hi}, got {v!r}")
        return v

    return check


def _int(lo: int, hi: int) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"expected an integer {lo}..{hi}, got {v!r}")
        return v

    return check


def _text(max_len: int) -> Checker:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not 1 <= len(v) <= max_len:
            raise ValueError(f"expected text of 1..{max_len} characters, got {v!r}")
        return v

    return check


def _enum(cls: type[enum.IntEnum]) -> Checker:
    def check(v: Any) -> enum.IntEnum:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer code of {cls.__name__}, got {v!r}")
        try:
            return cls(v)
        except ValueError:
            raise ValueError(f"unknown {cls.__name__} code {v}") from None

    return check


def _flag(v: Any) -> bool:
    if v is not True:
        raise ValueError(f"expected true (absent means false), got {v!r}")
    return True


def _pairs(second: Checker, what: str) -> Checker:
    def check(v: Any) -> tuple[tuple[str, Any], ...]:
        if not isinstance(v, list) or len(v) > 16:
            raise ValueError(f"expected a list of at most 16 [output, {what}] pairs, got {v!r}")
        out = []
        for item in v:
            if not isinstance(item, list) or len(item) != 2:
                raise ValueError(f"expected [output, {what}], got {item!r}")
            out.append((_text(32)(item[0]), second(item[1])))
        return tuple(out)

    return check


def _commands(v: Any) -> tuple[Command, ...]:
    if not isinstance(v, list) or len(v) > 8:
        raise ValueError(f"expected a list of at most 8 commands, got {v!r}")
    out = []
    for item in v:
        if not isinstance(item, list) or len(item) not in (3, 4):
            raise ValueError(f"expected [id, op, ttl-s] or [id, op, ttl-s, arg], got "
                             f"{item!r}")  # fmt: skip
        arg = _text(64)(item[3]) if len(item) == 4 else None
        out.append(
            Command(_uint()(item[0]), _enum(CommandOp)(item[1]), _uint(0, 86400)(item[2]), arg)
        )
    return tuple(out)


def _box(v: Any) -> tuple[int, int, int, int]:
    if not isinstance(v, list) or len(v) != 4:
        raise ValueError(f"expected [u0, v0, u1, v1], got {v!r}")
    u0, v0, u1, v1 = (_uint(0, 65535)(x) for x in v)
    if u1 < u0 or v1 < v0:
        raise ValueError(f"box corners out of order: {v!r}")
    return (u0, v0, u1, v1)


_MSG_ID = _uint()
_TIME_S = _uint(0, 2**32 - 1)


@dataclass(frozen=True)
class Command:
    """An operator command riding on an acknowledgement: ``[id, op, ttl-s, ? arg]``.

    ``ttl_s`` is how long the command stays valid from now: relative, so that a unit whose clock
    is off still judges it right.
    """

    command_id: int
    op: CommandOp
    ttl_s: int
    arg: str | None = None

    def to_wire(self) -> list[Any]:
        """The command as a CBOR array."""
        out: list[Any] = [self.command_id, int(self.op), self.ttl_s]
        return out if self.arg is None else [*out, self.arg]


@dataclass(frozen=True)
class Message:
    """Base of every message: the envelope fields.

    ``unit_id`` is not sent: the receiver fills it in from the OSCORE security context that
    verified the message, and the unit knows it from its site config.
    """

    KIND: ClassVar[Kind]
    # key -> (attribute, checker, required); subclasses extend it.
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {}

    msg_id: int
    time_s: int
    unit_id: str = ""


@dataclass(frozen=True)
class Alarm(Message):
    """An alarm's open, update or close."""

    KIND: ClassVar[Kind] = Kind.ALARM
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        4: ("alarm_id", _uint(), True),
        5: ("phase", _enum(Phase), False),
        6: ("event", _enum(EventKind), True),
        7: ("priority", _uint(1, 9), True),
        8: ("zone", _text(32), True),
        9: ("rule", _text(32), False),
        10: ("max_temp_dc", _int(-2732, 20000), False),
        11: ("box", _box, False),
        12: ("actions", _pairs(_uint(0, 86400), "seconds"), False),
        13: ("suppressed", _pairs(_text(64), "reason"), False),
        14: ("started_s", _uint(0, 2**32 - 1), False),
        15: ("test", _flag, False),
    }

    alarm_id: int = 0
    phase: Phase = Phase.OPEN
    event: EventKind = EventKind.FIRE
    priority: int = 1
    zone: str = ""
    rule: str | None = None
    max_temp_dc: int | None = None  # deci-degrees Celsius, so 1234 is 123.4 C
    box: tuple[int, int, int, int] | None = None
    actions: tuple[tuple[str, int], ...] = ()  # outputs switched and for how long
    suppressed: tuple[tuple[str, str], ...] = ()  # outputs a limit held back, and why
    started_s: int | None = None  # when the alarm opened; absent on the wire when == time_s
    test: bool = False  # raised in test mode: outputs were not switched

    def __post_init__(self) -> None:
        if self.started_s is None:
            object.__setattr__(self, "started_s", self.time_s)

    @property
    def ref(self) -> str:
        """The alarm's reference across logs and systems: ``unit/alarm_id``."""
        return f"{self.unit_id}/{self.alarm_id}"


MODE_ARMED = 1
MODE_TEST = 2
DEFAULT_REPORTING_S = 180  # EN 50136-1 category SP4


@dataclass(frozen=True)
class Heartbeat(Message):
    """The unit is alive; says when the next heartbeat is due, and its health."""

    KIND: ClassVar[Kind] = Kind.HEARTBEAT
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        4: ("next_due_s", _uint(1, 86400), True),
        5: ("reporting_s", _uint(1, 86400), False),
        6: ("queued", _uint(0, 2**32 - 1), False),
        7: ("rssi_dbm", _int(-150, 0), False),
        8: ("drift_s", _int(-(2**31), 2**31), False),
        9: ("mode", _uint(0, 255), False),
        10: ("faults", _uint(0, 255), False),
        11: ("modem", _enum(ModemState), False),
        12: ("modem_resets", _uint(0, 65535), False),
    }

    next_due_s: int = 60
    reporting_s: int = DEFAULT_REPORTING_S  # silence longer than this means offline
    queued: int = 0  # messages in the outbox
    rssi_dbm: int | None = None
    drift_s: int | None = None  # unit clock minus receiver clock, from the last acknowledgement
    mode: int = MODE_ARMED  # MODE_* bits
    faults: int = 0  # faults open on the unit
    modem: ModemState = ModemState.REGISTERED  # also when the unit has no supervised modem
    modem_resets: int = 0  # modem resets since the unit started


@dataclass(frozen=True)
class Fault(Message):
    """Something on the unit broke (camera, output, disk, modem, config, clock, tamper)."""

    KIND: ClassVar[Kind] = Kind.FAULT
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        4: ("fault_id", _uint(), True),
        5: ("code", _enum(FaultCode), True),
        6: ("subject", _text(32), False),
        7: ("detail", _text(120), False),
    }

    fault_id: int = 0
    code: FaultCode = FaultCode.CAMERA
    subject: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Restore(Message):
    """A fault reported earlier is over."""

    KIND: ClassVar[Kind] = Kind.RESTORE
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        4: ("fault_id", _uint(), True),
        5: ("code", _enum(FaultCode), True),
        6: ("subject", _text(32), False),
    }

    fault_id: int = 0
    code: FaultCode = FaultCode.CAMERA
    subject: str | None = None


@dataclass(frozen=True)
class CommandResult(Message):
    """How an operator command went on the unit."""

    KIND: ClassVar[Kind] = Kind.COMMAND_RESULT
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        4: ("command_id", _uint(), True),
        5: ("status", _enum(CommandStatus), True),
        6: ("detail", _text(120), False),
    }

    command_id: int = 0
    status: CommandStatus = CommandStatus.DONE
    detail: str | None = None


@dataclass(frozen=True)
class Ack(Message):
    """The receiver's answer: it has committed message ``msg_id``; commands may ride along.

    ``time_s`` is the receiver's clock, so that the unit can report its drift.
    """

    KIND: ClassVar[Kind] = Kind.ACK
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        5: ("status", _enum(AckStatus), False),
        6: ("commands", _commands, False),
    }

    status: AckStatus = AckStatus.STORED
    commands: tuple[Command, ...] = ()


UPLINK_KINDS = (Alarm, Heartbeat, Fault, Restore, CommandResult)
_BY_KIND: dict[Kind, type[Message]] = {cls.KIND: cls for cls in (*UPLINK_KINDS, Ack)}


def _wire(value: Any) -> Any:
    if isinstance(value, enum.IntEnum):
        return int(value)
    if isinstance(value, Command):
        return value.to_wire()
    if isinstance(value, tuple):
        return [_wire(v) for v in value]
    return value


def _defaults(cls: type[Message]) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def encode(msg: Message) -> bytes:
    """Encode a message as canonical CBOR; the result is checked against the schema."""
    data: dict[int, Any] = {
        K_VERSION: VERSION,
        K_KIND: int(msg.KIND),
        K_MSG_ID: msg.msg_id,
        K_TIME: msg.time_s,
    }
    defaults = _defaults(type(msg))
    for key, (attr, _check, required) in msg.BODY.items():
        value = getattr(msg, attr)
        if not required and (value is None or value == defaults.get(attr)):
            continue  # absent means the default: every byte costs on LTE
        if attr == "started_s" and value == msg.time_s:
            continue  # an open's start is its time: say it once
        data[key] = _wire(value)
    raw: bytes = cbor2.dumps(data, canonical=True)
    decode(raw)  # never send what the other end would refuse
    return raw


def decode(raw: bytes, unit_id: str = "") -> Message:
    """Decode and validate one message; raise :class:`ProtocolError` saying what is wrong.

    ``unit_id`` is who sent it, as the OSCORE context that verified it says.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        data = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ProtocolError(f"not well-formed CBOR: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a CBOR map, got {type(data).__name__}")
    version = data.get(K_VERSION)
    if version != VERSION:
        raise ProtocolError(f"key 0 (version): expected {VERSION}, got {version!r}")
    try:
        kind = Kind(data[K_KIND])
    except (KeyError, ValueError, TypeError):
        raise ProtocolError(f"key 1 (kind): unknown message kind {data.get(K_KIND)!r}") from None
    cls = _BY_KIND[kind]
    envelope = {
        K_MSG_ID: ("msg_id", _MSG_ID, True),
        K_TIME: ("time_s", _TIME_S, True),
    }
    schema = {**envelope, **cls.BODY}
    known = {K_VERSION, K_KIND, *schema}
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ProtocolError(f"{kind.name.lower()}: unknown key(s) {unknown!r}")
    values: dict[str, Any] = {}
    for key, (attr, check, required) in schema.items():
        if key not in data:
            if required:
                raise ProtocolError(f"{kind.name.lower()}: key {key} ({attr}) is missing")
            continue
        try:
            values[attr] = check(data[key])
        except ValueError as exc:
            raise ProtocolError(f"{kind.name.lower()}: key {key} ({attr}): {exc}") from None
    return cls(unit_id=unit_id, **values)
