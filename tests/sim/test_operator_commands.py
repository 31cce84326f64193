"""Operator commands from the receiver reach a simulated unit and switch its outputs.

The unit plays the quiet parking lot (nothing happens by itself) at 20x real time; trigger and
silence travel on acknowledgements of its heartbeats, as they would through a carrier NAT.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.hal.sim import SimOutput
from firmware.uplink import protocol
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.runner import build_sim_unit
from sim.scenario import resolve

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Until = Callable[..., Awaitable[None]]

SPEED = 20.0


async def test_trigger_and_silence_switch_the_units_outputs(tmp_path: Path, until: Until) -> None:
    receiver = Receiver(tmp_path / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    unit = build_sim_unit(resolve("quiet_lot"), tmp_path / "unit", SPEED,
                          receiver=("127.0.0.1", receiver.coap.port),
                          receiver_keys=tmp_path)  # fmt: skip
    outputs = unit.runtime.devices.outputs
    flood, siren = outputs["floodlight"], outputs["siren"]
    assert isinstance(flood, SimOutput) and isinstance(siren, SimOutput)
    store = receiver.require_store()
    run = asyncio.create_task(unit.runtime.run(stop_at=unit.start + 3600))
    try:
        await until(lambda: bool(store.units()))
        trigger = receiver.queue_command("pole-0001", protocol.CommandOp.TRIGGER, "fire")
        await until(lambda: flood.is_on)
        await until(lambda: store.commands()[0].state == "done")
        assert store.commands()[0].id == trigger.id
        # 23:00 in Eskilstuna is inside the site's quiet hours: no operator can sound the siren.
        detail = store.commands()[0].detail or ""
        assert "floodlight" in detail and "siren: quiet hours" in detail, detail
        assert not siren.is_on

        silence = receiver.queue_command("pole-0001", protocol.CommandOp.SILENCE)
        await until(lambda: not flood.is_on)
        await until(lambda: store.commands()[0].state == "done")
        assert store.commands()[0].id == silence.id
        assert "floodlight" in (store.commands()[0].detail or "")

        unknown = receiver.queue_command("pole-0001", protocol.CommandOp.TRIGGER, "party")
        await until(lambda: store.commands()[0].state == "rejected")
        assert store.commands()[0].id == unknown.id
        assert "no profile 'party'" in (store.commands()[0].detail or "")
        assert store.alarms() == []  # commands raise no alarms
    finally:
        unit.runtime.request_stop()
        await run
        await receiver.stop()
    # Each switch is in the outputs' recorded history: on by the trigger, off by the silence;
    # the siren never sounded.
    assert [e.what for e in flood.history.snapshot()] == ["on", "off"]
    assert siren.history.snapshot() == []
