"""SIA DC-09 messages: building the transmitter's frames and reading the receiver's answers.

A frame is ``LF crc length "id"seq Rrcvr Lpref #acct [data] CR``: the CRC-16/ARC (4 hex digits)
and the length (4 hex digits) both cover everything from the first quote to the end of the data.
With a key, the id is starred (``"*SIA-DCS"``) and everything after the ``[`` is AES-CBC (zero IV)
over random padding, ``|``, the data and the timestamp, sent as upper-case hex. The receiver
answers ``ACK`` (the same sequence number), ``NAK`` (with its own time: the transmitter's clock
is off, or the frame was bad) or ``DUH`` (it does not understand the message; do not resend).
A ``NULL`` message (a link test, no event) carries sequence number 0000, as panels in the field
send it and pysiaalarm's ACK echoes it: it is no event, so it takes no number from the events'.

The receiving side this matches is pysiaalarm's (``pysiaalarm.event``), read field by field.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware.errors import ProtocolError

logger = logging.getLogger(__name__)

MESSAGE_ID = "SIA-DCS"
NULL_ID = "NULL"  # a link test (supervision poll) with no event
NULL_SEQUENCE = 0  # a link test's sequence number: 0000, outside the events' 0001-9999
MAX_SEQUENCE = 9999
MAX_TEXT = 64  # characters of alarm text ([I...] extended data); keeps a frame well under 1 KB
TIME_FORMAT = "%H:%M:%S,%m-%d-%Y"
_IV = bytes(16)  # DC-09 uses a zero IV: the random padding makes equal messages differ
# Padding characters: anything but the delimiters the receiver looks for.
_PAD_ALPHABET = string.ascii_letters + string.digits
_TIMESTAMP = re.compile(r"_(\d{2}:\d{2}:\d{2},\d{2}-\d{2}-\d{4})")
_RESPONSE = re.compile(
    r'^"(?P<star>\*?)(?P<kind>ACK|NAK|DUH|RSP)"'
    r"(?P<seq>\d{4})?(?:[RL][0-9A-Fa-f]{1,6}){0,2}"  # pysiaalarm's bare NAK puts L before R
    r"(?:#(?P<acct>[0-9A-Fa-f]{3,16})|A0)?(?:\[(?P<rest>.*))?$"
)


@dataclass(frozen=True)
class Event:
    """One SIA event to send: the code, and optional area and alarm text."""

    code: str
    text: str = ""
    area: int | None = None  # SIA "ri": the area (partition) number

    def data(self, account: str) -> str:
        """The data block without its opening bracket: ``#acct|Nri1/FA][Itext]``."""
        area = f"ri{self.area}/" if self.area is not None else ""
        text = clean_text(self.text)
        xdata = f"[I{text}]" if text else ""
        return f"#{account}|N{area}{self.code}]{xdata}"


@dataclass(frozen=True)
class Response:
    """A receiver's answer to one frame."""

    kind: str  # ACK, NAK, DUH or RSP
    sequence: int | None
    encrypted: bool
    time: datetime | None  # the receiver's clock, when the answer carries it


