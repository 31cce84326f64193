"""Board config: which hardware a unit has and how it is wired (``board_configs/*.toml``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

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
    path: str  # relative to the board config's folder
    loop: bool = True

    @field_validator("path")
    @classmethod
    def resolve_path(cls, value: str, info: ValidationInfo) -> str:
        """A relative clip path is taken from the board config's folder."""
        path = Path(value).expanduser()
        base = (info.context or {}).get("config_dir")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return str(path)


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


class SupervisorConfig(Strict):
    """``[supervisor]``: the RP2040 I/O supervisor's UART link (see docs/protocol.md)."""

    # A serial device, or "sim": the supervisor firmware under the MicroPython unix port on a pty.
    port: str
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = 115200
    heartbeat_period_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # Heartbeats missing this long: the supervisor switches outputs off and power-cycles the unit.
    heartbeat_timeout_s: Annotated[float, Field(ge=1, le=600)] = 15.0
    reply_timeout_s: Annotated[float, Field(gt=0, le=5)] = 0.3
    retries: Annotated[int, Field(ge=0, le=10)] = 2

    @model_validator(mode="after")
    def verify_timing(self) -> SupervisorConfig:
        """A few heartbeats must fit in the timeout, so one lost frame is not a power cycle."""
        if self.heartbeat_timeout_s < 3 * self.heartbeat_period_s:
            raise ValueError(
                "heartbeat_timeout_s: must be at least 3 x heartbeat_period_s "
                f"({3 * self.heartbeat_period_s:g} s)"
            )
        return self


class OutputSupervisor(Strict):
    """A deterrent output driven through the RP2040 supervisor (``[supervisor]``)."""

    backend: Literal["supervisor"]
    kind: OutputKind
    channel: Annotated[int, Field(ge=0, le=7)]  # the stock firmware has channels 0-3
    # The supervisor switches it off by itself after this long (its firmware caps it at 900 s).
    max_on_s: Annotated[int, Field(ge=1, le=900)] = 300
    # The link's settings, attached when the board config is validated (see BoardConfig).
    _link: SupervisorConfig | None = PrivateAttr(default=None)

    @property
    def link_config(self) -> SupervisorConfig | None:
        """The ``[supervisor]`` table (None outside a validated board)."""
        return self._link


OutputConfig = Annotated[
    OutputSim | OutputGpio | OutputModbus | OutputJetson | OutputSupervisor,
    Field(discriminator="backend"),
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


class ModemSupervision(Strict):
    """How the unit supervises its modem: poll interval, and when a dead link gets a reset."""

    poll_s: float = Field(30.0, ge=1, le=3600)
    unregistered_reset_s: float = Field(300.0, ge=10, le=86400)  # then AT+CFUN=1,1
    hung_polls: int = Field(3, ge=1, le=100)  # unanswered polls in a row; then the power key
    max_resets_per_hour: int = Field(4, ge=0, le=60)


class ModemSim(ModemSupervision):
    """Simulated LTE modem."""

    backend: Literal["sim"]


class ModemAt(ModemSupervision):
    """An LTE modem supervised over its AT port (pyserial)."""

    backend: Literal["at"]
    port: str
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = 115200
    apn: str = "internet"
    power_key_pin: GpioPin | None = None
    power_key_pulse_s: float = Field(0.6, gt=0, le=10)  # EC25 >= 0.5 s; SIM7600 >= 0.5 s


ModemConfig = Annotated[ModemSim | ModemAt, Field(discriminator="backend")]


class DiagConfig(Strict):
    """``[diag]``: the serial diagnostics console for field technicians (docs/diag.md)."""

    port: Annotated[str, Field(min_length=1, max_length=200)]  # e.g. /dev/ttyGS0, /dev/ttyUSB0
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = 115200


class BoardConfig(Strict):
    """A whole board config file."""

    board: BoardInfo
    thermal: ThermalConfig | None = None
    visible: VisibleConfig | None = None
    outputs: dict[Name, OutputConfig] = Field(default_factory=dict)
    modbus: dict[Name, ModbusBus] = Field(default_factory=dict)
    audio: AudioConfig | None = None
    modem: ModemConfig | None = None
    supervisor: SupervisorConfig | None = None
    diag: DiagConfig | None = None

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
            elif isinstance(out, OutputSupervisor):
                if self.supervisor is None:
                    errors.append(f"{where}.backend: 'supervisor' needs a [supervisor] table")
                claim_pin(out.channel, f"{where}.channel", "supervisor channel")
                out._link = self.supervisor
        if isinstance(self.modem, ModemAt) and self.modem.power_key_pin is not None:
            claim_pin(self.modem.power_key_pin, "modem.power_key_pin")
        ports: dict[str, str] = {}
        serial = [
            (f"modbus.{n}.port", b.port) for n, b in self.modbus.items() if isinstance(b, ModbusRtu)
        ]
        if isinstance(self.modem, ModemAt):
            serial.append(("modem.port", self.modem.port))
        if self.supervisor is not None and self.supervisor.port != "sim":
            serial.append(("supervisor.port", self.supervisor.port))
        if self.diag is not None:
            serial.append(("diag.port", self.diag.port))
        for where, port in serial:
            if port in ports:
                errors.append(f"{where}: serial port {port!r} is already used by {ports[port]}")
            else:
                ports[port] = where
        if errors:
            raise ValueError("\n".join(errors))
        return self
