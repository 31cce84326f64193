"""Supervisor entry point: MicroPython runs ``main.py`` at boot."""

import time

import machine
from config import Settings
from core import Supervisor
from hw import Hardware


def run(settings: Settings | None = None) -> None:
    """Run the supervisor forever, feeding the hardware watchdog each loop."""
    s = settings if settings is not None else Settings()
    hw = Hardware(s)
    wdt = machine.WDT(timeout=s.wdt_timeout_ms)
    last = time.ticks_ms()
    now = 0  # ms since start; ticks_ms wraps, this count does not
    sup = Supervisor(hw, s, now)
    while True:
        tick = time.ticks_ms()
        now += time.ticks_diff(tick, last)
        last = tick
        sup.step(now)
        wdt.feed()
        time.sleep_ms(s.loop_ms)


if __name__ == "__main__":
    run()
