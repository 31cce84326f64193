"""A simulated LTE modem that answers AT commands on a pseudo-terminal, with faults on demand.

It answers like a Quectel EC25 or a SIMCom SIM7600 (ATI, AT+QCSQ or AT+CPSI?), so that the
``at`` modem backend talks to it over pyserial exactly as to a real module. Faults switch at run
time: a missing SIM, no registration (searching), registration denied, and a hung AT port that
reads and never answers. AT+CFUN=1,1 and a power-key pulse reboot it: a few seconds of silence,
then ``RDY``; a fault set ``until_reset`` is gone after the reboot.

Run ``python -m sim.modem`` to serve one and print its port.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from typing import Any, Literal

logger = logging.getLogger(__name__)

Flavour = Literal["ec25", "sim7600"]


class Fault(enum.StrEnum):
    """What is wrong with the simulated modem."""

    NONE = "none"
    NO_SIM = "no-sim"
    SEARCHING = "searching"
    DENIED = "denied"
    HUNG = "hung"


_IDENTITY: dict[str, list[str]] = {
    "ec25": ["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"],
    "sim7600": [
        "Manufacturer: SIMCOM INCORPORATED",
        "Model: SIMCOM_SIM7600E-H",
        "Revision: SIM7600M22_V2.0",
    ],
}
_STAT = {Fault.NONE: 1, Fault.NO_SIM: 0, Fault.SEARCHING: 2, Fault.DENIED: 3}


class SimulatedModem:
    """An EC25- or SIM7600-flavoured modem on a pty; ``port`` is the path to open."""

    def __init__(
        self,
        flavour: Flavour = "ec25",
        *,
        boot_s: float = 2.0,
        operator: str = "Telekom.de",
        csq: int = 21,  # -71 dBm
        rsrp_dbm: int = -95,
        rsrq_db: int = -11,
    ) -> None:
        if flavour not in _IDENTITY:
            raise ValueError(f"flavour: expected ec25 or sim7600, got {flavour!r}")
        self.flavour = flavour
        self.boot_s = boot_s
        self.operator, self.csq, self.rsrp_dbm, self.rsrq_db = operator, csq, rsrp_dbm, rsrq_db
        self.fault = Fault.NONE
        self.until_reset = False
        self.echo = True
        self.reboots: list[str] = []  # "cfun" or "power-key", in order
        self.commands: list[str] = []  # every command it answered
        self._booting_until = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo or line editing by the pty itself
        self.port = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._serve, name="sim-modem", daemon=True)
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> SimulatedModem:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and close the pty."""
        self._stop.set()
        self._thread.join(timeout=2)
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        os.close(self._master)
        os.close(self._slave)

    def set_fault(self, fault: Fault | str, until_reset: bool = False) -> None:
        """Break (or heal, with ``none``) the modem; ``until_reset``: a reboot heals it."""
        with self._lock:
            self.fault, self.until_reset = Fault(fault), until_reset
        logger.info("sim modem fault: %s%s", self.fault, " until reset" if until_reset else "")

    @property
    def booting(self) -> bool:
        """True while it reboots (and says nothing)."""
        return time.monotonic() < self._booting_until

    def press_power_key(self, held_s: float) -> None:
        """The power key was held for ``held_s``: the module restarts, hung or not."""
        if held_s >= 0.05:
            self._reboot("power-key")

    def watch_power_key(self, pin: Any, poll_s: float = 0.01) -> None:
        """Follow a gpiozero (mock) pin wired to the power key; a high pulse restarts it."""
        self._watcher = threading.Thread(
            target=self._watch, args=(pin, poll_s), name="sim-modem-key", daemon=True
        )
        self._watcher.start()

    def _watch(self, pin: Any, poll_s: float) -> None:
        pressed_at: float | None = None
        while not self._stop.wait(poll_s):
            if pin.state and pressed_at is None:
                pressed_at = time.monotonic()
            elif not pin.state and pressed_at is not None:
                self.press_power_key(time.monotonic() - pressed_at)
                pressed_at = None

    def _reboot(self, why: str) -> None:
        with self._lock:
            self.reboots.append(why)
            self._booting_until = time.monotonic() + self.boot_s
            if self.until_reset:
                self.fault, self.until_reset = Fault.NONE, False
            self.echo = True
        logger.info("sim modem reboots (%s)", why)

    def _serve(self) -> None:
        buffer = b""
        was_booting = False
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            booting = self.booting
            if was_booting and not booting:
                self._write(["RDY"])  # what both modules say when they are up again
            was_booting = booting
            if not ready:
                continue
            try:
                data = os.read(self._master, 1024)
            except OSError:  # the other end closed; wait for it to come back
                time.sleep(0.02)
                continue
            if booting or self.fault == Fault.HUNG:
                buffer = b""
                continue  # reads, and never answers
            buffer += data
            *commands, buffer = buffer.replace(b"\n", b"").split(b"\r")
            for raw in commands:
                cmd = raw.decode("ascii", "replace").strip()
                if cmd:
                    self._answer(cmd)

    def _answer(self, cmd: str) -> None:
        self.commands.append(cmd)
        if self.echo:
            os.write(self._master, cmd.encode("ascii") + b"\r")
        upper = cmd.upper()
        lines, final = self._respond(upper)
        if upper == "AT+CFUN=1,1":
            self._reboot("cfun")  # before the OK: whoever reads the OK finds it rebooting
        self._write([*lines, final])

    def _write(self, lines: list[str]) -> None:
        try:
            os.write(self._master, b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))
        except OSError:
            logger.debug("sim modem: nobody listens")

    def _respond(self, cmd: str) -> tuple[list[str], str]:
        with self._lock:
            fault = self.fault
        registered = fault == Fault.NONE
        handlers: dict[str, Callable[[], list[str]]] = {
            "AT": list,
            "ATI": lambda: list(_IDENTITY[self.flavour]),
            "AT+CFUN=1,1": list,
            "AT+CFUN?": lambda: ["+CFUN: 1"],
            "AT+CEREG?": lambda: [f"+CEREG: 0,{_STAT[fault]}"],
            "AT+CREG?": lambda: [f"+CREG: 0,{_STAT[fault]}"],
            "AT+COPS?": lambda: [f'+COPS: 0,0,"{self.operator}",7' if registered else "+COPS: 0"],
            "AT+CSQ": lambda: [f"+CSQ: {self.csq if fault != Fault.NO_SIM else 99},99"],
        }
        if self.flavour == "ec25":
            handlers["AT+QCSQ"] = lambda: [
                f'+QCSQ: "LTE",{-113 + 2 * self.csq},{self.rsrp_dbm},150,{self.rsrq_db}'
                if registered
                else '+QCSQ: "NOSERVICE"'
            ]
        else:
            handlers["AT+CPSI?"] = lambda: [
                "+CPSI: LTE,Online,262-01,0x6F1A,27447297,301,EUTRAN-BAND20,6300,5,5,"
                f"{self.rsrq_db * 10},{self.rsrp_dbm * 10},{(-113 + 2 * self.csq) * 10},12"
                if registered
                else "+CPSI: NO SERVICE,Online"
            ]
        if cmd in ("ATE0", "ATE1"):
            self.echo = cmd == "ATE1"
            return [], "OK"
        if cmd == "AT+CPIN?":
            return ([], "+CME ERROR: 10") if fault == Fault.NO_SIM else (["+CPIN: READY"], "OK")
        handler = handlers.get(cmd)
        return ([], "ERROR") if handler is None else (handler(), "OK")


def main(argv: list[str] | None = None) -> int:
    """Serve a simulated modem on a pty until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m sim.modem", description=__doc__)
    parser.add_argument("--flavour", choices=sorted(_IDENTITY), default="ec25")
    parser.add_argument("--fault", choices=[f.value for f in Fault], default="none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with SimulatedModem(args.flavour) as modem:
        modem.set_fault(args.fault)
        print(f"modem ({args.flavour}) answers on {modem.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
