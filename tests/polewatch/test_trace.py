"""One alarm can be followed by its reference through every stage's log lines, to the console."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from pathlib import Path

import aiohttp
import pytest

from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.demo import play
from polewatch.netutil import free_port
from tests.host_tools.console_helpers import console_session

REPO = Path(__file__).resolve().parents[2]


async def test_alarm_followed_from_frame_to_console(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    receiver = Receiver(
        tmp_path / "r.sqlite",
        Endpoint("127.0.0.1", free_port()),
        Endpoint("127.0.0.1", free_port(socket.SOCK_STREAM)),
    )
    await receiver.start()
    seen: list[dict[str, object]] = []
    try:
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        await console_session(http, receiver.console_url or "", receiver.require_store())
        async with http, http.get(f"{receiver.console_url}api/events") as stream:

            async def listen() -> None:
                async for line in stream.content:
                    if line.startswith(b"data:"):
                        seen.append(json.loads(line[5:]))

            listener = asyncio.create_task(listen())
            result = await play(
                REPO / "sim" / "scenarios" / "car_fire.toml",
                tmp_path,
                0.0,
                receiver,
                quiet=True,
            )
            for _ in range(50):
                if seen:
                    break
                await asyncio.sleep(0.05)
            listener.cancel()
    finally:
        await receiver.stop()
    assert result.problems == []
    ref = result.alarms[0].ref
    lines = [r.getMessage() for r in caplog.records]
    mine = [line for line in lines if line.startswith(f"{ref}:")]
    rule = next(line for line in mine if "rule fire-in-lot matched" in line)
    frame_no = re.search(r"frame (\d+)", rule)
    spot = re.search(r"hot spot (\d+)", rule)
    assert frame_no and spot
    # frame -> detection: the detector confirmed that hot spot, at or before that frame
    assert any(f"hot spot {spot.group(1)} confirmed" in line for line in lines)
    stages = [
        "committed to outbox as msg",
        "output floodlight ON",
        "output siren ON",
        "output siren OFF (max on-time reached)",
        "output floodlight OFF (max on-time reached)",
        "acknowledged by receiver",
        "committed to receiver database as alarm",
        "pushed to 1 console client",
    ]
    for stage in stages:
        assert any(stage in line for line in mine), f"no log line '{ref}: ...{stage}...'"
    assert seen and any(isinstance(a, dict) and a.get("ref") == ref for a in seen)
