"""LTE modem over its AT port (pyserial): Quectel EC25/EG25 and SIMCom SIM7600 and kin.

Only what supervision needs: SIM state (AT+CPIN?), registration (AT+CEREG?, then AT+CREG?),
operator (AT+COPS?), signal (AT+CSQ; RSRP and RSRQ from AT+QCSQ on Quectel or AT+CPSI? on
SIMCom, chosen by what ATI says), and a reset (AT+CFUN=1,1, or the power key when the AT port
itself is hung).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from firmware.errors import HardwareError
from firmware.hal.base import Modem, ModemStatus
from firmware.hal.registry import HalContext, register

logger = logging.getLogger(__name__)

AT_TIMEOUT_S = 2.0
CFUN_TIMEOUT_S = 15.0  # the OK to AT+CFUN=1,1 may take a while
_FINAL = re.compile(r"^(OK|ERROR|\+CME ERROR:.*|\+CMS ERROR:.*)$")
# 3GPP TS 27.007 <stat> of +CEREG/+CREG.
_REGISTRATION = {0: "idle", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}
_REGISTERED = {"home", "roaming"}
# 3GPP TS 27.007 +CME ERROR codes about the SIM, as AT+CPIN? gives them (numeric error mode).
_SIM_ERRORS = {
    "10": "NOT INSERTED",
    "11": "SIM PIN",
    "12": "SIM PUK",
    "13": "SIM FAILURE",
    "14": "SIM BUSY",
    "15": "SIM WRONG",
}


class ModemError(HardwareError):
    """The modem answered with an error."""


class ModemSilent(ModemError):
    """The modem did not answer at all: its AT port is hung, or the port is gone."""


def csq_to_dbm(rssi: int) -> int | None:
    """3GPP TS 27.007 +CSQ <rssi> (0..31, 99 unknown) to dBm."""
    return None if rssi == 99 or not 0 <= rssi <= 31 else -113 + 2 * rssi


class AtPort:
    """Sends AT commands on a serial port and collects the answer lines. Thread-safe."""

    def __init__(self, port: str, baudrate: int, timeout_s: float = AT_TIMEOUT_S) -> None:
        import serial

        try:
            self._serial = serial.Serial(port, baudrate, timeout=0.05, write_timeout=AT_TIMEOUT_S)
        except (serial.SerialException, OSError) as exc:
            raise ModemError(f"modem port {port}: {exc}") from exc
        self._error: type[Exception] = serial.SerialException
        self.port = port
        self.timeout_s = timeout_s  # how long an answer may take before the port counts as hung
        self._lock = threading.Lock()

    def command(self, cmd: str, timeout_s: float | None = None) -> list[str]:
        """Send one command; return the information lines before OK (raise on error/silence)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            try:
                self._serial.reset_input_buffer()  # stale answers and unsolicited codes
                self._serial.write(cmd.encode("ascii") + b"\r")
                lines: list[str] = []
                deadline = time.monotonic() + timeout_s
                buffer = b""
                while time.monotonic() < deadline:
                    buffer += self._serial.read(max(1, self._serial.in_waiting))
                    *complete, buffer = buffer.split(b"\n")
                    for raw in complete:
                        line = raw.decode("ascii", "replace").strip()
                        if not line or line == cmd:  # blank, or the modem's echo
                            continue
                        if _FINAL.match(line):
                            if line == "OK":
                                return lines
                            raise ModemError(f"{cmd}: {line}")
                        lines.append(line)
            except (self._error, OSError) as exc:
                raise ModemSilent(f"{self.port}: {exc}") from exc
        raise ModemSilent(f"{cmd}: no answer within {timeout_s:g} s")

    def close(self) -> None:
        """Close the port."""
        self._serial.close()


def _field(lines: list[str], prefix: str) -> str | None:
    return next((line[len(prefix) :].strip() for line in lines if line.startswith(prefix)), None)


def _sim_state(cmd_error: ModemError) -> str:
    """The SIM state that an error answer to AT+CPIN? stands for."""
    text = str(cmd_error)
    if "CME ERROR:" not in text:
        raise cmd_error  # a plain ERROR says nothing about the SIM
    code = text.split("CME ERROR:", 1)[1].strip()
    return _SIM_ERRORS.get(code, code.upper())


def _tenths(value: str) -> int:
    return round(int(value) / 10)


