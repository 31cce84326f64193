"""The supervisor firmware under the MicroPython unix port, on virtual time, with a fake machine."""

from __future__ import annotations

from typing import Any

from firmware.supervisor import framing
from firmware.supervisor import messages as m

OUTS = [2, 3, 4, 5]  # default output pins, channel 0 first
POWER, TAMPER, SUPPLY = 15, 16, 26


def heartbeats(s: Any, count: int, every: int = 400, seq: int = 100) -> Any:
    """Send ``count`` heartbeats ``every`` ms apart."""
    for i in range(count):
        s.send(m.HEARTBEAT, (seq + i) & 0xFF).step(every)
    return s


def events(frames: list[tuple[int, int, bytes]], which: int) -> list[int]:
    """The arguments of the events of one kind among sent frames."""
    return [p[1] for kind, _, p in frames if kind == m.EVENT and p[0] == which]


def reply(frames: list[tuple[int, int, bytes]], seq: int) -> tuple[int, bytes]:
    """The answer (type, payload) to request ``seq``."""
    found = [(kind, p) for kind, s, p in frames if s == seq and kind in (m.STATUS, m.NAK)]
    assert len(found) == 1, frames
    return found[0]


def test_heartbeat_loss_switches_outputs_off_and_power_cycles(scenario: Any) -> None:
    s = scenario().send(m.CONFIG, 1, m.pack_config(1000, [])).send(m.HEARTBEAT, 2).step(20)
    s.send(m.SET, 3, bytes([0, 1])).send(m.SET, 4, bytes([2, 1])).step(20)
    heartbeats(s, 4).dump()  # alive
    s.step(3000).dump()  # heartbeats stopped
    alive, lost = s.run()

    assert alive.state == m.RUNNING
    assert [alive.pins[p] for p in OUTS] == [1, 0, 1, 0]
    assert alive.pins[POWER] == 0
    assert reply(alive.frames, 3)[0] == m.STATUS
    assert m.unpack_status(reply(alive.frames, 4)[1])[1] == 0b101  # outputs bitmask

    assert [lost.pins[p] for p in OUTS] == [0, 0, 0, 0]
    assert events(lost.frames, m.UNIT_LOST) == [1]
    last_heartbeat = alive.t - 400
    off = {p: t for t, p, v in lost.changes if p in OUTS and v == 0}
    cuts = [t for t, p, v in lost.changes if p == POWER and v == 1]
    restores = [t for t, p, v in lost.changes if p == POWER and v == 0]
    # Outputs off and power cut together, one heartbeat timeout after the last heartbeat.
    assert set(off) == {2, 4}
    assert cuts == [off[2]] == [off[4]]
    assert 1000 <= cuts[0] - last_heartbeat <= 1020
    assert restores and 500 <= restores[0] - cuts[0] <= 520  # the power-off time
    assert lost.state == m.WAITING


def test_power_cycles_back_off_then_give_up_until_heartbeats_return(scenario: Any) -> None:
    s = scenario().step(8900).dump().step(3100).dump()  # the unit never speaks
    s.send(m.SET, 1, bytes([0, 1])).step(20).dump()
    s.send(m.HEARTBEAT, 2).step(20).send(m.SET, 3, bytes([0, 1])).step(20).dump()
    silent, gave_up, refused, back = s.run()

    cuts = [t for t, p, v in silent.changes if p == POWER and v == 1]
    restores = [t for t, p, v in silent.changes if p == POWER and v == 0]
    assert len(cuts) == len(restores) == 2  # max_attempts
    assert 2000 <= cuts[0] <= 2020  # boot grace
    waits = [cuts[1] - restores[0]]
    assert 2000 <= waits[0] <= 2020
    # After the second cycle it waits twice as long (4 s, to about 9 s), then gives up.
    assert events(silent.frames, m.UNIT_LOST) == [1, 2]
    assert silent.state == m.WAITING
    assert events(gave_up.frames, m.GIVE_UP) == [2]
    assert gave_up.state == m.GAVE_UP
    assert gave_up.changes == []  # no third cut
    assert gave_up.pins[POWER] == 0

    kind, payload = reply(refused.frames, 1)
    assert (kind, payload) == (m.NAK, bytes([m.REFUSED]))
    assert refused.pins[OUTS[0]] == 0

    assert events(back.frames, m.UNIT_BACK) == [0]
    assert back.state == m.RUNNING
    assert back.pins[OUTS[0]] == 1


