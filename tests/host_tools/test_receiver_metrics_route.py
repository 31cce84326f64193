"""A running receiver serves its Prometheus metrics on the console's address, without a login."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from firmware.uplink import protocol
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port


async def test_metrics_are_scraped_from_a_running_receiver(tmp_path: Path) -> None:
    receiver = Receiver(
        tmp_path / "r.sqlite",
        Endpoint("127.0.0.1", free_port()),
        Endpoint("127.0.0.1", free_port(socket.SOCK_STREAM)),
    )
    await receiver.start()
    try:
        receiver.require_store().ingest(
            protocol.Heartbeat(msg_id=1, time_s=1, unit_id="pole-0001"), 1.0
        )
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{receiver.console_url}metrics") as resp,
        ):
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            text = await resp.text()
            async with http.get(f"{receiver.console_url}api/alarms") as api:
                assert api.status == 401  # the console's API still needs a login
    finally:
        await receiver.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"polewatch_alarms", "polewatch_units", "polewatch_forward_queue_depth"} <= set(families)
    units = {s.labels["online"]: s.value for s in families["polewatch_units"].samples}
    assert sum(units.values()) == 1
