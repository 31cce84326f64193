"""Modbus relay outputs against a real pymodbus server: TCP on loopback, RTU on a pty pair."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from firmware.clock import SimClock
from firmware.config.board import BoardConfig, ModbusTcp
from firmware.config.site import DeterrenceConfig, OutputLimits, Profile, ProfileStep
from firmware.errors import ActuatorFault, HardwareError
from firmware.hal import registry
from firmware.hal.base import Output
from firmware.hal.modbus import ModbusOutput
from firmware.hal.registry import HalContext
from firmware.rules.deterrence import Deterrence

DEVICE_ID = 1
COILS = 16


class RelayModule:
    """A Modbus relay module: a pymodbus server on its own event loop in a thread."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, bool]] = []  # (coil, value) of every coil write it took
        self.mute = False  # stop answering (the module hangs)
        self.stick: set[int] = set()  # coils whose relay does not take a write
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._serving: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def device(self) -> SimDevice:
        bits = [SimData(0, count=COILS, values=False, datatype=DataType.BITS)]
        regs = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(DEVICE_ID, simdata=(bits, list(bits), regs, list(regs)), action=self._act)

    async def _act(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        if self.mute:
            await asyncio.sleep(2.0)
        if function_code == 5 and set_values is not None:
            self.writes.append((address, bool(set_values[0])))
            if address in self.stick:
                set_values[0] = not set_values[0]
        return None

    def _run(self, make: Any) -> None:
        async def start() -> None:
            self._server = make()
            self._serving = asyncio.ensure_future(self._server.serve_forever())
            await asyncio.sleep(0.2)

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(5)

    def start_tcp(self, port: int) -> None:
        self._run(lambda: ModbusTcpServer(self.device(), address=("127.0.0.1", port)))

    def start_rtu(self, port: str) -> None:
        self._run(lambda: ModbusSerialServer(self.device(), port=port, baudrate=19200))

    def stop(self) -> None:
        if self._server is not None:
            future: Future[None] = asyncio.run_coroutine_threadsafe(
                self._server.shutdown(), self._loop
            )
            future.result(5)
            self._server = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def board(bus: dict[str, Any]) -> BoardConfig:
    return BoardConfig.model_validate(
        {
            "board": {"name": "t", "platform": "rpi5"},
            "thermal": {
                "backend": "sim",
                "sensor": "mlx90640",
                "width": 32,
                "height": 24,
                "fps": 4.0,
                "radiometric": True,
            },
            "modbus": {"relays": {"device_id": DEVICE_ID, "timeout_s": 0.3, "retries": 1, **bus}},
            "outputs": {
                "floodlight": {"backend": "modbus", "kind": "light", "bus": "relays", "coil": 0},
                "strobe": {"backend": "modbus", "kind": "strobe", "bus": "relays", "coil": 1},
                "siren": {"backend": "modbus", "kind": "siren", "bus": "relays", "coil": 2},
            },
        }
    )


def open_outputs(cfg: BoardConfig, ctx: HalContext) -> dict[str, Output]:
    return {name: registry.create("output", name, out, ctx) for name, out in cfg.outputs.items()}


@pytest.fixture
def module() -> Iterator[RelayModule]:
    relay = RelayModule()
    yield relay
    relay.close()


@pytest.fixture
def tcp(module: RelayModule) -> Iterator[tuple[RelayModule, BoardConfig]]:
    port = free_port()
    module.start_tcp(port)
    yield module, board({"transport": "tcp", "host": "127.0.0.1", "port": port})


def tcp_port(cfg: BoardConfig) -> int:
    bus = cfg.modbus["relays"]
    assert isinstance(bus, ModbusTcp)
    return bus.port


def coils_on_server(port: int) -> list[bool]:
    """Read the module's coils with a client of our own, as a second opinion."""
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    try:
        assert client.connect()  # type: ignore[no-untyped-call]
        return list(client.read_coils(0, count=3, device_id=DEVICE_ID).bits[:3])
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_tcp_coil_writes_read_back_and_outputs_share_one_client(
    tcp: tuple[RelayModule, BoardConfig],
) -> None:
    module, cfg = tcp
    ctx = HalContext(clock=SimClock(0.0, 0))
    outs = open_outputs(cfg, ctx)
    try:
        assert isinstance(outs["siren"], ModbusOutput) and isinstance(outs["strobe"], ModbusOutput)
        assert outs["siren"].bus is outs["strobe"].bus  # one client per bus
        outs["siren"].set(True)
        outs["floodlight"].set(True)
        outs["floodlight"].set(False)
        assert module.writes == [(2, True), (0, True), (0, False)]
        assert outs["siren"].is_on and outs["siren"].read()
        assert coils_on_server(tcp_port(cfg)) == [False, False, True]
    finally:
        for out in outs.values():
            out.close()
    assert module.writes[-3:] == [(0, False), (1, False), (2, False)]  # closing switches off
    assert "modbus_bus:relays" not in ctx.extras


def test_tcp_writes_from_many_threads_are_serialised(
    tcp: tuple[RelayModule, BoardConfig],
) -> None:
    module, cfg = tcp
    outs = open_outputs(cfg, HalContext(clock=SimClock(0.0, 0)))
    try:
        threads = [
            threading.Thread(target=lambda o=out: [o.set(i % 2 == 0) for i in range(20)])
            for out in outs.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(module.writes) == 60
        assert not any(out.is_on for out in outs.values())  # the last write of each was off
    finally:
        for out in outs.values():
            out.close()


def test_a_coil_that_does_not_take_the_write_is_a_fault(
    tcp: tuple[RelayModule, BoardConfig],
) -> None:
    module, cfg = tcp
    outs = open_outputs(cfg, HalContext(clock=SimClock(0.0, 0)))
    module.stick.add(2)
    try:
        with pytest.raises(
            ActuatorFault, match=r"coil 2 ON failed after 2 attempt\(s\).*reads back OFF"
        ):
            outs["siren"].set(True)
        assert module.writes == [(2, True), (2, True)]  # retried once
        assert not outs["siren"].is_on
    finally:
        module.stick.clear()
        for out in outs.values():
            out.close()


@pytest.mark.parametrize("how", ["hangs", "goes away"])
def test_a_module_that_stops_answering_is_a_fault_and_the_unit_carries_on(
    tcp: tuple[RelayModule, BoardConfig], how: str
) -> None:
    module, cfg = tcp
    clock = SimClock(0.0, 0)
    outs = open_outputs(cfg, HalContext(clock=clock))
    config = DeterrenceConfig(
        limits={"siren": OutputLimits(max_on_s=10), "floodlight": OutputLimits(max_on_s=10)},
        profiles={
            "p": Profile(steps=[ProfileStep(output="floodlight"), ProfileStep(output="siren")])
        },
    )
    det = Deterrence(outs, config, clock)
    det.start_failsafe()
    try:
        outs["siren"].set(False)
        if how == "hangs":
            module.mute = True
        else:
            module.stop()
        with pytest.raises(ActuatorFault, match="modbus bus 'relays'"):
            outs["siren"].set(True)
        actions = det.activate("p", config.profiles["p"], "u/1")  # no exception: faults recorded
        assert [a.output for a in actions] == ["floodlight", "siren"]
        assert len(det.faults) >= 2 and all("modbus bus 'relays'" in f for f in det.faults)
        assert not outs["siren"].is_on
        # The module comes back: the next activation switches (after a reconnect).
        if how == "hangs":
            module.mute = False
        else:
            module.start_tcp(tcp_port(cfg))
        module.writes.clear()
        det.activate("p", config.profiles["p"], "u/2")
        assert outs["floodlight"].is_on and outs["siren"].is_on
        assert (0, True) in module.writes and (2, True) in module.writes
    finally:
        module.mute = False
        det.stop()
        for out in outs.values():
            out.close()


def test_rtu_over_a_pty_pair(module: RelayModule, pty_pair: tuple[str, str]) -> None:
    server_end, unit_end = pty_pair
    module.start_rtu(server_end)
    cfg = board({"transport": "rtu", "port": unit_end, "baudrate": 19200})
    outs = open_outputs(cfg, HalContext(clock=SimClock(0.0, 0)))
    try:
        outs["strobe"].set(True)
        outs["siren"].set(True)
        outs["strobe"].set(False)
        assert module.writes == [(1, True), (2, True), (1, False)]
        assert outs["siren"].read() and not outs["strobe"].read()  # type: ignore[attr-defined]
        module.stop()  # the module stops answering on the line
        with pytest.raises(ActuatorFault, match=r"modbus bus 'relays' \(/dev/"):
            outs["siren"].set(False)
        module.start_rtu(server_end)
        outs["siren"].set(False)
        assert module.writes[-1] == (2, False)
    finally:
        for out in outs.values():
            out.close()


def test_a_modbus_output_needs_its_bus_settings() -> None:
    from firmware.config.board import OutputModbus

    bare = OutputModbus(backend="modbus", kind="siren", bus="relays", coil=2)
    with pytest.raises(HardwareError, match="settings of modbus bus 'relays' are unknown"):
        registry.create("output", "siren", bare, HalContext(clock=SimClock(0.0, 0)))
