"""The wire codec: round trips, and rejection of anything off the specification."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.errors import ProtocolError
from firmware.uplink import protocol
from firmware.uplink.protocol import Ack, Alarm, EventKind, Phase


def alarm(**kw: object) -> Alarm:
    base: dict[str, object] = dict(
        unit_id="pole-0001",
        msg_id=7,
        time_ms=1_764_018_000_123,
        alarm_id=3,
        phase=Phase.OPEN,
        event=EventKind.FIRE,
        priority=1,
        zone="lot",
        rule="fire-in-lot",
        max_temp_dc=1402,
        box=(40, 60, 52, 71),
        actions=(("floodlight", 120), ("siren", 60)),
        started_ms=1_764_018_000_000,
    )
    base.update(kw)
    return Alarm(**base)  # type: ignore[arg-type]


def test_alarm_round_trip_and_size() -> None:
    msg = alarm()
    raw = protocol.encode(msg)
    assert protocol.decode(raw) == msg
    assert len(raw) <= 128  # compact: an LTE alarm fits easily in one datagram


def test_minimal_alarm_omits_optional_keys() -> None:
    msg = alarm(rule=None, max_temp_dc=None, box=None, actions=(), started_ms=None)
    data = cbor2.loads(protocol.encode(msg))
    assert sorted(data) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert protocol.decode(protocol.encode(msg)) == msg


def test_ack_round_trip() -> None:
    ack = Ack(unit_id="pole-0001", msg_id=7, time_ms=1, status=protocol.AckStatus.DUPLICATE)
    assert protocol.decode(protocol.encode(ack)) == ack


def raw_with(**changes: object) -> bytes:
    data = cbor2.loads(protocol.encode(alarm()))
    for key, value in changes.items():
        k = int(key.lstrip("k"))
        if value is None:
            del data[k]
        else:
            data[k] = value
    return cbor2.dumps(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"k0": 2}, "key 0 (version): expected 1"),
        ({"k1": 99}, "key 1 (kind): unknown message kind 99"),
        ({"k13": 0}, "key 13 (priority): expected an unsigned integer 1..9"),
        ({"k13": True}, "key 13 (priority)"),
        ({"k12": 77}, "key 12 (event): unknown EventKind code 77"),
        ({"k14": ""}, "key 14 (zone): expected text"),
        ({"k10": None}, "key 10 (alarm_id) is missing"),
        ({"k99": 1}, "unknown key(s) [99]"),
        ({"k17": [5, 5, 1, 1]}, "box corners out of order"),
        ({"k18": [["siren"]]}, "expected [output, seconds]"),
        ({"k3": -1}, "key 3 (msg_id)"),
    ],
)
def test_off_spec_messages_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(raw_with(**changes))
    assert message in str(err.value)


def test_not_cbor_not_a_map_and_too_big() -> None:
    with pytest.raises(ProtocolError, match="not well-formed CBOR"):
        protocol.decode(b"\xff\x00")
    with pytest.raises(ProtocolError, match="expected a CBOR map"):
        protocol.decode(cbor2.dumps([1, 2]))
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.decode(b"\x00" * 2000)


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(ProtocolError):
        protocol.encode(alarm(priority=12))


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300))
def test_decoder_never_fails_other_than_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        protocol.decode(data)


VALUES = st.one_of(
    st.integers(-(2**65), 2**65),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(st.integers(0, 10), max_size=5),
    st.floats(),
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.integers(-2, 30), VALUES, max_size=6))
def test_decoder_on_mutated_valid_messages(mutations: dict[int, object]) -> None:
    data = {**cbor2.loads(protocol.encode(alarm())), **mutations}
    try:
        msg = protocol.decode(cbor2.dumps(data))
    except ProtocolError:
        return
    assert protocol.decode(protocol.encode(msg)) == msg
