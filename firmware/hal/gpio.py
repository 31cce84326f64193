"""GPIO outputs through gpiozero (relays active-high or active-low).

Off the Pi, gpiozero needs a pin factory: tests use ``gpiozero.pins.mock.MockFactory``; set
``GPIOZERO_PIN_FACTORY=mock`` to try a GPIO board config on a laptop.
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
    """A relay, light, strobe or siren on one GPIO pin."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        try:
            from gpiozero import DigitalOutputDevice
            from gpiozero.exc import GPIOZeroError
        except ImportError as exc:
            raise HardwareError("the gpio backend needs gpiozero (pip install gpiozero)") from exc
        self.name, self.kind = name, config.kind
        try:
            self._dev = DigitalOutputDevice(
                config.pin,
                active_high=config.active_high,
                initial_value=False,
                pin_factory=ctx.extras.get("pin_factory"),
            )
        except GPIOZeroError as exc:
            raise HardwareError(f"output {name!r}: cannot open GPIO{config.pin}: {exc}") from exc
        self._error = GPIOZeroError

    def set(self, on: bool) -> None:
        """Drive the pin."""
        try:
            self._dev.value = on
        except self._error as exc:
            raise ActuatorFault(f"output {self.name!r}: {exc}") from exc

    @property
    def is_on(self) -> bool:
        """The pin's logical state."""
        return bool(self._dev.value)

    def close(self) -> None:
        """Switch off and release the pin."""
        try:
            self._dev.off()
        finally:
            self._dev.close()
