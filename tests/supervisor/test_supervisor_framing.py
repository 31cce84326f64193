"""The link's framing: COBS + CRC-16/CCITT, one module for the Pico and the unit."""

from __future__ import annotations

import binascii
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.hal.supervisor_sim import find_micropython, micropython_env
from firmware.supervisor import framing
from firmware.supervisor import messages as m


@given(st.binary(max_size=300))
def test_crc_is_crc16_ccitt_false(data: bytes) -> None:
    assert framing.crc16(data) == binascii.crc_hqx(data, 0xFFFF)


def test_crc_check_value() -> None:
    assert framing.crc16(b"123456789") == 0x29B1  # the catalogue's check value


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=framing.MAX_PAYLOAD))
def test_frames_round_trip_without_inner_zeros(kind: int, seq: int, payload: bytes) -> None:
    frame = framing.encode(kind, seq, payload)
    assert frame.endswith(b"\x00") and b"\x00" not in frame[:-1]
    assert len(frame) - 1 <= framing.MAX_ENCODED
    assert framing.decode(frame[:-1]) == (kind, seq, payload)


@given(st.binary(min_size=1, max_size=40), st.integers(0, 7))
def test_any_single_bit_flip_is_caught(payload: bytes, bit: int) -> None:
    frame = bytearray(framing.encode(m.SET, 1, payload)[:-1])
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 1 << bit
        if 0 in bad:
            continue  # a new delimiter splits the frame: the decoder drops both halves
        with pytest.raises(ValueError):
            framing.decode(bad)


def test_decoder_resynchronises_after_noise_and_takes_split_input() -> None:
    a, b = framing.encode(m.HEARTBEAT, 1), framing.encode(m.SET, 2, b"\x01\x00")
    stream = b"\x13\x37noise\x00" + a + b"\x05\xff" + b"\x00" + b
    decoder = framing.Decoder()
    frames = [f for i in range(len(stream)) for f in decoder.feed(stream[i : i + 1])]
    assert frames == [(m.HEARTBEAT, 1, b""), (m.SET, 2, b"\x01\x00")]
    assert decoder.bad == 2


def test_overlong_frames_are_dropped() -> None:
    decoder = framing.Decoder()
    assert decoder.feed(b"\x01" * 500 + b"\x00" + framing.encode(m.HEARTBEAT, 3)) == [
        (m.HEARTBEAT, 3, b"")
    ]
    assert decoder.bad == 1
    assert decoder.last_error == "frame too long"
    with pytest.raises(ValueError):
        framing.encode(m.SET, 1, bytes(framing.MAX_PAYLOAD + 1))


def test_micropython_and_cpython_frame_alike() -> None:
    micropython = find_micropython()
    if micropython is None:
        pytest.skip("the MicroPython unix port is not installed")
    payload = bytes(range(0, 256, 3))[: framing.MAX_PAYLOAD]
    code = (
        "import framing, messages\n"
        f"print(framing.encode(0x83, 250, {payload!r}).hex())\n"
        "print(messages.pack_config(15000, [300, 5, 900]).hex())\n"
        "print(messages.pack_status(3, 5, True, 12345, 2, 7, 1).hex())\n"
    )
    run = subprocess.run(
        [micropython, "-c", code],
        capture_output=True,
        text=True,
        env=micropython_env(),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [
        framing.encode(0x83, 250, payload).hex(),
        m.pack_config(15000, [300, 5, 900]).hex(),
        m.pack_status(3, 5, True, 12345, 2, 7, 1).hex(),
    ]
    assert m.unpack_config(m.pack_config(15000, [300, 5, 900])) == (15000, [300, 5, 900])
