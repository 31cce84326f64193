"""Relay-module outputs over Modbus (pymodbus): RTU on RS-485 through pyserial, or TCP.

The coil map is in the board config: ``[modbus.BUS]`` says how to reach a module, and each output
names its bus and coil. The outputs on one bus share one client (one serial line cannot carry two
conversations), which a lock makes safe to use from several threads. Every write is read back; a
write that fails, times out or does not read back is retried, and after the bus's ``retries``
raised as :class:`~firmware.errors.ActuatorFault`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from firmware.errors import ActuatorFault, HardwareError
from firmware.hal.base import Output
from firmware.hal.registry import HalContext, acquire_shared, register, release_shared

logger = logging.getLogger(__name__)

T = TypeVar("T")
_BUS_KEY_PREFIX = "modbus_bus:"  # a unit's open bus NAME lives at this key + NAME in its context


class ModbusBus:
    """One Modbus bus: a pymodbus client shared, under a lock, by the outputs on it."""

    def __init__(self, name: str, config: Any) -> None:
        try:
            from pymodbus.client import ModbusSerialClient, ModbusTcpClient
            from pymodbus.exceptions import ModbusException
        except ImportError as exc:
            raise HardwareError("the modbus backend needs pymodbus (pip install pymodbus)") from exc
        self.name = name
        self.device_id: int = config.device_id
        self.retries: int = config.retries
        self._errors: tuple[type[Exception], ...] = (_Refused, ModbusException, OSError)
        self._client: Any
        # pymodbus retries are off: this class retries, so that it can log and reconnect.
        if config.transport == "rtu":
            self.where = f"{config.port} at {config.baudrate} baud"
            self._client = ModbusSerialClient(
                config.port,
                baudrate=config.baudrate,
                parity=config.parity,
                stopbits=config.stopbits,
                bytesize=8,
                timeout=config.timeout_s,
                retries=0,
            )
        else:
            self.where = f"{config.host}:{config.port}"
            self._client = ModbusTcpClient(
                config.host, port=config.port, timeout=config.timeout_s, retries=0
            )
        self.users = 0
        self._lock = threading.Lock()

    def write_coil(self, coil: int, value: bool) -> None:
        """Write one coil and read it back; raise ActuatorFault when it will not take."""

        def write() -> None:
            reply = self._client.write_coil(coil, value, device_id=self.device_id)
            if reply.isError():
                raise _Refused(f"write refused: {reply}")
            if self._read(coil) != value:
                raise _Refused(f"reads back {'ON' if not value else 'OFF'} after the write")

        self._attempt(f"coil {coil} {'ON' if value else 'OFF'}", write)

    def read_coil(self, coil: int) -> bool:
        """Read one coil; raise ActuatorFault when the module does not answer."""
        return self._attempt(f"reading coil {coil}", lambda: self._read(coil))

    def _read(self, coil: int) -> bool:
        reply = self._client.read_coils(coil, count=1, device_id=self.device_id)
        if reply.isError():
            raise _Refused(f"read refused: {reply}")
        return bool(reply.bits[0])

    def _attempt(self, what: str, operation: Callable[[], T]) -> T:
        last: BaseException | None = None
        with self._lock:
            for attempt in range(1 + self.retries):
                try:
                    if not self._client.connected and not self._client.connect():
                        raise _Refused(f"cannot connect to {self.where}")
                    return operation()
                except self._errors as exc:
                    last = exc
                    logger.warning(
                        "modbus %s: %s, attempt %d of %d: %s",
                        self.name,
                        what,
                        attempt + 1,
                        1 + self.retries,
                        exc,
                    )
                    self._client.close()  # reconnect on the next attempt
        raise ActuatorFault(
            f"modbus bus {self.name!r} ({self.where}), device {self.device_id}: {what} failed "
            f"after {1 + self.retries} attempt(s): {last}"
        ) from last

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._client.close()


class _Refused(Exception):
    """A request the module answered wrongly, or could not be sent (retried, then a fault)."""


def _bus_key(name: str) -> str:
    return f"{_BUS_KEY_PREFIX}{name}"


def _acquire_bus(ctx: HalContext, name: str, config: Any) -> ModbusBus:
    def start() -> ModbusBus:
        bus = ModbusBus(name, config)
        logger.info("modbus bus %s: %s, device %d", name, bus.where, bus.device_id)
        return bus

    return acquire_shared(ctx, _bus_key(name), start)


def _release_bus(ctx: HalContext, bus: ModbusBus) -> None:
    release_shared(ctx, _bus_key(bus.name), bus)


@register("output", "modbus")
class ModbusOutput(Output):
    """One coil of a Modbus relay module."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        bus_config = getattr(config, "bus_config", None)
        if bus_config is None:
            raise HardwareError(
                f"output {name!r}: the settings of modbus bus {config.bus!r} are unknown "
                "(outputs get them from a board config loaded through firmware.config)"
            )
        self.name, self.kind = name, config.kind
        self.coil: int = config.coil
        self._ctx = ctx
        self.bus = _acquire_bus(ctx, config.bus, bus_config)
        self._on = False

    def set(self, on: bool) -> None:
        """Write the coil and verify it by reading it back."""
        self.bus.write_coil(self.coil, on)
        self._on = on

    @property
    def is_on(self) -> bool:
        """The coil's state as last written and read back."""
        return self._on

    def read(self) -> bool:
        """Read the coil from the module (diagnostics)."""
        return self.bus.read_coil(self.coil)

    def close(self) -> None:
        """Switch off and release the bus (closed with its last output)."""
        try:
            self.set(False)
        except ActuatorFault as exc:
            logger.error("output %s: could not switch off on close: %s", self.name, exc)
        finally:
            _release_bus(self._ctx, self.bus)