def crc16(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected, init 0), as DC-09 specifies."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def clean_text(text: str) -> str:
    """Alarm text as DC-09 can carry it: ASCII, no brackets or bars, at most MAX_TEXT long."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    kept = "".join(c for c in ascii_text if c.isprintable() and c not in '[]|^"')
    return kept[:MAX_TEXT]


def timestamp(when: datetime) -> str:
    """``_HH:MM:SS,MM-DD-YYYY`` in UTC."""
    return "_" + when.astimezone(UTC).strftime(TIME_FORMAT)


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    if len(key) not in (16, 24, 32):
        raise ProtocolError(f"DC-09 key: {len(key)} bytes; AES needs 16, 24 or 32")
    return Cipher(algorithms.AES(key), modes.CBC(_IV))


def encrypt(key: bytes, text: str) -> str:
    """Pad ``|text`` at the front to whole blocks, encrypt, and give upper-case hex."""
    body = "|" + text
    pad = -len(body) % 16 or 16  # at least one pad character, as pysiaalarm's responses have
    plain = ("".join(secrets.choice(_PAD_ALPHABET) for _ in range(pad)) + body).encode("ascii")
    enc = _cipher(key).encryptor()
    return (enc.update(plain) + enc.finalize()).hex().upper()


def decrypt(key: bytes, hex_text: str) -> str:
    """Decrypt upper- or lower-case hex; the padding stays in front."""
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError as exc:
        raise ProtocolError(f"DC-09 encrypted block is not hex: {hex_text[:40]!r}") from exc
    if not raw or len(raw) % 16:
        raise ProtocolError(f"DC-09 encrypted block of {len(raw)} bytes is not whole blocks")
    dec = _cipher(key).decryptor()
    return (dec.update(raw) + dec.finalize()).decode("ascii", "replace")


def frame(body: str) -> bytes:
    """Add the CRC and length in front and the LF/CR around a frame body (from its quote on)."""
    raw = body.encode("ascii")
    return b"\n" + f"{crc16(raw):04X}{len(raw):04X}".encode() + raw + b"\r"


def build(
    event: Event | None,
    sequence: int,
    account: str,
    receiver: str,
    line: str,
    when: datetime,
    key: bytes | None = None,
) -> bytes:
    """One transmitter frame; ``event`` None builds a NULL (link test) message."""
    lowest = NULL_SEQUENCE if event is None else 1
    if not lowest <= sequence <= MAX_SEQUENCE:
        raise ProtocolError(f"DC-09 sequence {sequence}: must be {lowest}..{MAX_SEQUENCE}")
    data = event.data(account) if event is not None else "]"
    kind = MESSAGE_ID if event is not None else NULL_ID
    header = f"{sequence:04d}R{receiver}L{line}#{account}["
    stamped = data + timestamp(when)
    if key is None:
        return frame(f'"{kind}"{header}{stamped}')
    return frame(f'"*{kind}"{header}{encrypt(key, stamped)}')


def link_test(
    account: str, receiver: str, line: str, when: datetime, key: bytes | None = None
) -> bytes:
    """A NULL message (link test): sequence 0000, no event, the time of ``when``."""
    return build(None, NULL_SEQUENCE, account, receiver, line, when, key)


def parse_response(raw: bytes, key: bytes | None = None) -> Response:
    """Read one answer: a framed ``ACK``/``NAK``/``DUH``, or a bare ``"NAK"``."""
    text = raw.decode("ascii", "replace").strip()
    if not text:
        raise ProtocolError("DC-09 answer is empty")
    if not text.startswith('"'):  # framed: check the CRC and the length
        crc, length, body = text[:4], text[4:8], text[8:]
        try:
            sent_crc, sent_len = int(crc, 16), int(length, 16)
        except ValueError:
            raise ProtocolError(f"DC-09 answer has no CRC/length: {text[:40]!r}") from None
        if crc16(body.encode("ascii", "replace")) != sent_crc:
            raise ProtocolError(f"DC-09 answer fails its CRC: {text[:60]!r}")
        if sent_len != len(body):
            logger.debug("DC-09 answer length %d, is %d", sent_len, len(body))
        text = body
    match = _RESPONSE.match(text)
    if match is None:
        raise ProtocolError(f"DC-09 answer not understood: {text[:60]!r}")
    rest = match["rest"] or ""
    encrypted = bool(match["star"])
    if encrypted and rest:
        if key is None:
            raise ProtocolError("DC-09 answer is encrypted but this link has no key")
        rest = decrypt(key, rest)
    stamp = _TIMESTAMP.search(rest)
    when = None
    if stamp is not None:
        try:
            when = datetime.strptime(stamp[1], TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            logger.warning("DC-09 answer carries a bad timestamp %r", stamp[1])
    seq = int(match["seq"]) if match["seq"] else None
    return Response(kind=match["kind"], sequence=seq, encrypted=encrypted, time=when)


def complete(buffer: bytes) -> bool:
    """Whether ``buffer`` holds a whole answer: a frame up to CR, or a bare quoted word."""
    if b"\r" in buffer:
        return True
    return re.fullmatch(rb'\s*"\*?(ACK|NAK|DUH|RSP)"\s*', buffer) is not None
