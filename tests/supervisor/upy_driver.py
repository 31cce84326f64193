"""Runs under the MicroPython unix port: drives the supervisor's real code on virtual time.

Line 1 on stdin is a JSON object of Settings overrides; then one command a line:
``rx HEX`` (bytes the UART receives), ``step MS`` (advance time in 10 ms loops), ``pin ID LEVEL``
(an input's level), ``adc ID RAW`` (an ADC reading), ``dump`` (print the state as one JSON line).
"""

import json
import sys
from binascii import hexlify, unhexlify

import machine
from config import Settings
from core import Supervisor
from hw import Hardware

settings = Settings(**json.loads(sys.stdin.readline()))
hw = Hardware(settings)
now = 0
sup = Supervisor(hw, settings, now)
watched = list(settings.output_pins) + [settings.power_pin]  # noqa: RUF005 - MicroPython has no [*x]
last = {p: machine.Pin.pins[p].value() for p in watched}
changes = []

for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    cmd = words[0]
    if cmd == "rx":
        hw.uart.inject(unhexlify(words[1]))
    elif cmd == "pin":
        machine.Pin.levels[int(words[1])] = int(words[2])
    elif cmd == "adc":
        machine.ADC.levels[int(words[1])] = int(words[2])
    elif cmd == "step":
        end = now + int(words[1])
        while now < end:
            now += settings.loop_ms
            sup.step(now)
            for p in watched:
                v = machine.Pin.pins[p].value()
                if v != last[p]:
                    changes.append([now, p, v])
                    last[p] = v
    elif cmd == "dump":
        out = {
            "t": now,
            "state": sup.state,
            "pins": {str(p): machine.Pin.pins[p].value() for p in watched},
            "led": machine.Pin.pins[settings.led_pin].value(),
            "tx": hexlify(hw.uart.take()).decode(),
            "changes": changes,
            "bad": sup.decoder.bad,
        }
        changes = []
        print(json.dumps(out))
    else:
        raise ValueError("unknown command " + cmd)