@register("modem", "at")
class AtModem(Modem):
    """An LTE modem supervised over its AT port."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        self.name = name
        self.at = AtPort(config.port, config.baudrate)
        self.power_key_pulse_s = float(config.power_key_pulse_s)
        self.power_key: Any = None
        if config.power_key_pin is not None:
            from gpiozero import DigitalOutputDevice

            try:
                self.power_key = DigitalOutputDevice(
                    config.power_key_pin,
                    initial_value=False,
                    pin_factory=ctx.extras.get("pin_factory"),
                )
            except Exception as exc:  # gpiozero raises many kinds; all mean "no such pin here"
                self.at.close()
                raise HardwareError(
                    f"modem power key on GPIO {config.power_key_pin}: {exc}"
                ) from exc
        self.vendor: str | None = None  # quectel, simcom or other; from ATI

    def identify(self) -> str:
        """Who made the modem, from ATI (Quectel and SIMCom answer differently)."""
        text = " ".join(self.at.command("ATI")).lower()
        vendor = "quectel" if "quectel" in text else "simcom" if "simcom" in text else "other"
        logger.info("modem %s: %s (%s)", self.name, vendor, text)
        return vendor

    def status(self) -> ModemStatus:
        """Ask the modem for SIM, registration, operator and signal."""
        try:
            sim = _field(self.at.command("AT+CPIN?"), "+CPIN:") or "UNKNOWN"
        except ModemSilent:
            raise
        except ModemError as exc:
            sim = _sim_state(exc)
        if sim != "READY":
            return ModemStatus(registered=False, sim=sim)
        if self.vendor is None:
            self.vendor = self.identify()
        registration = "unknown"
        for cmd, prefix in (("AT+CEREG?", "+CEREG:"), ("AT+CREG?", "+CREG:")):
            parts = (_field(self.at.command(cmd), prefix) or "").split(",")
            if len(parts) >= 2 and parts[1].strip().isdigit():
                registration = _REGISTRATION.get(int(parts[1]), "unknown")
                if registration in _REGISTERED:
                    break
        registered = registration in _REGISTERED
        operator = None
        cops = _field(self.at.command("AT+COPS?"), "+COPS:")
        if cops and '"' in cops:
            operator = cops.split('"')[1] or None
        csq = (_field(self.at.command("AT+CSQ"), "+CSQ:") or "").split(",")[0].strip()
        rssi = csq_to_dbm(int(csq)) if csq.isdigit() else None
        rsrp, rsrq, tech = self._lte_signal()
        return ModemStatus(registered, operator, rssi, sim, rsrp, rsrq, tech, registration)

    def _lte_signal(self) -> tuple[int | None, int | None, str | None]:
        """RSRP and RSRQ: Quectel's AT+QCSQ, SIMCom's AT+CPSI?; a bad answer is not fatal."""
        try:
            if self.vendor == "quectel":
                q = _field(self.at.command("AT+QCSQ"), "+QCSQ:")
                if q:  # "LTE",<rssi>,<rsrp>,<sinr>,<rsrq>  or  "NOSERVICE"
                    p = [x.strip().strip('"') for x in q.split(",")]
                    if p[0] == "LTE" and len(p) >= 5:
                        return int(p[2]), int(p[4]), "LTE"
                    return None, None, None if p[0] == "NOSERVICE" else p[0]
            elif self.vendor == "simcom":
                c = _field(self.at.command("AT+CPSI?"), "+CPSI:")
                # LTE,Online,<mcc-mnc>,<tac>,<cellid>,<pcid>,<band>,<earfcn>,<dlbw>,<ulbw>,
                # <rsrq>,<rsrp>,<rssi>,<rssnr>, RSRQ and RSRP in tenths of dB and dBm.
                if c:
                    p = [x.strip() for x in c.split(",")]
                    if p[0] == "LTE" and len(p) >= 12:
                        return _tenths(p[11]), _tenths(p[10]), "LTE"
                    return None, None, None if p[0] == "NO SERVICE" else p[0]
        except ModemSilent:
            raise
        except (ModemError, ValueError, IndexError) as exc:
            logger.debug("modem %s: no LTE signal figures: %s", self.name, exc)
        return None, None, None

    def reset(self, hard: bool) -> None:
        """Restart the modem: AT+CFUN=1,1, or a power-key pulse when the AT port is hung."""
        self.vendor = None  # ask again: a module may be swapped while it is down
        if not hard:
            self.at.command("AT+CFUN=1,1", timeout_s=CFUN_TIMEOUT_S)
            return
        if self.power_key is None:
            raise ModemError("the AT port is hung and the board has no modem.power_key_pin")
        self.power_key.on()
        try:
            time.sleep(self.power_key_pulse_s)
        finally:
            self.power_key.off()

    def close(self) -> None:
        """Close the AT port and release the power key."""
        self.at.close()
        if self.power_key is not None:
            self.power_key.close()
