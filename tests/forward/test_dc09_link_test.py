"""DC-09 link tests (NULL messages) to pysiaalarm's TCP receiver on loopback: sent when the link is
idle, not while alarms flow, never ahead of a queued alarm, and a failed one sets ``up`` to 0.

The forwarder runs on a simulated clock that moves only when a test advances it, so "idle for
``link_test_s``" is exact and no test waits out a real interval.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from pysiaalarm import SIAAccount
from pysiaalarm.event import SIAEvent
from pysiaalarm.utils import MessageTypes, ResponseType

from firmware.clock import SimClock
from firmware.errors import ConfigError
from host_tools.forward import dc09
from host_tools.forward.config import ForwardConfig, load_forward_config
from host_tools.forward.forwarder import Forwarder
from host_tools.forward.sender import Dc09Sender
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.metrics import add_metrics_route
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from tests.forward.forward_helpers import (
    KEY_HEX,
    PEER_KEY,
    PLAIN_ACCOUNT,
    SECRET_ACCOUNT,
    AlarmMaker,
    SiaPeer,
    config,
    dc09_target,
    until,
)

INTERVAL = 10.0  # link_test_s: the smallest the forwarding file allows


@pytest.fixture
def clock() -> SimClock:
    """Simulated time that stands still until a test advances it."""
    return SimClock(time.time(), speed=0)


@pytest.fixture
async def fwd(tmp_path: Path, peer: SiaPeer, clock: SimClock) -> AsyncIterator[Forwarder]:
    """A forwarder to the peer with link tests every INTERVAL (simulated) seconds."""
    f = Forwarder(
        config([dc09_target(peer.port, link_test_s=INTERVAL)]), tmp_path / "fwd.sqlite", clock
    )
    await f.start()
    yield f
    await f.stop()


def sender_of(fwd: Forwarder, name: str = "arc") -> Dc09Sender:
    worker = fwd.workers[name]
    assert isinstance(worker, Dc09Sender)
    return worker


def has(peer: SiaPeer, n: int) -> Callable[[], bool]:
    """Whether the peer has taken ``n`` messages so far."""
    return lambda: len(peer.got) == n


def link_tests_at(peer: SiaPeer) -> list[tuple[str, int, bool]]:
    """The link tests pysiaalarm took (it reports a NULL message as code RP): account, seq, enc."""
    return [(g.account, g.sequence, g.encrypted) for g in peer.got if g.code == "RP"]


@pytest.mark.parametrize("key", [None, PEER_KEY.encode()], ids=["plain", "aes"])
def test_null_frame_parses_and_is_acked_with_its_sequence(key: bytes | None) -> None:
    account = SECRET_ACCOUNT if key else PLAIN_ACCOUNT
    frame = dc09.link_test(account, "1", "2", datetime.now(UTC), key)
    accounts = {
        PLAIN_ACCOUNT: SIAAccount(PLAIN_ACCOUNT),
        SECRET_ACCOUNT: SIAAccount(SECRET_ACCOUNT, PEER_KEY),
    }
    event = SIAEvent.from_line(frame.decode("ascii").strip(), accounts)
    assert (event.message_type, event.sequence, event.code) == (MessageTypes.NULL, "0000", "RP")
    assert event.encrypted is bool(key) and event.response == ResponseType.ACK
    answer = dc09.parse_response(event.create_response(), key)
    assert (answer.kind, answer.sequence) == ("ACK", dc09.NULL_SEQUENCE)


async def test_idle_link_is_tested_every_interval_plain_and_encrypted(
    peer: SiaPeer, clock: SimClock, tmp_path: Path
) -> None:
    await peer.start()
    plain = dc09_target(peer.port, "plain", link_test_s=INTERVAL)
    secret = dc09_target(
        peer.port, "secret", account=SECRET_ACCOUNT, key=KEY_HEX, link_test_s=INTERVAL
    )
    fwd = Forwarder(config([plain, secret]), tmp_path / "fwd.sqlite", clock)
    await fwd.start()
    try:
        for n in (1, 2, 3):
            clock.advance(INTERVAL)
            await until(has(peer, 2 * n), what=f"link test round {n}")
            assert all(sender_of(fwd, t).link_tests == n for t in ("plain", "secret"))
        assert all(sender_of(fwd, t).up for t in ("plain", "secret"))
        assert fwd.depths() == {}  # link tests are never queued
    finally:
        await fwd.stop()
    expected = {(PLAIN_ACCOUNT, 0, False), (SECRET_ACCOUNT, 0, True)}
    assert set(link_tests_at(peer)) == expected and len(peer.got) == 6
    assert peer.texts() == [""] * 6  # a NULL carries no event and no text


async def test_no_link_tests_while_alarms_flow_within_the_interval(
    fwd: Forwarder, peer: SiaPeer, clock: SimClock, commit: AlarmMaker
) -> None:
    await peer.start()
    for i in range(1, 8):  # 7 alarms 0.4 intervals apart: 2.8 intervals without an idle one
        clock.advance(INTERVAL * 0.4)
        record, msg = commit(i)
        fwd.on_alarm(record, msg)
        await until(has(peer, i), what=f"alarm {i}")
    assert link_tests_at(peer) == [] and sender_of(fwd).link_tests == 0
    assert [g.sequence for g in peer.got] == list(range(1, 8))  # NULLs take no event number
    clock.advance(INTERVAL)  # then idle: a link test
    await until(lambda: len(link_tests_at(peer)) == 1, what="a link test once idle")
    assert link_tests_at(peer) == [(PLAIN_ACCOUNT, 0, False)]


async def test_a_queued_alarm_goes_before_any_link_test(
    fwd: Forwarder, peer: SiaPeer, clock: SimClock, commit: AlarmMaker
) -> None:
    record, msg = commit(1)
    fwd.on_alarm(record, msg)
    sender = sender_of(fwd)
    await until(lambda: sender.failures >= 2, what="failed deliveries while the ARC is down")
    clock.advance(3 * INTERVAL)  # long overdue for a test, but the queue is not empty
    seen = sender.failures
    await until(lambda: sender.failures >= seen + 2, what="more delivery attempts")
    assert sender.link_test_failures == 0 and sender.link_tests == 0
    await peer.start()
    await until(lambda: len(peer.got) == 1, what="the alarm once the ARC is back")
    assert peer.got[0].code == "FA"
    clock.advance(INTERVAL)
    await until(lambda: len(peer.got) == 2, what="the link test after the alarm")
    assert peer.got[1].code == "RP"


async def scrape_up(rx: Receiver) -> dict[str, float]:
    """``polewatch_forward_up`` and ``_failures_total`` of target arc, from ``/metrics``."""
    app = web.Application()
    add_metrics_route(app, rx)
    async with TestClient(TestServer(app)) as client:
        text = await (await client.get("/metrics")).text()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("polewatch_forward_up", "polewatch_forward_failures_total")
        and s.labels == {"target": "arc"}
    }


async def test_failed_link_test_sets_up_to_0_and_a_good_one_back_to_1(
    peer: SiaPeer, clock: SimClock, tmp_path: Path
) -> None:
    forward = ForwardConfig(dc09=[dc09_target(peer.port, link_test_s=INTERVAL)])
    rx = Receiver(
        tmp_path / "r.sqlite",
        Endpoint("127.0.0.1", free_port()),
        None,
        clock=clock,
        forward=forward,
    )
    await rx.start()
    try:
        assert rx.forwarder is not None
        sender = sender_of(rx.forwarder)
        await peer.start()
        clock.advance(INTERVAL)
        await until(lambda: sender.link_tests == 1, what="the first link test")
        assert await scrape_up(rx) == {
            "polewatch_forward_up": 1.0,
            "polewatch_forward_failures_total": 0.0,
        }

        await peer.stop()
        clock.advance(INTERVAL)
        await until(lambda: sender.link_test_failures == 1, what="a failed link test")
        assert sender.up is False and "link test" in (sender.last_error or "")
        assert await scrape_up(rx) == {
            "polewatch_forward_up": 0.0,
            "polewatch_forward_failures_total": 1.0,
        }

        await peer.start()
        clock.advance(INTERVAL)  # the retry after a failure comes within one interval
        await until(lambda: sender.link_tests == 2, what="a link test after the ARC is back")
        assert sender.last_error is None
        metrics = await scrape_up(rx)
        assert metrics["polewatch_forward_up"] == 1.0
    finally:
        await rx.stop()
    assert [g.code for g in peer.got] == ["RP", "RP"]


GOOD = """
[[dc09]]
name = "arc"
host = "arc.example.net"
port = 12000
account = "1234"
"""


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("", 0.0),
        ("link_test_s = 0", 0.0),
        ("link_test_s = 10", 10.0),
        ("link_test_s = 90.5", 90.5),
        ("link_test_s = 86400", 86400.0),
    ],
)
def test_link_test_s_good_values(tmp_path: Path, line: str, value: float) -> None:
    path = tmp_path / "forward.toml"
    path.write_text(GOOD + line + "\n")
    assert load_forward_config(path).dc09[0].link_test_s == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", "must be 0 (no link tests) or 10-86400 seconds (got 5)"),
        ("9.9", "must be 0 (no link tests) or 10-86400 seconds (got 9.9)"),
        ("-60", "must be 0 (no link tests) or 10-86400 seconds (got -60)"),
        ("86401", "must be 0 (no link tests) or 10-86400 seconds (got 86401)"),
        ("nan", "must be 0 (no link tests) or 10-86400 seconds (got nan)"),
        ('"60"', "Input should be a valid number"),
        ("true", "Input should be a valid number"),
    ],
)
def test_bad_link_test_s_names_the_key(tmp_path: Path, value: str, expected: str) -> None:
    path = tmp_path / "forward.toml"
    path.write_text(f"{GOOD}link_test_s = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_forward_config(path)
    assert f"{path}: dc09[0].link_test_s: {expected}" in str(info.value)
