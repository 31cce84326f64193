"""Board config: which hardware a unit has and how it is wired (``board_configs/*.toml``)."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, model_validator

from firmware.config.base import Strict

logger = logging.getLogger(__name__)

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
GpioPin = Annotated[int, Field(ge=0, le=53)]  # BCM numbering; 0-27 on a Pi header, more on a CM
Port = Annotated[int, Field(ge=1, le=65535)]


class BoardInfo(Strict):
    """``[board]``: what this variant is."""

    name: Name
    description: str = ""
    platform: Literal["sim", "rpi4", "rpi5", "jetson"]
    inference_threads: Annotated[int, Field(ge=1, le=16)] = 2


# --- thermal camera backends -----------------------------------------------------------------


class ThermalCommon(Strict):
    """Keys every thermal camera has."""

    sensor: Literal["lepton35", "lepton3", "mlx90640"]
    width: Annotated[int, Field(ge=8, le=1024)]
    height: Annotated[int, Field(ge=8, le=1024)]
    fps: Annotated[float, Field(gt=0, le=60)]
    radiometric: bool
    gain: Literal["high", "low"] = "high"


class ThermalSim(ThermalCommon):
    """Simulated thermal camera, rendering the simulator's world."""

    backend: Literal["sim"]


class ThermalPureThermal(ThermalCommon):
    """FLIR Lepton on a PureThermal board (UVC, through OpenCV/V4L2)."""

    backend: Literal["purethermal"]
    device: str


class ThermalMlx90640(ThermalCommon):
    """Melexis MLX90640 on I2C (Adafruit driver)."""

    backend: Literal["mlx90640"]
    i2c_bus: Annotated[int, Field(ge=0, le=32)] = 1
    i2c_address: Annotated[int, Field(ge=0x08, le=0x77)] = 0x33


class ThermalCptv(ThermalCommon):
    """Replays a recorded CPTV clip."""

    backend: Literal["cptv"]
    path: str
    loop: bool = True


ThermalConfig = Annotated[
    ThermalSim | ThermalPureThermal | ThermalMlx90640 | ThermalCptv, Field(discriminator="backend")
]


# --- visible camera backends -----------------------------------------------------------------


class VisibleCommon(Strict):
    """Keys every visible camera has."""

    width: Annotated[int, Field(ge=64, le=4096)]
    height: Annotated[int, Field(ge=64, le=4096)]
    fps: Annotated[float, Field(gt=0, le=60)]


class VisibleSim(VisibleCommon):
    """Simulated visible camera."""

    backend: Literal["sim"]


class VisiblePicamera2(VisibleCommon):
    """Raspberry Pi camera through picamera2."""

    backend: Literal["picamera2"]
    camera_index: Annotated[int, Field(ge=0, le=3)] = 0


class VisibleV4l2(VisibleCommon):
    """USB or CSI camera through OpenCV/V4L2."""

    backend: Literal["v4l2"]
    device: str


VisibleConfig = Annotated[
    VisibleSim | VisiblePicamera2 | VisibleV4l2, Field(discriminator="backend")
]


# --- Modbus buses ----------------------------------------------------------------------------


class ModbusRtu(Strict):
    """A Modbus RTU bus over RS-485."""

    transport: Literal["rtu"]
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    device_id: Annotated[int, Field(ge=1, le=247)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    retries: Annotated[int, Field(ge=0, le=10)] = 2


class ModbusTcp(Strict):
    """A Modbus TCP relay module."""

    transport: Literal["tcp"]
    host: str
    port: Port = 502
    device_id: Annotated[int, Field(ge=0, le=255)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=10)] = 1.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2


ModbusBus = Annotated[ModbusRtu | ModbusTcp, Field(discriminator="transport")]


# --- outputs -----------------------------------------------------------------------------------

OutputKind = Literal["relay", "light", "strobe", "siren"]


class OutputSim(Strict):
    """Simulated output with a recorded history."""

    backend: Literal["sim"]
    kind: OutputKind


class OutputGpio(Strict):
    """A relay or light on a GPIO pin (gpiozero); a light may be dimmed by PWM."""

    backend: Literal["gpio"]
    kind: OutputKind
    pin: GpioPin
    active_high: bool = True
    pwm: bool = False  # drive a light's dimmer input by PWM instead of switching it
    brightness: Annotated[float, Field(gt=0, le=1)] = 1.0  # pwm: duty cycle when on
    frequency_hz: Annotated[int, Field(ge=10, le=20000)] = 200  # pwm: frequency

    @model_validator(mode="after")
    def verify_pwm(self) -> OutputGpio:
        """PWM is for lights; its settings need it switched on."""
        errors: list[str] = []
        if self.pwm and self.kind != "light":
            errors.append(f'pwm: PWM dimming is for kind = "light", not {self.kind!r}')
        for key in ("brightness", "frequency_hz"):
            if key in self.model_fields_set and not self.pwm:
                errors.append(f"{key}: only with pwm = true")
        if errors:
            raise ValueError("\n".join(errors))
        return self


