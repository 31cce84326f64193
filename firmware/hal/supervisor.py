"""Outputs through the RP2040 I/O supervisor, and the unit's end of its UART link (pyserial).

The supervisor (``firmware/supervisor/``, MicroPython on a Raspberry Pi Pico) sits between the unit
and the deterrent outputs. The unit must send it heartbeats: when they stop, the supervisor switches
every output off and power-cycles the unit. It also cuts any output left on past its maximum
on-time, and reports its tamper/door switch and the supply voltage. :class:`SupervisorLink` owns the
serial port, a reader thread, the heartbeat thread and request/response with retries; the outputs
on one supervisor share one link, kept in the unit's :class:`HalContext`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware.config.board import SupervisorConfig
from firmware.errors import ActuatorFault, HardwareError
from firmware.hal.base import Output
from firmware.hal.registry import HalContext, acquire_shared, register, release_shared
from firmware.supervisor import framing
from firmware.supervisor import messages as m

logger = logging.getLogger(__name__)

_LINK_KEY = "supervisor_link"  # where a unit's open link lives in its HalContext
DEFAULT_MAX_ON_S = 300  # what the firmware uses for a channel the unit does not configure


@dataclass(frozen=True)
class SupervisorStatus:
    """What the supervisor last reported."""

    state: str  # starting, running, cycling, waiting, gave-up
    outputs: int  # bit c set while channel c is on
    tamper: bool  # the tamper/door switch is open
    supply_v: float
    power_cycles: int  # since the supervisor started
    bad_frames: int  # frames it dropped (bad CRC or framing)
    attempts: int  # power cycles in the current run of failures

    @classmethod
    def from_payload(cls, payload: bytes) -> SupervisorStatus:
        """Parse a status block."""
        state, outputs, tamper, mv, cycles, bad, attempts = m.unpack_status(payload)
        name = m.STATE_NAMES[state] if state < len(m.STATE_NAMES) else f"state-{state}"
        return cls(name, outputs, bool(tamper), mv / 1000, cycles, bad, attempts)


@dataclass(frozen=True)
class SupervisorEvent:
    """Something the supervisor reported on its own."""

    what: str  # booted, tamper, cutoff, unit-lost, gave-up, unit-back
    arg: int  # tamper: 1 open / 0 closed; cutoff: the channel; unit-lost/gave-up: attempts
    status: SupervisorStatus


class SupervisorLink:
    """The unit's end of the supervisor link: heartbeats, requests, readings and events."""

    def __init__(
        self,
        config: SupervisorConfig,
        port: Any = None,
        on_event: Callable[[SupervisorEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.events: deque[SupervisorEvent] = deque(maxlen=100)
        self.max_on_s: dict[int, int] = {}
        self.users = 0
        self._sim: Any = None
        if port is None:
            port = self._open(config)
        self._port = port
        self._decoder = framing.Decoder()
        self._write_lock = threading.Lock()
        self._replies: dict[int, tuple[int, bytes]] = {}
        self._cond = threading.Condition()
        self._seq = 0
        self._status: SupervisorStatus | None = None
        self._stop = threading.Event()
        self._beating = threading.Event()
        self._beating.set()
        self.heartbeat_failures = 0  # in a row
        self._reader = threading.Thread(target=self._read_loop, name="supervisor-rx", daemon=True)
        self._reader.start()
        self._heart = threading.Thread(target=self._beat_loop, name="supervisor-hb", daemon=True)

    def _open(self, config: SupervisorConfig) -> Any:
        where = config.port
        if config.port == "sim":
            from firmware.hal.supervisor_sim import SupervisorSim

            self._sim = SupervisorSim()
            where = self._sim.port
        try:
            import serial  # lazily: the registry loads this module on boards without it

            return serial.Serial(where, config.baudrate, timeout=0.05, write_timeout=1.0)
        except OSError as exc:  # pyserial's SerialException is an OSError
            if self._sim is not None:
                self._sim.close()
            raise HardwareError(f"supervisor: cannot open {where}: {exc}") from exc

    @property
    def sim(self) -> Any:
        """The simulated supervisor behind a ``port = "sim"`` link (None on hardware)."""
        return self._sim

    # --- requests -----------------------------------------------------------------------------

    def request(self, kind: int, payload: bytes = b"", retries: int | None = None) -> bytes:
        """Send a request and return the STATUS payload; HardwareError on NAK or no answer."""
        attempts = 1 + (self.config.retries if retries is None else retries)
        for attempt in range(attempts):
            with self._cond:
                self._seq = self._seq % 255 + 1
                seq = self._seq
                self._replies.pop(seq, None)
            self._send(framing.encode(kind, seq, payload))
            deadline = time.monotonic() + self.config.reply_timeout_s
            with self._cond:
                while seq not in self._replies and not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                answer = self._replies.pop(seq, None)
            if answer is None:
                logger.debug("supervisor: no answer to %#x, attempt %d", kind, attempt + 1)
                continue
            reply_kind, body = answer
            if reply_kind == m.NAK:
                reason = body[0] if body else 0
                why = m.NAK_NAMES[reason] if reason < len(m.NAK_NAMES) else f"reason {reason}"
                raise HardwareError(f"supervisor refused request {kind:#04x}: {why}")
            self._status = SupervisorStatus.from_payload(body)
            return body
        raise HardwareError(
            f"supervisor on {self.config.port}: no answer to request {kind:#04x} "
            f"after {attempts} attempt(s)"
        )

    def configure_channel(self, channel: int, max_on_s: int) -> None:
        """Tell the supervisor a channel's maximum on-time (and the heartbeat timeout)."""
        self.max_on_s[channel] = max_on_s
        self.send_config()

    def send_config(self) -> None:
        """Send CONFIG: the heartbeat timeout and every configured channel's maximum on-time."""
        top = max(self.max_on_s, default=-1)
        limits = [self.max_on_s.get(c, DEFAULT_MAX_ON_S) for c in range(top + 1)]
        timeout_ms = round(self.config.heartbeat_timeout_s * 1000)
        self.request(m.CONFIG, m.pack_config(timeout_ms, limits))

    def set_output(self, channel: int, on: bool) -> None:
        """Switch a channel; the answer must show it in that state."""
        body = self.request(m.SET, bytes([channel, 1 if on else 0]))
        if bool(SupervisorStatus.from_payload(body).outputs >> channel & 1) != on:
            raise HardwareError(f"supervisor: channel {channel} did not switch")

    def query_status(self) -> SupervisorStatus:
        """Ask for the supervisor's status now."""
        return SupervisorStatus.from_payload(self.request(m.GET_STATUS))

    @property
    def status(self) -> SupervisorStatus | None:
        """The status from the last answer (heartbeats refresh it every period)."""
        return self._status

    # --- heartbeats ---------------------------------------------------------------------------

    def start_heartbeats(self) -> None:
        """Send heartbeats every ``heartbeat_period_s`` from a thread (a heartbeat at once)."""
        self.request(m.HEARTBEAT)
        self._beating.set()
        if not self._heart.is_alive():
            self._heart.start()

    def stop_heartbeats(self) -> None:
        """Stop sending heartbeats: the supervisor will take the unit for hung (tests, drills)."""
        self._beating.clear()

    def _beat_loop(self) -> None:
        period = self.config.heartbeat_period_s
        while not self._stop.wait(period):
            if not self._beating.is_set():
                continue
            try:
                self.request(m.HEARTBEAT, retries=0)
                if self.heartbeat_failures:
                    logger.info("supervisor answers heartbeats again")
                self.heartbeat_failures = 0
            except HardwareError as exc:
                self.heartbeat_failures += 1
                if self.heartbeat_failures == 1:
                    logger.warning("supervisor heartbeat: %s", exc)

    # --- the wire -----------------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        try:
            with self._write_lock:
                self._port.write(frame)
        except OSError as exc:  # pyserial's SerialException is an OSError
            raise HardwareError(f"supervisor on {self.config.port}: write failed: {exc}") from exc

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._port.read(256)
            except (OSError, TypeError) as exc:  # SerialException is an OSError
                if not self._stop.is_set():
                    logger.error("supervisor on %s: read failed: %s", self.config.port, exc)
                    self._stop.wait(1.0)
                continue
            if data:
                for kind, seq, payload in self._decoder.feed(data):
                    self._dispatch(kind, seq, payload)

    def _dispatch(self, kind: int, seq: int, payload: bytes) -> None:
        if kind in (m.STATUS, m.NAK):
            with self._cond:
                self._replies[seq] = (kind, payload)
                self._cond.notify_all()
        elif kind == m.EVENT and len(payload) >= 2 + m.STATUS_SIZE:
            status = SupervisorStatus.from_payload(payload[2:])
            self._status = status
            what = m.EVENT_NAMES[payload[0]] if payload[0] < len(m.EVENT_NAMES) else "unknown"
            event = SupervisorEvent(what, payload[1], status)
            logger.info("supervisor event: %s %d (%s)", what, event.arg, status.state)
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)
        else:
            logger.warning("supervisor: unexpected frame type %#x", kind)

    def close(self) -> None:
        """Stop the threads and close the port (and the simulator, if any)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._heart.is_alive():
            self._heart.join(timeout=2)
        self._reader.join(timeout=2)
        self._port.close()
        if self._sim is not None:
            self._sim.close()


def open_link(config: SupervisorConfig, ctx: HalContext) -> SupervisorLink:
    """The unit's supervisor link, opened (with heartbeats running) on first use."""

    def start() -> SupervisorLink:
        link = SupervisorLink(config)
        try:
            link.send_config()
            link.start_heartbeats()
        except HardwareError:
            link.close()
            raise
        logger.info("supervisor link on %s at %d baud", config.port, config.baudrate)
        return link

    return acquire_shared(ctx, _LINK_KEY, start)


def link_for(ctx: HalContext) -> SupervisorLink | None:
    """The unit's open supervisor link, if any (for tamper, supply and events)."""
    link: SupervisorLink | None = ctx.extras.get(_LINK_KEY)
    return link


def _release_link(ctx: HalContext, link: SupervisorLink) -> None:
    release_shared(ctx, _LINK_KEY, link)


@register("output", "supervisor")
class SupervisorOutput(Output):
    """One deterrent output channel of the RP2040 supervisor."""

    def __init__(self, name: str, config: Any, ctx: HalContext) -> None:
        link_config = getattr(config, "link_config", None)
        if link_config is None:
            raise HardwareError(
                f"output {name!r}: the [supervisor] settings are unknown "
                "(outputs get them from a board config loaded through firmware.config)"
            )
        self.name, self.kind = name, config.kind
        self.channel: int = config.channel
        self._ctx = ctx
        self.link = open_link(link_config, ctx)
        try:
            self.link.configure_channel(self.channel, config.max_on_s)
        except HardwareError as exc:
            _release_link(ctx, self.link)
            raise HardwareError(f"output {name!r}: channel {self.channel}: {exc}") from exc
        self._on = False

    def set(self, on: bool) -> None:
        """Switch the channel through the supervisor."""
        try:
            self.link.set_output(self.channel, on)
        except HardwareError as exc:
            raise ActuatorFault(
                f"output {self.name!r} (supervisor channel {self.channel}): {exc}"
            ) from exc
        self._on = on

    @property
    def is_on(self) -> bool:
        """The channel's state as last set; the supervisor may since have cut it (max on-time)."""
        status = self.link.status
        if status is not None and not status.outputs >> self.channel & 1:
            return False
        return self._on

    def close(self) -> None:
        """Switch off and release the link (closed with its last output)."""
        try:
            self.set(False)
        except ActuatorFault as exc:
            logger.error("output %s: could not switch off on close: %s", self.name, exc)
        finally:
            _release_link(self._ctx, self.link)
