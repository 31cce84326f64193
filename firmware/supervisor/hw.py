"""The supervisor's hardware, through MicroPython's ``machine`` module."""

import machine
from config import Settings


class Hardware:
    """Output pins, the power relay, the tamper switch, the supply ADC, the LED and the UART."""

    def __init__(self, settings: Settings) -> None:
        s = settings
        self._on_level = 1 if s.outputs_active_high else 0
        self._cut_level = 1 if s.power_active_high else 0
        # Outputs and the power relay are driven to their inactive level before anything else.
        self.outputs = [
            machine.Pin(p, machine.Pin.OUT, value=1 - self._on_level) for p in s.output_pins
        ]
        self.power = machine.Pin(s.power_pin, machine.Pin.OUT, value=1 - self._cut_level)
        self.tamper = machine.Pin(s.tamper_pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self.adc = machine.ADC(machine.Pin(s.supply_adc_pin))
        self.led = machine.Pin(s.led_pin, machine.Pin.OUT, value=0)
        self.uart = machine.UART(
            s.uart_id,
            baudrate=s.baudrate,
            tx=machine.Pin(s.uart_tx),
            rx=machine.Pin(s.uart_rx),
            timeout=0,
        )
        self._scale = s.supply_divider * s.adc_reference_mv / 65535

    def set_output(self, channel: int, on: bool) -> None:
        """Drive one deterrent output."""
        self.outputs[channel].value(self._on_level if on else 1 - self._on_level)

    def set_power_cut(self, cut: bool) -> None:
        """Cut (or restore) the unit's power."""
        self.power.value(self._cut_level if cut else 1 - self._cut_level)

    def tamper_open(self) -> bool:
        """Whether the tamper/door switch is open."""
        return self.tamper.value() == 1

    def supply_mv(self) -> int:
        """The supply voltage in millivolts."""
        return int(self.adc.read_u16() * self._scale)

    def set_led(self, on: bool) -> None:
        """The status LED."""
        self.led.value(1 if on else 0)

    def read(self) -> bytes | None:
        """Whatever the UART has received (None: nothing)."""
        if not self.uart.any():
            return None
        return self.uart.read()

    def write(self, data: bytes) -> None:
        """Send on the UART."""
        self.uart.write(data)