class OutputJetson(Strict):
    """A relay, light, strobe or siren on a Jetson header pin (Jetson.GPIO)."""

    backend: Literal["jetson"]
    kind: OutputKind
    pin: Annotated[int, Field(ge=0, le=40)]
    numbering: Literal["board", "bcm"] = "board"  # header pin numbers, or Broadcom-style
    active_high: bool = True

    @model_validator(mode="after")
    def verify_pin(self) -> OutputJetson:
        """Header pins are 1-40; BCM-style numbers 0-27."""
        low, high = (1, 40) if self.numbering == "board" else (0, 27)
        if not low <= self.pin <= high:
            raise ValueError(f"pin: {self.numbering} pin numbers are {low}-{high}")
        return self


class OutputModbus(Strict):
    """A coil of a Modbus relay module (pymodbus)."""

    backend: Literal["modbus"]
    kind: OutputKind
    bus: Name
    coil: Annotated[int, Field(ge=0, le=65535)]
    # The bus's settings, attached when the board config is validated (see BoardConfig).
    _bus: ModbusRtu | ModbusTcp | None = PrivateAttr(default=None)

    @property
    def bus_config(self) -> ModbusRtu | ModbusTcp | None:
        """The ``[modbus.BUS]`` table this coil is on (None outside a validated board)."""
        return self._bus


OutputConfig = Annotated[
    OutputSim | OutputGpio | OutputModbus | OutputJetson, Field(discriminator="backend")
]


# --- audio and modem ---------------------------------------------------------------------------


class AudioSim(Strict):
    """Simulated audio player."""

    backend: Literal["sim"]


class AudioAplay(Strict):
    """ALSA playback with ``aplay``."""

    backend: Literal["aplay"]
    device: str = "default"


AudioConfig = Annotated[AudioSim | AudioAplay, Field(discriminator="backend")]


class ModemSim(Strict):
    """Simulated LTE modem."""

    backend: Literal["sim"]


class ModemAt(Strict):
    """An LTE modem supervised over its AT port (pyserial)."""

    backend: Literal["at"]
    port: str
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = 115200
    apn: str = "internet"
    power_key_pin: GpioPin | None = None


ModemConfig = Annotated[ModemSim | ModemAt, Field(discriminator="backend")]


class BoardConfig(Strict):
    """A whole board config file."""

    board: BoardInfo
    thermal: ThermalConfig | None = None
    visible: VisibleConfig | None = None
    outputs: dict[Name, OutputConfig] = Field(default_factory=dict)
    modbus: dict[Name, ModbusBus] = Field(default_factory=dict)
    audio: AudioConfig | None = None
    modem: ModemConfig | None = None

    @model_validator(mode="after")
    def verify_wiring(self) -> BoardConfig:
        """Cross-check wiring: no pin or coil used twice, buses exist, a camera is present."""
        errors: list[str] = []
        if self.thermal is None and self.visible is None:
            errors.append("board: at least one of [thermal] or [visible] is required")
        pins: dict[tuple[str, int], str] = {}

        def claim_pin(pin: int, where: str, space: str = "GPIO pin") -> None:
            if (space, pin) in pins:
                errors.append(f"{where}: {space} {pin} is already used by {pins[space, pin]}")
            else:
                pins[space, pin] = where

        coils: dict[tuple[str, int], str] = {}
        for name, out in self.outputs.items():
            where = f"outputs.{name}"
            if name == "voice":
                errors.append(f"{where}: the name 'voice' is kept for voice clips")
            if isinstance(out, OutputGpio):
                claim_pin(out.pin, f"{where}.pin")
            elif isinstance(out, OutputJetson):
                claim_pin(out.pin, f"{where}.pin", f"Jetson {out.numbering} pin")
            elif isinstance(out, OutputModbus):
                if out.bus not in self.modbus:
                    known = ", ".join(sorted(self.modbus)) or "none"
                    errors.append(f"{where}.bus: no [modbus.{out.bus}] (defined: {known})")
                key = (out.bus, out.coil)
                if key in coils:
                    errors.append(
                        f"{where}.coil: coil {out.coil} on bus {out.bus!r} is already "
                        f"used by {coils[key]}"
                    )
                else:
                    coils[key] = f"{where}.coil"
                out._bus = self.modbus.get(out.bus)  # the backend opens the bus from these
        if isinstance(self.modem, ModemAt) and self.modem.power_key_pin is not None:
            claim_pin(self.modem.power_key_pin, "modem.power_key_pin")
        ports: dict[str, str] = {}
        serial = [
            (f"modbus.{n}.port", b.port) for n, b in self.modbus.items() if isinstance(b, ModbusRtu)
        ]
        if isinstance(self.modem, ModemAt):
            serial.append(("modem.port", self.modem.port))
        for where, port in serial:
            if port in ports:
                errors.append(f"{where}: serial port {port!r} is already used by {ports[port]}")
            else:
                ports[port] = where
        if errors:
            raise ValueError("\n".join(errors))
        return self
