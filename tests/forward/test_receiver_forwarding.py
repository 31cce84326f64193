"""Through the whole receiver: a unit's alarms over CoAP+OSCORE reach pysiaalarm by DC-09, and
``/metrics`` tells the store's numbers in a form Prometheus's own parser reads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from firmware.config.site import ReceiverEndpoint
from firmware.uplink import protocol
from firmware.uplink.client import UplinkClient
from host_tools.forward.config import ForwardConfig
from host_tools.provision.oscore import provision_oscore
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.metrics import add_metrics_route
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from tests.forward.forward_helpers import SiaPeer, dc09_target, until

UNIT = "pole-0001"


@pytest.fixture
async def receiver(tmp_path: Path, peer: SiaPeer) -> AsyncIterator[Receiver]:
    provision_oscore(UNIT, tmp_path / "unit", tmp_path / "rx")
    forward = ForwardConfig(dc09=[dc09_target(peer.port)])
    rx = Receiver(
        tmp_path / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None, forward=forward
    )
    await rx.start()
    yield rx
    await rx.stop()


async def send(rx: Receiver, tmp_path: Path, *alarms: protocol.Alarm) -> None:
    client = UplinkClient(
        ReceiverEndpoint(host="127.0.0.1", port=rx.coap.port), tmp_path / "unit", speed=20.0
    )
    try:
        for alarm in alarms:
            ack = await client.send(protocol.encode(alarm))
            assert ack.status == protocol.AckStatus.STORED
    finally:
        await client.close()


def alarm(msg_id: int, alarm_id: int, phase: protocol.Phase) -> protocol.Alarm:
    return protocol.Alarm(
        msg_id=msg_id,
        time_s=int(time.time()),
        alarm_id=alarm_id,
        phase=phase,
        event=protocol.EventKind.PERSON,
        zone="yard",
    )


async def scrape(rx: Receiver) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    app = web.Application()
    add_metrics_route(app, rx)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_unit_alarms_reach_the_arc_and_metrics_match_the_store(
    receiver: Receiver, peer: SiaPeer, tmp_path: Path
) -> None:
    await peer.start()
    await send(
        receiver,
        tmp_path,
        alarm(1, 1, protocol.Phase.OPEN),
        alarm(2, 1, protocol.Phase.UPDATE),
        alarm(3, 1, protocol.Phase.CLOSE),
    )
    await until(lambda: len(peer.got) == 2, what="the opening and closing at the ARC")
    assert [(g.code, g.text) for g in peer.got] == [
        ("BA", f"{UNIT}/1 person yard"),
        ("BR", f"{UNIT}/1 person yard"),
    ]

    await peer.stop()
    await send(receiver, tmp_path, alarm(4, 2, protocol.Phase.OPEN))  # waits in the queue
    forwarder = receiver.forwarder
    assert forwarder is not None
    metrics = await scrape(receiver)
    store = receiver.require_store()
    assert metrics[("polewatch_alarms", (("state", "new"), ("unit_state", "closed")))] == 1
    assert metrics[("polewatch_alarms", (("state", "new"), ("unit_state", "open")))] == 1
    assert sum(store.alarm_counts().values()) == 2
    assert metrics[("polewatch_units", (("online", "true"),))] == 1
    assert metrics[("polewatch_units", (("online", "false"),))] == 0
    assert metrics[("polewatch_messages_ingested_total", (("kind", "alarm"),))] == 4
    assert metrics[("polewatch_messages_stored", ())] == store.message_count() == 4
    assert metrics[("polewatch_forward_queue_depth", (("target", "arc"),))] == 1
    assert forwarder.depths()[("arc", "queued")] == 1
    assert metrics[("polewatch_forward_delivered_total", (("target", "arc"),))] == 2
    assert metrics[("polewatch_forward_dead_letters", (("target", "arc"),))] == 0

    await peer.start()
    await until(lambda: len(peer.got) == 3, what="the queued alarm once the ARC is back")
    await until(lambda: not forwarder.depths().get(("arc", "queued")))
    metrics = await scrape(receiver)
    assert metrics[("polewatch_forward_queue_depth", (("target", "arc"),))] == 0
    assert metrics[("polewatch_forward_up", (("target", "arc"),))] == 1
