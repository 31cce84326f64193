"""SIA DC-09 forwarding to pysiaalarm's TCP receiver on loopback: plain and encrypted, with the
receiver stopped, NAKing, restarted mid-stream, answering DUH, and across forwarder restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pysiaalarm import SIAAccount

from firmware.uplink import protocol
from host_tools.forward.forwarder import Forwarder
from host_tools.forward.sender import Dc09Sender
from host_tools.receiver.store import ReceiverStore
from tests.forward.forward_helpers import (
    KEY_HEX,
    PLAIN_ACCOUNT,
    SECRET_ACCOUNT,
    AlarmMaker,
    SiaPeer,
    accounts,
    config,
    dc09_target,
    until,
)


def first_arrivals(texts: list[str]) -> list[str]:
    """Each text once, at its first arrival (a resend after a lost ACK may repeat one)."""
    seen: list[str] = []
    for t in texts:
        if t not in seen:
            seen.append(t)
    return seen


async def offer_alarms(fwd: Forwarder, commit: AlarmMaker, n: int, start: int = 1) -> list[str]:
    """Open ``n`` fire alarms through the forwarder's hook; return the texts the ARC will see."""
    texts = []
    for i in range(start, start + n):
        record, msg = commit(i)
        fwd.on_alarm(record, msg)
        texts.append(f"{record.ref} fire lot-north")
    return texts


