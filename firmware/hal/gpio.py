"""GPIO outputs through gpiozero: relays active-high or active-low, and PWM-dimmed lights.

Off the Pi, gpiozero needs a pin factory: tests use ``gpiozero.pins.mock.MockFactory``; set
``GPIOZERO_PIN_FACTORY=mock`` to try a GPIO board config on a laptop. Strobe patterns are timed
by the deterrence, which switches the output on and off, so they follow the unit's clock.
"""

from __future__ import annotations

import logging
from typing import Any

from firmware.errors import ActuatorFault, HardwareError
from firmware.hal.base import Output
from firmware.hal.registry import HalContext, register

logger = logging.getLogger(__name__)


@register("output", "gpio")
class GpioOutput(Output):
    """A relay, light, strobe or siren on one GPIO pin; with ``pwm``, a dimmable light."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        try:
            from gpiozero import DigitalOutputDevice, PWMOutputDevice
            from gpiozero.exc import GPIOZeroError
        except ImportError as exc:
            raise HardwareError("the gpio backend needs gpiozero (pip install gpiozero)") from exc
        self.name, self.kind = name, config.kind
        self.pwm: bool = getattr(config, "pwm", False)
        self.brightness: float = getattr(config, "brightness", 1.0) if self.pwm else 1.0
        factory = ctx.extras.get("pin_factory")
        try:
            if self.pwm:
                self._dev = PWMOutputDevice(
                    config.pin,
                    active_high=config.active_high,
                    initial_value=0,
                    frequency=config.frequency_hz,
                    pin_factory=factory,
                )
            else:
                self._dev = DigitalOutputDevice(
                    config.pin,
                    active_high=config.active_high,
                    initial_value=False,
                    pin_factory=factory,
                )
        except GPIOZeroError as exc:
            raise HardwareError(f"output {name!r}: cannot open GPIO{config.pin}: {exc}") from exc
        self._error = GPIOZeroError

    def set(self, on: bool) -> None:
        """Drive the pin (a PWM light to its brightness)."""
        try:
            self._dev.value = (self.brightness if on else 0) if self.pwm else on
        except self._error as exc:
            raise ActuatorFault(f"output {self.name!r}: {exc}") from exc

    @property
    def is_on(self) -> bool:
        """The pin's logical state (a PWM light: any duty cycle above zero)."""
        return bool(self._dev.value)

    def close(self) -> None:
        """Switch off and release the pin."""
        try:
            self._dev.off()
        finally:
            self._dev.close()