def test_maximum_on_time_is_enforced(scenario: Any) -> None:
    s = scenario().send(m.CONFIG, 1, m.pack_config(1000, [2, 60])).send(m.HEARTBEAT, 2).step(20)
    s.send(m.SET, 3, bytes([0, 1])).send(m.SET, 4, bytes([1, 1])).send(m.SET, 5, bytes([2, 1]))
    s.step(20)
    heartbeats(s, 5)  # 2 s: channel 2 is switched on again, which must not extend its time
    s.send(m.SET, 6, bytes([2, 1]))
    heartbeats(s, 10, seq=110).dump()
    (d,) = s.run()

    on = {p: t for t, p, v in d.changes if v == 1 and p in OUTS}
    off = {p: t for t, p, v in d.changes if v == 0 and p in OUTS}
    assert 2000 <= off[OUTS[0]] - on[OUTS[0]] <= 2020  # its CONFIG limit
    assert 5000 <= off[OUTS[1]] - on[OUTS[1]] <= 5020  # asked 60 s, clamped to the hard 5 s
    assert 3000 <= off[OUTS[2]] - on[OUTS[2]] <= 3020  # the default, not restarted
    assert sorted(events(d.frames, m.CUTOFF)) == [0, 1, 2]
    assert d.state == m.RUNNING  # the unit is fine; only the outputs were cut


def test_tamper_switch_and_supply_voltage_are_reported(scenario: Any) -> None:
    s = scenario().pin(TAMPER, 0).adc(SUPPLY, 20000).step(100).dump()  # door shut
    s.pin(TAMPER, 1).step(20).pin(TAMPER, 0).step(100).dump()  # a 20 ms bounce: no change
    s.pin(TAMPER, 1).step(100).send(m.GET_STATUS, 7).step(20).dump()  # door opened
    shut, bounce, opened = s.run()

    assert events(shut.frames, m.TAMPER) == [0]
    assert events(bounce.frames, m.TAMPER) == []
    assert events(opened.frames, m.TAMPER) == [1]
    state, _, tamper, supply_mv, *_ = m.unpack_status(reply(opened.frames, 7)[1])
    assert tamper == 1
    assert supply_mv == int(20000 * 11.0 * 3300 / 65535)
    assert state == m.STARTING


def test_frames_with_a_bad_crc_are_rejected(scenario: Any) -> None:
    good = framing.encode(m.HEARTBEAT, 1)
    s = scenario().send(m.CONFIG, 1, m.pack_config(1000, [])).raw(good).step(20)
    corrupt = bytearray(framing.encode(m.SET, 2, bytes([0, 1])))
    corrupt[-2] ^= 0x01  # last CRC byte (still not zero, so the frame stays whole)
    s.raw(bytes(corrupt)).step(20).raw(b"\x07\x41\x42\x00").step(20).dump()
    s.send(m.SET, 3, bytes([1, 1])).step(20).dump()
    rejected, accepted = s.run()

    assert rejected.bad == 2
    answers = [seq for kind, seq, _ in rejected.frames if kind != m.EVENT]
    assert answers == [1, 1]  # CONFIG and HEARTBEAT answered; nothing for the corrupt frame
    assert rejected.pins[OUTS[0]] == 0
    assert accepted.pins[OUTS[1]] == 1  # in step again at the next delimiter
    assert m.unpack_status(reply(accepted.frames, 3)[1])[5] == 2  # bad-frame count reported


def test_bad_requests_get_a_nak(scenario: Any) -> None:
    s = scenario().send(m.HEARTBEAT, 1).step(20)
    s.send(m.SET, 2, bytes([9, 1])).send(m.SET, 3, bytes([0])).send(0x55, 4).step(20).dump()
    (d,) = s.run()
    assert reply(d.frames, 2) == (m.NAK, bytes([m.BAD_CHANNEL]))
    assert reply(d.frames, 3) == (m.NAK, bytes([m.BAD_LENGTH]))
    assert reply(d.frames, 4) == (m.NAK, bytes([m.UNKNOWN_TYPE]))
