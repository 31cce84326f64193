"""The polewatch wire protocol: CBOR maps with small integer keys, one home for both ends.

The unit encodes with it and the receiver decodes with it (and the other way for
acknowledgements), so the two can never disagree. ``docs/protocol.md`` is its specification; this
module rejects anything that does not match it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import cbor2

from firmware.errors import ProtocolError

logger = logging.getLogger(__name__)

VERSION = 1
CONTENT_FORMAT_CBOR = 60  # application/cbor, RFC 7049 / IANA CoAP content-formats
MAX_MESSAGE_BYTES = 1024  # larger than any valid message; anything bigger is refused unread

# Envelope keys, shared by every message kind.
K_VERSION, K_KIND, K_UNIT, K_MSG_ID, K_TIME = 0, 1, 2, 3, 4


class Kind(enum.IntEnum):
    """Message kinds (key 1)."""

    ALARM = 1
    ACK = 16


class Phase(enum.IntEnum):
    """Where an alarm message stands in the alarm's lifecycle (key 11)."""

    OPEN = 0
    UPDATE = 1
    CLOSE = 2


class EventKind(enum.IntEnum):
    """What the unit saw (key 12). Codes are stable; new kinds get new numbers."""

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


def _box(v: Any) -> tuple[int, int, int, int]:
    if not isinstance(v, list) or len(v) != 4:
        raise ValueError(f"expected [u0, v0, u1, v1], got {v!r}")
    u0, v0, u1, v1 = (_uint(0, 65535)(x) for x in v)
    if u1 < u0 or v1 < v0:
        raise ValueError(f"box corners out of order: {v!r}")
    return (u0, v0, u1, v1)


def _actions(v: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(v, list) or len(v) > 16:
        raise ValueError(f"expected a list of at most 16 [output, seconds] pairs, got {v!r}")
    out = []
    for item in v:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError(f"expected [output, seconds], got {item!r}")
        out.append((_text(32)(item[0]), _uint(0, 86400)(item[1])))
    return tuple(out)


_UNIT_ID = _text(64)
_MSG_ID = _uint()
_TIME_MS = _uint()


@dataclass(frozen=True)
class Message:
    """Base of every message: the envelope fields."""

    KIND: ClassVar[Kind]
    # key -> (attribute, checker, required); subclasses extend it.
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {}

    unit_id: str
    msg_id: int
    time_ms: int


@dataclass(frozen=True)
class Alarm(Message):
    """An alarm's open, update or close."""

    KIND: ClassVar[Kind] = Kind.ALARM
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        10: ("alarm_id", _uint(), True),
        11: ("phase", _enum(Phase), True),
        12: ("event", _enum(EventKind), True),
        13: ("priority", _uint(1, 9), True),
        14: ("zone", _text(32), True),
        15: ("rule", _text(32), False),
        16: ("max_temp_dc", _int(-2732, 20000), False),
        17: ("box", _box, False),
        18: ("actions", _actions, False),
        19: ("started_ms", _uint(), False),
    }

    alarm_id: int = 0
    phase: Phase = Phase.OPEN
    event: EventKind = EventKind.FIRE
    priority: int = 1
    zone: str = ""
    rule: str | None = None
    max_temp_dc: int | None = None  # deci-degrees Celsius, so 1234 is 123.4 C
    box: tuple[int, int, int, int] | None = None
    actions: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    started_ms: int | None = None

    @property
    def ref(self) -> str:
        """The alarm's reference across logs and systems: ``unit/alarm_id``."""
        return f"{self.unit_id}/{self.alarm_id}"


@dataclass(frozen=True)
class Ack(Message):
    """The receiver's acknowledgement: it has committed message ``msg_id`` of ``unit_id``."""

    KIND: ClassVar[Kind] = Kind.ACK
    BODY: ClassVar[dict[int, tuple[str, Checker, bool]]] = {
        5: ("status", _enum(AckStatus), True),
    }

    status: AckStatus = AckStatus.STORED


_BY_KIND: dict[Kind, type[Message]] = {cls.KIND: cls for cls in (Alarm, Ack)}


def encode(msg: Message) -> bytes:
    """Encode a message as canonical CBOR; the result is checked against the schema."""
    data: dict[int, Any] = {
        K_VERSION: VERSION,
        K_KIND: int(msg.KIND),
        K_UNIT: msg.unit_id,
        K_MSG_ID: msg.msg_id,
        K_TIME: msg.time_ms,
    }
    for key, (attr, _check, required) in msg.BODY.items():
        value = getattr(msg, attr)
        if value is None or (not required and value == ()):
            continue
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        data[key] = int(value) if isinstance(value, enum.IntEnum) else value
    raw: bytes = cbor2.dumps(data, canonical=True)
    decode(raw)  # never send what the other end would refuse
    return raw


def decode(raw: bytes) -> Message:
    """Decode and validate one message; raise :class:`ProtocolError` saying what is wrong."""
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
        K_UNIT: ("unit_id", _UNIT_ID, True),
        K_MSG_ID: ("msg_id", _MSG_ID, True),
        K_TIME: ("time_ms", _TIME_MS, True),
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
    return cls(**values)


def message_fields(cls: type[Message]) -> list[str]:
    """Attribute names of a message class, for documentation and tests."""
    return [f.name for f in fields(cls)]
