"""GPIO outputs on NVIDIA Jetson boards through ``Jetson.GPIO``, where gpiozero does not reach.

``Jetson.GPIO`` is imported when an output opens: it is installed on Jetson Linux (pip
``Jetson.GPIO``) and refuses to import on other machines, which then get a clear HardwareError.
Jetson.GPIO has one pin numbering per process, so every Jetson output of a board uses the same.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from firmware.errors import ActuatorFault, HardwareError
from firmware.hal.base import Output
from firmware.hal.registry import HalContext, register

logger = logging.getLogger(__name__)

_MODES = {"board": "BOARD", "bcm": "BCM"}
_setup_lock = threading.Lock()


def load_jetson_gpio() -> Any:
    """Import ``Jetson.GPIO``; raise HardwareError saying why when it cannot be used here."""
    try:
        return importlib.import_module("Jetson.GPIO")
    except ImportError as exc:
        raise HardwareError(
            "the jetson output backend needs Jetson.GPIO (on Jetson Linux: pip install "
            "Jetson.GPIO); it is not installed"
        ) from exc
    except Exception as exc:  # it raises RuntimeError (and others) off a Jetson board
        raise HardwareError(f"Jetson.GPIO cannot run on this machine: {exc}") from exc


@register("output", "jetson")
class JetsonOutput(Output):
    """A relay, light, strobe or siren on one Jetson header pin."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        gpio = ctx.extras.get("jetson_gpio") or load_jetson_gpio()
        self.name, self.kind = name, config.kind
        self.pin: int = config.pin
        self._gpio = gpio
        self._on_level = gpio.HIGH if config.active_high else gpio.LOW
        self._off_level = gpio.LOW if config.active_high else gpio.HIGH
        self._on = False
        mode = getattr(gpio, _MODES[config.numbering])
        try:
            with _setup_lock:
                current = gpio.getmode()
                if current is None:
                    gpio.setwarnings(False)  # a pin left configured by a crash is expected
                    gpio.setmode(mode)
                elif current != mode:
                    raise HardwareError(
                        f"output {name!r}: Jetson.GPIO already uses another pin numbering; "
                        "use one numbering for every jetson output"
                    )
                gpio.setup(self.pin, gpio.OUT, initial=self._off_level)
        except HardwareError:
            raise
        except (RuntimeError, ValueError) as exc:
            raise HardwareError(
                f"output {name!r}: cannot open Jetson pin {self.pin}: {exc}"
            ) from exc

    def set(self, on: bool) -> None:
        """Drive the pin."""
        try:
            self._gpio.output(self.pin, self._on_level if on else self._off_level)
        except (RuntimeError, ValueError) as exc:
            raise ActuatorFault(f"output {self.name!r}: {exc}") from exc
        self._on = on

    @property
    def is_on(self) -> bool:
        """The state last driven."""
        return self._on

    def close(self) -> None:
        """Switch off and release the pin."""
        try:
            self.set(False)
        finally:
            self._gpio.cleanup(self.pin)
