"""DC-09 frames as pysiaalarm parses them, answers as we read them, and the SIA code table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pysiaalarm import SIAAccount
from pysiaalarm.event import NAKEvent, SIAEvent
from pysiaalarm.utils import SIA_CODES, ResponseType

from firmware.errors import ProtocolError
from host_tools.forward import dc09, mapping
from tests.forward.forward_helpers import PEER_KEY

ACCOUNTS = {"AAA": SIAAccount("AAA"), "BBB": SIAAccount("BBB", PEER_KEY)}
KEY = PEER_KEY.encode()


def parse(frame: bytes) -> SIAEvent:
    # pysiaalarm's server strips the line before parsing it.
    return SIAEvent.from_line(frame.decode("ascii").strip(), ACCOUNTS)


def test_crc16_is_crc16_arc() -> None:
    assert dc09.crc16(b"123456789") == 0xBB3D  # the catalogue check value of CRC-16/ARC
    assert dc09.crc16(b"") == 0


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
def test_frame_parses_in_pysiaalarm(key: bytes | None) -> None:
    now = datetime.now(UTC)
    account = "BBB" if key else "AAA"
    event = dc09.Event("FA", "pole-7/3 fire Torget [öst] |x|", area=2)
    frame = dc09.build(event, 42, account, "12", "3", now, key)
    assert frame.startswith(b"\n") and frame.endswith(b"\r")
    parsed = parse(frame)
    assert parsed.valid_message  # CRC
    # The length is hex over the same span as the CRC (pysiaalarm's valid_length reads it as
    # decimal, so it is checked here instead).
    assert int(frame[5:9], 16) == len(frame[9:-1])
    assert parsed.encrypted is bool(key)
    assert (parsed.code, parsed.ri, parsed.account) == ("FA", "2", account)
    assert (parsed.receiver, parsed.line, parsed.sequence) == ("R12", "L3", "0042")
    assert parsed.timestamp == now.replace(microsecond=0)
    assert parsed.extended_data is not None
    assert parsed.extended_data[0].value == "pole-7/3 fire Torget ost x"
    assert parsed.response == ResponseType.ACK
    answer = dc09.parse_response(parsed.create_response(), key)
    assert (answer.kind, answer.sequence, answer.encrypted) == ("ACK", 42, bool(key))


def test_null_message_is_a_link_test() -> None:
    frame = dc09.build(None, 7, "AAA", "0", "0", datetime.now(UTC))
    parsed = parse(frame)
    assert parsed.code == "RP" and parsed.response == ResponseType.ACK


def test_encryption_pads_to_blocks_with_random_padding() -> None:
    a = dc09.encrypt(KEY, "#AAA|NFA]_12:00:00,01-01-2026")
    b = dc09.encrypt(KEY, "#AAA|NFA]_12:00:00,01-01-2026")
    assert a != b and len(a) % 32 == 0
    plain = dc09.decrypt(KEY, a)
    assert plain.endswith("|#AAA|NFA]_12:00:00,01-01-2026")


def test_nak_carries_the_receivers_time() -> None:
    parsed = parse(
        dc09.build(dc09.Event("FA"), 1, "AAA", "1", "1", datetime(2020, 1, 1, tzinfo=UTC))
    )
    assert parsed.response == ResponseType.NAK  # far outside pysiaalarm's time band
    answer = dc09.parse_response(parsed.create_response())
    assert answer.kind == "NAK" and answer.time is not None
    assert abs((answer.time - datetime.now(UTC)).total_seconds()) < 5


def test_bare_and_library_naks_are_read() -> None:
    assert dc09.complete(b'"NAK"')
    assert dc09.parse_response(b'"NAK"').kind == "NAK"
    assert dc09.parse_response(NAKEvent().create_response()).kind == "NAK"


def test_duh_for_an_unknown_code() -> None:
    parsed = parse(dc09.build(dc09.Event("QQ"), 5, "AAA", "1", "1", datetime.now(UTC)))
    answer = dc09.parse_response(parsed.create_response())
    assert (answer.kind, answer.sequence) == ("DUH", 5)


def test_a_corrupted_answer_is_refused() -> None:
    good = bytearray(b'\nD0000013"ACK"0001R1L2#AAA[]\r')
    assert dc09.parse_response(bytes(good)).kind == "ACK"
    good[15] = ord("2")  # the sequence number, under the CRC
    with pytest.raises(ProtocolError, match="CRC"):
        dc09.parse_response(bytes(good))
    with pytest.raises(ProtocolError, match="encrypted"):
        dc09.parse_response(b'"*ACK"0001R1L2#AAA[00112233445566778899AABBCCDDEEFF')


@given(st.binary(max_size=300))
def test_any_answer_bytes_parse_or_raise_protocol_error(raw: bytes) -> None:
    try:
        answer = dc09.parse_response(raw, KEY)
    except ProtocolError:
        return
    assert answer.kind in ("ACK", "NAK", "DUH", "RSP")


@given(
    st.text(alphabet=st.characters(codec="ascii"), max_size=40).map(lambda t: '"*ACK"0001#AAA[' + t)
)
def test_encrypted_answers_with_any_text_parse_or_raise(text: str) -> None:
    try:
        answer = dc09.parse_response(text.encode(), KEY)
    except ProtocolError:
        return
    assert answer.kind == "ACK" and answer.encrypted


def test_every_mapped_code_is_a_sia_code() -> None:
    assert mapping.all_codes() <= set(SIA_CODES)


@pytest.mark.parametrize(
    ("event", "phase", "test", "code"),
    [
        ("fire", "open", False, "FA"),
        ("fire", "close", False, "FR"),
        ("fire", "update", False, None),
        ("person", "open", False, "BA"),
        ("person_down", "open", False, "MA"),
        ("gathering", "close", False, "UR"),
        ("tamper", "open", False, "TA"),
        ("sensor_fault", "close", False, "UJ"),
        ("offline", "open", False, "YS"),
        ("offline", "close", False, "YK"),
        ("fault:actuator", "open", False, "YA"),
        ("fault:something_new", "open", False, "YX"),
        ("a_new_kind", "open", False, "UA"),
        ("fire", "open", True, "TX"),
        ("fire", "close", True, None),
    ],
)
def test_mapping(event: str, phase: str, test: bool, code: str | None) -> None:
    assert mapping.sia_code(event, phase, test) == code


def test_sequence_out_of_range_is_refused() -> None:
    with pytest.raises(ProtocolError, match="sequence"):
        dc09.build(dc09.Event("FA"), 10000, "AAA", "0", "0", datetime.now(UTC))
