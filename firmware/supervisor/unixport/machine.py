"""A stand-in ``machine`` module for running the supervisor under MicroPython's unix port.

Put its directory first on MICROPYPATH. Pins and ADC levels live in class-level tables that a test
driver sets and reads. A UART whose ``FAKE_UART<id>`` environment variable names a tty (one end of a
pty pair) talks over it; otherwise it is an in-memory pipe (``inject`` / ``take``). With
``FAKE_MACHINE_TRACE`` set, every output pin change is printed as ``pin <id> <value>``.
"""

import os
import select
import sys

_TRACE = bool(os.getenv("FAKE_MACHINE_TRACE"))


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    levels = {}  # noqa: RUF012 - pin id -> level an input reads (set by tests)
    pins = {}  # noqa: RUF012 - pin id -> the Pin object last made for it

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._value = 0
        Pin.pins[id] = self
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.IN:
                default = 1 if self.pull == Pin.PULL_UP else 0
                return Pin.levels.get(self.id, default)
            return self._value
        v = 1 if v else 0
        if v != self._value and _TRACE:
            print("pin", self.id, v)
            if hasattr(sys.stdout, "flush"):
                sys.stdout.flush()
        self._value = v
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class ADC:
    levels = {}  # noqa: RUF012 - pin id -> raw 16-bit reading

    def __init__(self, pin):
        self.id = pin.id if isinstance(pin, Pin) else pin

    def read_u16(self):
        return ADC.levels.get(self.id, 0)


class UART:
    def __init__(self, id, baudrate=115200, tx=None, rx=None, timeout=0, **kw):
        self.id = id
        self.rx = bytearray()
        self.tx = bytearray()
        path = os.getenv("FAKE_UART" + str(id))
        self._dev = open(path, "r+b") if path else None  # noqa: SIM115 - open while it runs
        if self._dev is not None:
            self._poll = select.poll()
            self._poll.register(self._dev, select.POLLIN)

    def inject(self, data):
        """Test side: bytes the supervisor will receive."""
        self.rx.extend(data)

    def take(self):
        """Test side: bytes the supervisor sent since the last take."""
        out = bytes(self.tx)
        self.tx = bytearray()
        return out

    def _pull(self):
        if self._dev is None:
            return
        while self._poll.poll(0):
            b = self._dev.read(1)
            if not b:
                break
            self.rx.extend(b)

    def any(self):
        self._pull()
        return len(self.rx)

    def read(self, n=-1):
        self._pull()
        if not self.rx:
            return None
        if n < 0 or n >= len(self.rx):
            out, self.rx = bytes(self.rx), bytearray()
        else:
            out, self.rx = bytes(self.rx[:n]), self.rx[n:]
        return out

    def write(self, data):
        if self._dev is not None:
            self._dev.write(data)
        else:
            self.tx.extend(data)
        return len(data)


class WDT:
    feeds = 0

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        WDT.feeds += 1
