"""Supervisor link framing, shared by the Pico (MicroPython) and the unit (CPython).

On the wire a frame is COBS(body + CRC) followed by one 0x00 byte; COBS leaves no zero byte inside,
so a receiver resynchronises at the next 0x00 after noise. ``body`` is type (1 byte), sequence
number (1 byte) and payload (0 to MAX_PAYLOAD bytes); the CRC is CRC-16/CCITT-FALSE (poly 0x1021,
init 0xFFFF) of the body, big-endian.
"""

MAX_PAYLOAD = 64
DELIMITER = 0
# Longest encoded frame without its delimiter: COBS adds one byte per 254, plus the first code.
MAX_ENCODED = 2 + MAX_PAYLOAD + 2 + 1 + (MAX_PAYLOAD + 4) // 254


def crc16(data: bytes | bytearray, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (what CPython's ``binascii.crc_hqx(data, 0xFFFF)`` gives)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def cobs_encode(data: bytes | bytearray) -> bytes:
    """Consistent Overhead Byte Stuffing: ``data`` with every zero byte removed."""
    out = bytearray(b"\x00")
    code_at, code = 0, 1
    for byte in data:
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes | bytearray) -> bytes:
    """Undo :func:`cobs_encode`; raise ValueError on a malformed block."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            raise ValueError("bad COBS block")
        out.extend(data[i + 1 : i + code])
        i += code
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode(kind: int, seq: int, payload: bytes | bytearray = b"") -> bytes:
    """One complete frame, delimiter included."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    body = bytes([kind & 0xFF, seq & 0xFF]) + bytes(payload)
    crc = crc16(body)
    return cobs_encode(body + bytes([crc >> 8, crc & 0xFF])) + b"\x00"


def decode(frame: bytes | bytearray) -> tuple[int, int, bytes]:
    """``(type, seq, payload)`` of one frame without its delimiter; raise ValueError if bad."""
    raw = cobs_decode(frame)
    if len(raw) < 4:
        raise ValueError("frame too short")
    if crc16(raw[:-2]) != (raw[-2] << 8) | raw[-1]:
        raise ValueError("bad CRC")
    return raw[0], raw[1], bytes(raw[2:-2])


class Decoder:
    """Splits a byte stream into frames; counts (and drops) frames that fail their check."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad = 0  # frames dropped: bad CRC, bad COBS, too short or too long
        self.last_error = ""

    def feed(self, data: bytes | bytearray) -> list[tuple[int, int, bytes]]:
        """Take received bytes; return the good frames they complete, oldest first."""
        frames: list[tuple[int, int, bytes]] = []
        for byte in data:
            if byte != DELIMITER:
                if len(self.buf) <= MAX_ENCODED:
                    self.buf.append(byte)
                continue
            if not self.buf:
                continue  # idle delimiters between frames
            if len(self.buf) > MAX_ENCODED:
                self._drop("frame too long")
            else:
                try:
                    frames.append(decode(self.buf))
                except ValueError as exc:
                    self._drop(str(exc))
            self.buf = bytearray()
        return frames

    def _drop(self, why: str) -> None:
        self.bad += 1
        self.last_error = why
