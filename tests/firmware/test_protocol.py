"""The wire codec: round trips, and rejection of anything off the specification."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.errors import ProtocolError
from firmware.uplink import protocol
from firmware.uplink.protocol import (
    Ack,
    Alarm,
    Command,
    CommandOp,
    CommandResult,
    CommandStatus,
    EventKind,
    Fault,
    FaultCode,
    Heartbeat,
    Phase,
    Restore,
)

T = 1_764_019_817


def alarm(**kw: object) -> Alarm:
    base: dict[str, object] = dict(
        msg_id=7,
        time_s=T,
        alarm_id=3,
        phase=Phase.OPEN,
        event=EventKind.FIRE,
        priority=1,
        zone="lot",
        rule="fire-in-lot",
        max_temp_dc=1402,
        box=(40, 60, 52, 71),
        actions=(("floodlight", 120), ("siren", 60)),
    )
    base.update(kw)
    return Alarm(**base)  # type: ignore[arg-type]


EXAMPLES: list[protocol.Message] = [
    alarm(),
    alarm(rule=None, actions=(), suppressed=(("siren", "quiet hours 22:00-07:00"),), test=True),
    alarm(phase=Phase.CLOSE, msg_id=9, time_s=T + 283, started_s=T, actions=()),
    Heartbeat(
        msg_id=1000,
        time_s=T,
        next_due_s=60,
        reporting_s=180,
        queued=0,
        rssi_dbm=-71,
        drift_s=-1,
        mode=protocol.MODE_ARMED,
        faults=0,
    ),
    Fault(
        msg_id=11,
        time_s=T,
        fault_id=2,
        code=FaultCode.ACTUATOR,
        subject="siren",
        detail="Modbus timeout",
    ),
    Restore(msg_id=12, time_s=T, fault_id=2, code=FaultCode.ACTUATOR, subject="siren"),
    CommandResult(
        msg_id=13, time_s=T, command_id=5, status=CommandStatus.DONE, detail="floodlight 120 s"
    ),
    Ack(
        msg_id=7,
        time_s=T + 12,
        commands=(
            Command(5, CommandOp.TRIGGER, 600, "fire"),
            Command(6, CommandOp.SILENCE, 600),
        ),
    ),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: protocol.Message) -> None:
    raw = protocol.encode(msg)
    assert protocol.decode(raw) == msg
    assert protocol.encode(protocol.decode(raw)) == raw


def test_unit_identity_is_not_on_the_wire_but_set_on_decode() -> None:
    raw = protocol.encode(alarm(unit_id="pole-0001"))
    assert b"pole-0001" not in raw
    decoded = protocol.decode(raw, unit_id="pole-0002")
    assert isinstance(decoded, Alarm)
    assert decoded.unit_id == "pole-0002" and decoded.ref == "pole-0002/3"


def test_open_says_its_start_once() -> None:
    data = cbor2.loads(protocol.encode(alarm(rule=None, actions=(), box=None, max_temp_dc=None)))
    assert sorted(data) == [0, 1, 2, 3, 4, 6, 7, 8]  # an open's phase is the default
    closing = protocol.decode(protocol.encode(EXAMPLES[2]))
    assert isinstance(closing, Alarm) and closing.started_s == T


def test_typical_sizes_fit_their_budgets() -> None:
    typical = alarm(rule=None, actions=())
    assert len(protocol.encode(typical)) <= 48
    assert len(protocol.encode(EXAMPLES[3])) <= 36
    assert len(protocol.encode(EXAMPLES[-1])) <= 48


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
        ({"k7": 0}, "key 7 (priority): expected an unsigned integer 1..9"),
        ({"k7": True}, "key 7 (priority)"),
        ({"k6": 77}, "key 6 (event): unknown EventKind code 77"),
        ({"k8": ""}, "key 8 (zone): expected text"),
        ({"k4": None}, "key 4 (alarm_id) is missing"),
        ({"k99": 1}, "unknown key(s) [99]"),
        ({"k11": [5, 5, 1, 1]}, "box corners out of order"),
        ({"k12": [["siren"]]}, "expected [output, seconds]"),
        ({"k15": False}, "key 15 (test): expected true"),
        ({"k2": -1}, "key 2 (msg_id)"),
    ],
)
def test_off_spec_messages_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(raw_with(**changes))
    assert message in str(err.value)


def test_bad_commands_in_an_ack_are_rejected() -> None:
    good = cbor2.loads(protocol.encode(EXAMPLES[-1]))
    for bad in ([[1, 99, 5]], [[1, 1]], [[1, 1, 5, ""]], [[1, 1, 5, "x", 3]], [[1]] * 9):
        with pytest.raises(ProtocolError, match="commands"):
            protocol.decode(cbor2.dumps({**good, 6: bad}))


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
@given(st.sampled_from(EXAMPLES), st.dictionaries(st.integers(-2, 60), VALUES, max_size=6))
def test_decoder_on_mutated_valid_messages(
    base: protocol.Message, mutations: dict[int, object]
) -> None:
    data = {**cbor2.loads(protocol.encode(base)), **mutations}
    try:
        msg = protocol.decode(cbor2.dumps(data))
    except ProtocolError:
        return
    assert protocol.decode(protocol.encode(msg)) == msg
