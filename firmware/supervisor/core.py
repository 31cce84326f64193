"""The supervisor's logic: heartbeat watch, power cycling, on-time limits, tamper, status replies.

Time is a millisecond count passed to :meth:`Supervisor.step`, so that tests can drive it.
"""

import framing
import messages as m
from config import Settings
from hw import Hardware


class Supervisor:
    """One supervisor: call :meth:`step` every few milliseconds."""

    def __init__(self, hw: Hardware, settings: Settings, now: int) -> None:
        self.hw = hw
        self.s = settings
        self.n = len(settings.output_pins)
        self.decoder = framing.Decoder()
        self.heartbeat_timeout = settings.heartbeat_timeout_ms
        self.max_on_ms = [settings.default_max_on_s * 1000] * self.n
        self.on_since: list[int | None] = [None] * self.n
        self.state = m.STARTING
        self.since = now  # when the current state began
        self.deadline = now + settings.boot_grace_ms
        self.last_heartbeat = now
        self.attempts = 0
        self.cycles = 0
        self.tx_seq = 0
        first = hw.tamper_open()
        self.tamper, self._tamper_raw, self._tamper_since = first, first, now
        self.supply = hw.supply_mv()
        for channel in range(self.n):
            hw.set_output(channel, False)
        hw.set_power_cut(False)
        self._event(m.BOOTED, 0)

    # --- the loop -----------------------------------------------------------------------------

    def step(self, now: int) -> None:
        """Handle what arrived and what is due at ``now`` (ms)."""
        data = self.hw.read()
        if data:
            for kind, seq, payload in self.decoder.feed(data):
                self._handle(kind, seq, payload, now)
        self.supply = self.hw.supply_mv()
        self._check_outputs(now)
        self._check_unit(now)
        self._check_tamper(now)
        self.hw.set_led(led_on(self.state, now - self.since))

    def outputs_mask(self) -> int:
        """Bit ``c`` set while channel ``c`` is on."""
        mask = 0
        for channel in range(self.n):
            if self.on_since[channel] is not None:
                mask |= 1 << channel
        return mask

    # --- messages -----------------------------------------------------------------------------

    def _handle(self, kind: int, seq: int, payload: bytes, now: int) -> None:
        if kind == m.HEARTBEAT:
            self._heartbeat(now)
            self._reply_status(seq)
        elif kind == m.SET:
            if len(payload) != 2:
                self._nak(seq, m.BAD_LENGTH)
                return
            channel, on = payload[0], payload[1]
            if channel >= self.n:
                self._nak(seq, m.BAD_CHANNEL)
            elif on > 1:
                self._nak(seq, m.BAD_VALUE)
            elif on and self.state != m.RUNNING:
                self._nak(seq, m.REFUSED)
            else:
                self._switch(channel, bool(on), now)
                self._reply_status(seq)
        elif kind == m.CONFIG:
            try:
                timeout, limits = m.unpack_config(payload)
            except ValueError:
                self._nak(seq, m.BAD_LENGTH)
                return
            if len(limits) > self.n:
                self._nak(seq, m.BAD_CHANNEL)
                return
            s = self.s
            self.heartbeat_timeout = max(
                s.min_heartbeat_timeout_ms, min(timeout, s.max_heartbeat_timeout_ms)
            )
            for channel, seconds in enumerate(limits):
                self.max_on_ms[channel] = max(1, min(seconds, s.hard_max_on_s)) * 1000
            self._reply_status(seq)
        elif kind == m.GET_STATUS:
            self._reply_status(seq)
        else:
            self._nak(seq, m.UNKNOWN_TYPE)

    def _heartbeat(self, now: int) -> None:
        self.last_heartbeat = now
        if self.state == m.RUNNING or self.state == m.CYCLING:
            return  # while the power is cut a heartbeat can only be line noise gone right
        self._enter(m.RUNNING, now)
        self._event(m.UNIT_BACK, 0)

    def _status(self) -> bytes:
        return m.pack_status(
            self.state,
            self.outputs_mask(),
            self.tamper,
            self.supply,
            self.cycles,
            self.decoder.bad,
            self.attempts,
        )

    def _reply_status(self, seq: int) -> None:
        self.hw.write(framing.encode(m.STATUS, seq, self._status()))

    def _nak(self, seq: int, reason: int) -> None:
        self.hw.write(framing.encode(m.NAK, seq, bytes([reason])))

    def _event(self, event: int, arg: int) -> None:
        self.tx_seq = (self.tx_seq + 1) & 0xFF
        self.hw.write(framing.encode(m.EVENT, self.tx_seq, bytes([event, arg]) + self._status()))

    # --- outputs, unit, tamper ----------------------------------------------------------------

    def _switch(self, channel: int, on: bool, now: int) -> None:
        if on and self.on_since[channel] is not None:
            return  # already on: switching on again does not restart its on-time
        self.hw.set_output(channel, on)
        self.on_since[channel] = now if on else None

    def _all_off(self, now: int) -> None:
        for channel in range(self.n):
            self._switch(channel, False, now)

    def _check_outputs(self, now: int) -> None:
        for channel in range(self.n):
            since = self.on_since[channel]
            if since is not None and now - since >= self.max_on_ms[channel]:
                self._switch(channel, False, now)
                self._event(m.CUTOFF, channel)

    def _enter(self, state: int, now: int) -> None:
        self.state, self.since = state, now

    def _check_unit(self, now: int) -> None:
        s = self.s
        state = self.state
        if state == m.RUNNING:
            if now - self.last_heartbeat >= self.heartbeat_timeout:
                self._lose(now)
            elif self.attempts and now - self.since >= s.stable_ms:
                self.attempts = 0
        elif state == m.CYCLING:
            if now >= self.deadline:
                self.hw.set_power_cut(False)
                self.cycles += 1
                wait = s.boot_grace_ms << min(self.attempts - 1, 16)
                self.deadline = now + min(wait, max(s.max_wait_ms, s.boot_grace_ms))
                self._enter(m.WAITING, now)
        elif (state == m.STARTING or state == m.WAITING) and now >= self.deadline:
            self._lose(now)

    def _lose(self, now: int) -> None:
        """The unit stopped: everything off, then cut its power (unless out of attempts)."""
        self._all_off(now)
        if self.attempts >= self.s.max_attempts:
            self._enter(m.GAVE_UP, now)
            self._event(m.GIVE_UP, self.attempts)
            return
        self.attempts += 1
        self.hw.set_power_cut(True)
        self.deadline = now + self.s.power_off_ms
        self._enter(m.CYCLING, now)
        self._event(m.UNIT_LOST, self.attempts)

    def _check_tamper(self, now: int) -> None:
        raw = self.hw.tamper_open()
        if raw != self._tamper_raw:
            self._tamper_raw, self._tamper_since = raw, now
        elif raw != self.tamper and now - self._tamper_since >= self.s.tamper_debounce_ms:
            self.tamper = raw
            self._event(m.TAMPER, 1 if raw else 0)


def led_on(state: int, t: int) -> bool:
    """The status LED's pattern, ``t`` ms into a state."""
    if state == m.RUNNING:
        return t % 1000 < 500  # slow even blink: all well
    if state == m.CYCLING:
        return True  # steady: the unit's power is cut
    if state == m.GAVE_UP:
        return t % 2000 < 100 or 200 <= t % 2000 < 300  # double flash: needs a technician
    return t % 250 < 125  # fast blink: waiting for the unit
