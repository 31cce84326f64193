"""Config updates from the receiver: a bad config is refused and the unit keeps running on its
own; a good one is fetched, checked against the board, stored, and the unit restarts onto it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from firmware.config.load import load_board
from firmware.config.updates import STORED, effective_site
from firmware.errors import ConfigError
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.runner import build_sim_unit
from sim.scenario import resolve
from tests.host_tools.console_helpers import console_session

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Until = Callable[..., Awaitable[None]]

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "sim" / "sites" / "parking_lot.toml"
BOARD = REPO / "board_configs" / "sim.toml"


async def test_bad_config_refused_good_config_applied_by_restart(
    tmp_path: Path, until: Until
) -> None:
    receiver = Receiver(tmp_path / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    rx = ("127.0.0.1", receiver.coap.port)
    unit = build_sim_unit(resolve("quiet_lot"), tmp_path / "unit", 20.0, rx, None, tmp_path)
    store = receiver.require_store()
    run = asyncio.create_task(unit.runtime.run(stop_at=unit.start + 3600))
    text = SITE.read_text()
    try:
        await until(lambda: bool(store.units()))
        # Refused by the receiver: another unit's id, an unknown key.
        with pytest.raises(ConfigError, match=r"unit\.id: is 'pole-0001', not 'pole-0002'"):
            receiver.update_config("pole-0002", text)
        with pytest.raises(ConfigError, match=r"zones\.lot\.colour: unknown key"):
            bad = text.replace('sensor = "thermal"', 'sensor = "thermal"\ncolour = 1')
            receiver.update_config("pole-0001", bad)
        # Valid as a site config, but names an output this unit's board does not have: the
        # unit refuses it, reports a config fault, and keeps running on its own config.
        horn = text.replace("[deterrence.limits.siren]", "[deterrence.limits.horn]").replace(
            'output = "siren"', 'output = "horn"'
        )
        receiver.update_config("pole-0001", horn)
        await until(lambda: store.commands()[0].state == "rejected")
        detail = store.commands()[0].detail or ""
        assert detail.startswith("site config v1: deterrence.limits.horn: the board has no output")
        await until(lambda: any(a.event == "fault:config" for a in store.alarms()))
        assert not run.done() and not unit.runtime.restart_requested
        assert not (tmp_path / "unit" / STORED).exists()
        # A good one: the floodlight's limit lowered to 90 s.
        good = text.replace("max_on_s = 120", "max_on_s = 90")
        assert good != text
        receiver.update_config("pole-0001", good)
        await until(lambda: store.commands()[0].state == "done")
        assert "config v2 stored; restarting to apply it" in (store.commands()[0].detail or "")
        await asyncio.wait_for(run, 30)  # the unit stops, to be restarted
        assert unit.runtime.restart_requested
    finally:
        if not run.done():
            unit.runtime.request_stop()
            await run
        await receiver.stop()
    # On the restart it runs on the stored config.
    board = load_board(BOARD)
    site, path, problem = effective_site(board, SITE, tmp_path / "unit")
    assert path == tmp_path / "unit" / STORED and problem is None
    assert site.deterrence.limits["floodlight"].max_on_s == 90


def test_a_broken_stored_config_falls_back_to_the_provisioned_one(tmp_path: Path) -> None:
    (tmp_path / STORED).write_text("[unit\n")
    site, path, problem = effective_site(load_board(BOARD), SITE, tmp_path)
    assert path == SITE and site.unit.id == "pole-0001"
    assert problem is not None and "not valid TOML" in problem


async def test_console_endpoint_checks_and_queues_a_config(tmp_path: Path, until: Until) -> None:
    import socket

    import aiohttp

    from firmware.uplink import protocol

    receiver = Receiver(
        tmp_path / "r.sqlite",
        Endpoint("127.0.0.1", free_port()),
        Endpoint("127.0.0.1", free_port(socket.SOCK_STREAM)),
    )
    await receiver.start()
    try:
        store = receiver.require_store()
        store.ingest(protocol.Heartbeat(msg_id=1, time_s=1, unit_id="pole-0001"), 1.0)
        url = f"{receiver.console_url}api/units/pole-0001/config"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            csrf = await console_session(http, receiver.console_url or "", store, "technician")
            headers = {"Content-Type": "application/toml", "X-CSRF-Token": csrf}
            async with http.post(url, data="[unit\n", headers=headers) as resp:
                assert resp.status == 400
                assert "not valid TOML" in (await resp.json())["problems"][0]
            async with http.post(url, data=SITE.read_text(), headers=headers) as resp:
                assert resp.status == 201
                body = await resp.json()
                assert (body["op"], body["arg"], body["state"]) == ("config_update", "1", "queued")
            async with http.post(
                url.replace("0001", "0099"), data=SITE.read_text(), headers=headers
            ) as resp:
                assert resp.status == 404
        assert store.config("pole-0001", 1) == SITE.read_text()
    finally:
        await receiver.stop()