async def test_plain_and_encrypted_alarms_are_acked(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    await peer.start()
    plain = dc09_target(peer.port, "plain")
    secret = dc09_target(peer.port, "secret", account=SECRET_ACCOUNT, key=KEY_HEX)
    fwd = Forwarder(config([plain, secret]), tmp_path / "fwd.sqlite")
    await fwd.start()
    try:
        opened, msg = commit(1)
        fwd.on_alarm(opened, msg)
        closed, msg = commit(1, phase=protocol.Phase.CLOSE)
        fwd.on_alarm(closed, msg)
        await until(lambda: len(peer.got) == 4, what="4 events")
        await until(lambda: fwd.depths().get(("plain", "queued"), 0) == 0)
    finally:
        await fwd.stop()
    by_account = {
        acct: [(g.code, g.encrypted, g.text) for g in peer.got if g.account == acct]
        for acct in (PLAIN_ACCOUNT, SECRET_ACCOUNT)
    }
    text = "pole-7/1 fire lot-north"
    assert by_account[PLAIN_ACCOUNT] == [("FA", False, text), ("FR", False, text)]
    assert by_account[SECRET_ACCOUNT] == [("FA", True, text), ("FR", True, text)]
    # Sequence numbers count up per target.
    assert [g.sequence for g in peer.got if g.account == PLAIN_ACCOUNT] == [1, 2]


async def test_updates_are_not_sent_and_person_down_is_medical(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    await peer.start()
    fwd = Forwarder(config([dc09_target(peer.port)]), tmp_path / "fwd.sqlite")
    await fwd.start()
    try:
        for phase in protocol.Phase:
            record, msg = commit(5, phase=phase, event=protocol.EventKind.PERSON_DOWN)
            fwd.on_alarm(record, msg)
        await until(lambda: len(peer.got) == 2)
    finally:
        await fwd.stop()
    assert [g.code for g in peer.got] == ["MA", "MR"]


async def test_stopped_receiver_then_back_gets_everything_once_in_order(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    fwd = Forwarder(config([dc09_target(peer.port)]), tmp_path / "fwd.sqlite")
    await fwd.start()
    try:
        texts = await offer_alarms(fwd, commit, 6)
        worker = fwd.workers["arc"]
        await until(lambda: worker.failures >= 2, what="failed attempts while it is down")
        assert fwd.depths()[("arc", "queued")] == 6
        assert worker.up is False
        await peer.start()
        await until(lambda: len(peer.got) == 6, what="all 6 after the receiver is back")
        await until(lambda: fwd.depths().get(("arc", "queued"), 0) == 0)
    finally:
        await fwd.stop()
    assert peer.texts() == texts
    assert worker.up is True


async def test_receiver_restarted_mid_stream_loses_nothing(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    await peer.start()
    fwd = Forwarder(config([dc09_target(peer.port)]), tmp_path / "fwd.sqlite")
    await fwd.start()
    try:
        texts = await offer_alarms(fwd, commit, 30)
        await until(lambda: len(peer.got) >= 5)
        await peer.stop()
        await until(lambda: fwd.workers["arc"].failures >= 1, what="a failure while down")
        await peer.start()
        await until(lambda: set(peer.texts()) == set(texts), what="all 30")
        await until(lambda: fwd.depths().get(("arc", "queued"), 0) == 0)
    finally:
        await fwd.stop()
    # At least once, in order: only a frame whose ACK was cut off may arrive twice.
    assert first_arrivals(peer.texts()) == texts
    assert len(peer.got) <= len(texts) + 1


async def test_naking_receiver_gets_everything_once_it_accepts(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    """The receiving centre does not know the account yet and NAKs; then it is added."""
    peer.accounts = [SIAAccount(SECRET_ACCOUNT, "0123456789ABCDEF")]
    await peer.start()
    fwd = Forwarder(config([dc09_target(peer.port)]), tmp_path / "fwd.sqlite")
    await fwd.start()
    try:
        texts = await offer_alarms(fwd, commit, 4)
        worker = fwd.workers["arc"]
        await until(lambda: worker.failures >= 3, what="NAKs")
        assert "NAK" in (worker.last_error or "")
        assert peer.got == []
        peer.set_accounts(accounts())
        await until(lambda: len(peer.got) == 4, what="all 4 once accepted")
    finally:
        await fwd.stop()
    assert peer.texts() == texts


async def test_nak_with_the_receivers_time_resynchronises_the_clock(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    """This host's clock is an hour slow: pysiaalarm NAKs with its time, the sender follows it."""
    await peer.start()
    fwd = Forwarder(
        config([dc09_target(peer.port)]), tmp_path / "fwd.sqlite", wall=lambda: time.time() - 3600
    )
    await fwd.start()
    try:
        texts = await offer_alarms(fwd, commit, 3)
        await until(lambda: len(peer.got) == 3, what="the alarms after the resync")
        sender = fwd.workers["arc"]
        assert isinstance(sender, Dc09Sender)
        assert abs(sender.offset_s - 3600) < 5
        assert peer.client is not None and peer.client.counts.error_timestamp >= 1
    finally:
        await fwd.stop()
    assert peer.texts() == texts


async def test_duh_makes_a_dead_letter_and_the_queue_goes_on(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    await peer.start()
    fwd = Forwarder(config([dc09_target(peer.port)]), tmp_path / "fwd.sqlite")
    await fwd.start()
    try:
        queue = fwd.require_queue()
        bad = json.dumps({"code": "QQ", "text": "no such code", "unit": "pole-7"})
        queue.put([("arc", "pole-7/99", bad)], time.time())
        fwd.workers["arc"].wake()
        texts = await offer_alarms(fwd, commit, 2)
        await until(lambda: len(peer.got) == 2, what="the good ones after the DUH")
        dead = queue.dead_letters("arc")
    finally:
        await fwd.stop()
    assert peer.texts() == texts
    assert [(item.ref, "DUH" in why) for item, why in dead] == [("pole-7/99", True)]


async def test_forwarder_restart_with_receiver_down_loses_nothing(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    path = tmp_path / "fwd.sqlite"
    cfg = config([dc09_target(peer.port)])
    first = Forwarder(cfg, path)
    await first.start()
    texts = await offer_alarms(first, commit, 5)
    await first.stop()
    await peer.start()
    second = Forwarder(cfg, path)
    await second.start()
    try:
        await until(lambda: len(peer.got) == 5, what="the queued alarms after the restart")
    finally:
        await second.stop()
    assert peer.texts() == texts


async def test_forwarder_restart_mid_stream_delivers_each_once_in_order(
    peer: SiaPeer, commit: AlarmMaker, tmp_path: Path
) -> None:
    await peer.start()
    path = tmp_path / "fwd.sqlite"
    cfg = config([dc09_target(peer.port)])
    first = Forwarder(cfg, path)
    await first.start()
    texts = await offer_alarms(first, commit, 40)
    await until(lambda: len(peer.got) >= 3)
    await first.stop()  # lets the frame in flight finish: nothing is sent twice
    assert len(peer.got) < 40, "the stop came too late to be mid-stream"
    second = Forwarder(cfg, path)
    await second.start()
    try:
        texts += await offer_alarms(second, commit, 2, start=41)
        await until(lambda: len(peer.got) == 42, what="all 42")
    finally:
        await second.stop()
    assert peer.texts() == texts


async def test_restart_catches_up_what_the_hook_never_saw(
    peer: SiaPeer, commit: AlarmMaker, store: ReceiverStore, tmp_path: Path
) -> None:
    """A crash between the receiver's commit and the forwarder's: the restart queues it."""
    await peer.start()
    path = tmp_path / "fwd.sqlite"
    cfg = config([dc09_target(peer.port)])
    first = Forwarder(cfg, path)
    await first.start(store)
    texts = await offer_alarms(first, commit, 1)
    await until(lambda: len(peer.got) == 1)
    await first.stop()
    commit(2)  # committed by the receiver; the forwarder's hook never ran
    commit(1, phase=protocol.Phase.CLOSE)
    second = Forwarder(cfg, path)
    await second.start(store)
    try:
        await until(lambda: len(peer.got) == 3, what="the caught-up events")
        await second.stop()
        third = Forwarder(cfg, path)  # and nothing is caught up twice
        await third.start(store)
        assert third.depths().get(("arc", "queued"), 0) == 0
        await third.stop()
    finally:
        await second.stop()
    assert [(g.code, g.text) for g in peer.got] == [
        ("FA", texts[0]),
        ("FR", "pole-7/1 fire lot-north"),
        ("FA", "pole-7/2 fire lot-north"),
    ]
