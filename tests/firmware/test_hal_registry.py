"""The backend registry opens what the board config names; sim backends record their history."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.clock import SimClock
from firmware.config.board import AudioSim, ModemSim, VisibleSim
from firmware.config.load import load_board
from firmware.errors import ActuatorFault, BackendNotFound, HardwareError
from firmware.hal import registry
from firmware.hal.base import ThermalFrame
from firmware.hal.registry import HalContext
from firmware.hal.sim import SimAudioPlayer, SimModem, SimOutput, SimThermalCamera
from firmware.runtime import open_devices
from sim.sensors import sensor_for
from sim.world import ParkingLotWorld, WorldSpec

REPO = Path(__file__).resolve().parents[2]


def sim_ctx(clock: SimClock) -> HalContext:
    return HalContext(
        clock=clock,
        scene=ParkingLotWorld(WorldSpec(), 160, 120, 1),
        sensor_factory=sensor_for,
        sim_start=clock.start,
        seed=1,
    )


def test_sim_board_opens_sim_backends_and_outputs_start_off() -> None:
    clock = SimClock(start=1000.0, speed=0)
    devices = open_devices(load_board(REPO / "board_configs" / "sim.toml"), sim_ctx(clock))
    try:
        assert isinstance(devices.thermal, SimThermalCamera)
        assert set(devices.outputs) == {"floodlight", "strobe", "siren"}
        assert all(isinstance(o, SimOutput) and not o.is_on for o in devices.outputs.values())
        assert isinstance(devices.others["audio"], SimAudioPlayer)
        assert isinstance(devices.others["modem"], SimModem)
        frame = devices.thermal.read()
        assert isinstance(frame, ThermalFrame) and frame.data.shape == (120, 160)
        assert abs(frame.t - (1000.0 + 1 / 9)) < 1e-9  # a fast clock moves one frame per read
        assert [(e.what, e.value) for e in devices.thermal.history.snapshot()] == [("frame", 1)]
    finally:
        devices.close()


def test_every_sim_backend_records_a_timestamped_history() -> None:
    clock = SimClock(start=50.0, speed=0)
    ctx = sim_ctx(clock)
    visible = registry.create(
        "visible", "cam", VisibleSim(backend="sim", width=64, height=64, fps=5.0), ctx
    )
    audio = registry.create("audio", "audio", AudioSim(backend="sim"), ctx)
    modem = registry.create("modem", "modem", ModemSim(backend="sim"), ctx)
    visible.read()
    audio.play("leave-the-area.wav")
    clock.advance(2.0)
    audio.stop()
    modem.registered = False
    assert not modem.status().registered
    assert [(e.t, e.what) for e in visible.history.snapshot()] == [(50.2, "frame")]
    assert [(e.t, e.what, e.value) for e in audio.history.snapshot()] == [
        (50.2, "play", "leave-the-area.wav"),
        (52.2, "stop", "leave-the-area.wav"),
    ]
    assert [(e.t, e.what) for e in modem.history.snapshot()] == [(52.2, "status")]


def test_unplugged_camera_and_broken_output_raise_project_errors() -> None:
    clock = SimClock(start=0.0, speed=0)
    devices = open_devices(load_board(REPO / "board_configs" / "sim.toml"), sim_ctx(clock))
    try:
        assert isinstance(devices.thermal, SimThermalCamera)
        devices.thermal.unplugged = True
        with pytest.raises(HardwareError, match="unplugged"):
            devices.thermal.read()
        siren = devices.outputs["siren"]
        assert isinstance(siren, SimOutput)
        siren.fail = True
        with pytest.raises(ActuatorFault):
            siren.set(True)
    finally:
        devices.close()


def test_unknown_backend_names_what_is_available() -> None:
    with pytest.raises(BackendNotFound, match=r"audio backend 'gramophone' .* available: .*sim"):
        registry.create(
            "audio",
            "audio",
            type("Cfg", (), {"backend": "gramophone"})(),
            HalContext(clock=SimClock(0.0, 0)),
        )
