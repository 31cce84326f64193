"""Deterrence: switch outputs by profile, within limits that no rule or command can exceed.

A profile is a list of steps (steady light, strobe pattern, voice clip, siren). Planning a step
checks every limit in one place: quiet hours for audible outputs, an output already in use,
cool-down per zone, duty cycle per rolling hour and maximum on-time; what a limit held back or
shortened is returned in the :class:`Action` list, so the alarm can say so. :meth:`preview` and
:meth:`activate` plan the same way, so an alarm announces exactly what activation does.

Threads and locks. Planning holds ``_plan_lock``, which guards bookkeeping only and is never held
while hardware is driven. Each output has its own ``io`` lock, held while its hardware is driven.
A failsafe thread per output reads that output's deadline without any lock and switches it off
when the deadline passes, so neither a rule loop hung inside the planner nor a hung driver on
another output keeps an output on past its limit. Steps start, and strobes flash, from
:meth:`enforce`: in a scheduler thread on a real or paced clock (woken by each activation, so that
the rule loop never waits for a relay module), and on every tick of a fast simulated clock (exact
timing in simulations), where an activation also switches at once.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from firmware.clock import Clock, SimClock
from firmware.config.site import VOICE, DeterrenceConfig, OutputLimits, Profile, ProfileStep
from firmware.errors import ConfigError, HardwareError
from firmware.hal.base import AudioPlayer, Output
from firmware.rules.schedule import Schedule

logger = logging.getLogger(__name__)

FAILSAFE_PERIOD_S = 0.05
SCHEDULER_PERIOD_S = 0.02  # strobe patterns on a real clock flash to this resolution
EPSILON_S = 1e-3  # simulated time is a sum of frame periods: forgive their rounding
HOUR_S = 3600.0
MIN_STEP_S = 0.5  # a step the limits would cut shorter than this is suppressed instead
SHUTDOWN_LOCK_S = 2.0  # how long switching off at exit waits for a busy driver


@dataclass
class Action:
    """What one profile step does, or why it does not."""

    output: str  # an output's name, or "voice" for a clip
    seconds: float  # how long it is on (0 when suppressed; in test mode: would be on)
    suppressed: str | None = None  # why nothing is switched
    at_s: float = 0.0  # when it starts, after the activation
    limited: str | None = None  # why ``seconds`` is shorter than the step asked


class _State(enum.Enum):
    PLANNED = "planned"
    STARTING = "starting"
    ON = "on"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


_LIVE = (_State.PLANNED, _State.STARTING, _State.ON)


@dataclass(eq=False)
class _Interval:
    """One planned or past on-time of one output."""

    channel: str
    start: float
    until: float  # the deadline: off at the latest then
    ref: str
    zone: str | None
    why_off: str
    pattern: tuple[float, float] | None = None  # strobe: on_s, off_s
    clip: str | None = None
    clip_every_s: float = 0.0  # voice: a repeat starts this long after the previous one
    repeats: int = 1
    state: _State = _State.PLANNED
    started: float | None = None
    end: float | None = None  # when it actually went off
    level: bool = False  # strobe: the level driven last
    plays: int = 0  # voice: clips started

    def busy_from(self) -> float:
        return self.started if self.started is not None else self.start

    def busy_until(self) -> float:
        return self.end if self.end is not None else self.until

    def counts(self) -> bool:
        """Whether it is, was or will be on (cancelled and failed steps never were)."""
        return self.state in _LIVE or self.state is _State.DONE


@dataclass(eq=False)
class _Channel:
    """One output, or the audio player, with its limits and its hardware lock."""

    name: str
    kind: str
    audible: bool
    limits: OutputLimits | None
    output: Output | None = None
    audio: AudioPlayer | None = None
    io: threading.Lock = field(default_factory=threading.Lock)
    intervals: list[_Interval] = field(default_factory=list)
    active: _Interval | None = None  # read without a lock by the failsafe
    must_off: bool = False  # switching off failed: the failsafe retries
    busy_logged: bool = False


class Deterrence:
    """Owns the outputs and the audio player: every switch goes through here."""

    def __init__(
        self,
        outputs: dict[str, Output],
        config: DeterrenceConfig,
        clock: Clock,
        *,
        audio: AudioPlayer | None = None,
        schedules: Mapping[str, Schedule] | None = None,
    ) -> None:
        self.outputs = outputs
        self.config = config
        self.clock = clock
        self.audio = audio
        self.schedules = schedules
        self.test_mode = False
        self.faults: list[str] = []
        self._plan_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # an activation has steps for the scheduler
        self._scheduler: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._channels: dict[str, _Channel] = {}
        for name, out in outputs.items():
            limits = config.limits.get(name)
            audible = out.kind == "siren"
            if limits is not None and limits.audible is not None:
                audible = limits.audible
            self._channels[name] = _Channel(name, out.kind, audible, limits, output=out)
        if audio is not None:
            self._channels[VOICE] = _Channel(VOICE, "voice", True, config.voice, audio=audio)

    def use_schedules(self, schedules: Mapping[str, Schedule]) -> None:
        """Give the site's schedules (for quiet hours) to a deterrence built without them."""
        self.schedules = schedules

    def set_test_mode(self, on: bool) -> None:
        """In test mode operator triggers switch nothing; they say what they would switch."""
        self.test_mode = on

    # --- threads ------------------------------------------------------------------------------

    def start_failsafe(self) -> None:
        """Start a failsafe thread per output, and whatever starts steps on this clock."""
        fast = isinstance(self.clock, SimClock) and self.clock.fast
        if fast:
            assert isinstance(self.clock, SimClock)
            self.clock.on_advance(self.enforce)
        for ch in self._channels.values():
            self._spawn(self._failsafe_loop, f"failsafe-{ch.name}", ch)
        if not fast:
            self._scheduler = self._spawn(self._scheduler_loop, "deterrence", None)

    def _spawn(
        self, target: Callable[..., None], name: str, ch: _Channel | None
    ) -> threading.Thread:
        args = () if ch is None else (ch,)
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _failsafe_loop(self, ch: _Channel) -> None:
        while not self._stop.wait(FAILSAFE_PERIOD_S):
            try:
                self._check_deadline(ch, self.clock.now(), FAILSAFE_PERIOD_S)
            except Exception:  # the failsafe must outlive any error, or nothing switches off
                logger.exception("failsafe for %s", ch.name)

    def _scheduler_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(SCHEDULER_PERIOD_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.enforce(self.clock.now(), wait=False)
            except Exception:  # steps must keep starting and stopping whatever went wrong once
                logger.exception("deterrence scheduler")

    # --- planning -----------------------------------------------------------------------------

    def preview(
        self, profile: Profile, zone: str | None = None, *, now: float | None = None
    ) -> list[Action]:
        """What activating ``profile`` now would do, and what it would suppress and why."""
        now = self.clock.now() if now is None else now
        with self._plan_lock:
            return [action for action, _ in self._plan(profile, now, zone, "-")]

    def activate(
        self,
        profile_name: str,
        profile: Profile,
        ref: str,
        zone: str | None = None,
        *,
        now: float | None = None,
    ) -> list[Action]:
        """Plan a profile's steps for alarm ``ref``; return what will be done and what was not."""
        now = self.clock.now() if now is None else now
        with self._plan_lock:
            planned = self._plan(profile, now, zone, ref)
            for _, iv in planned:
                if iv is not None:
                    self._channels[iv.channel].intervals.append(iv)
        for action, iv in planned:
            if iv is None:
                logger.info("%s: %s suppressed (%s)", ref, action.output, action.suppressed)
                continue
            logger.info(
                "%s: profile %s: %s planned at +%g s for %g s (max_on_s %g)%s",
                ref,
                profile_name,
                action.output,
                action.at_s,
                action.seconds,
                self._max_on(iv.channel),
                f", shortened by {action.limited}" if action.limited else "",
            )
        if self._scheduler is not None and self._scheduler.is_alive():
            self._wake.set()  # it switches; the caller (the rule loop) does not wait for drivers
        else:
            self.enforce(now)
        return [action for action, _ in planned]

    def trigger(self, profile_name: str, ref: str) -> list[Action]:
        """Run a profile on an operator's command, within every limit (quiet hours too)."""
        profile = self.config.profiles.get(profile_name)
        if profile is None:
            known = ", ".join(sorted(self.config.profiles)) or "none"
            raise ConfigError(f"deterrence.profiles: no profile {profile_name!r} (have: {known})")
        logger.info("%s: operator trigger: profile %s", ref, profile_name)
        if not self.test_mode:
            return self.activate(profile_name, profile, ref)
        actions = [
            Action(
                a.output, a.seconds, a.suppressed or "test mode: not switched", a.at_s, a.limited
            )
            for a in self.preview(profile)
        ]
        for a in actions:
            logger.info("%s: test mode: %s not switched (%s)", ref, a.output, a.suppressed)
        return actions

    def _plan(
        self, profile: Profile, now: float, zone: str | None, ref: str
    ) -> list[tuple[Action, _Interval | None]]:
        self._prune(now)
        tentative: dict[str, list[_Interval]] = {}  # earlier steps of this profile
        out: list[tuple[Action, _Interval | None]] = []
        for step in profile.steps:
            ch = self._channels.get(step.channel)
            earlier = tentative.setdefault(step.channel, [])
            action, iv = self._plan_step(ch, step, now + step.at_s, zone, ref, earlier)
            if iv is not None:
                earlier.append(iv)
            out.append((action, iv))
        return out

    def _plan_step(
        self,
        ch: _Channel | None,
        step: ProfileStep,
        start: float,
        zone: str | None,
        ref: str,
        earlier: list[_Interval],
    ) -> tuple[Action, _Interval | None]:
        name, at_s = step.channel, step.at_s

        def held(reason: str) -> tuple[Action, None]:
            return Action(name, 0, reason, at_s), None

        if ch is None:
            return held("no audio player on this unit" if name == VOICE else "no such output")
        if ch.limits is None:
            return held("no [deterrence.limits] for it")
        max_on = ch.limits.max_on_s
        if step.output is None:
            want = min(step.voice_s, max_on)
        else:
            want = min(step.for_s or max_on, max_on)
        end, limited = start + want, None
        why_off = "max on-time reached" if want >= max_on else "step done"

        def cut(new_end: float, why: str) -> None:
            nonlocal end, limited, why_off
            if new_end < end:
                end, limited, why_off = new_end, why, why

        if ch.audible and self.config.quiet_hours is not None:
            quiet = (self.schedules or {}).get(self.config.quiet_hours)
            if quiet is None:  # fail towards silence: the site asked for quiet hours
                return held(f"quiet hours: schedule {self.config.quiet_hours} not loaded")
            if quiet.active(start):
                return held(f"quiet hours ({quiet.name})")
            begins = quiet.next_start(start, end)
            if begins is not None:
                local = dt.datetime.fromtimestamp(begins, quiet.tz).strftime("%H:%M")
                cut(begins, f"quiet hours ({quiet.name}) from {local}")
        others = [iv for iv in [*ch.intervals, *earlier] if iv.counts()]
        for iv in others:
            if iv.state in _LIVE and iv.busy_from() < end and start < iv.busy_until():
                if any(iv is e for e in earlier):
                    return held("overlaps an earlier step of the profile")
                what = "on" if iv.state is _State.ON else "planned"
                return held(f"already {what} for {iv.ref}")
        cooldown = ch.limits.cooldown_s
        if cooldown > 0:
            for iv in others:
                if zone is not None and iv.zone is not None and iv.zone != zone:
                    continue  # cool-down is per zone; an operator's activation counts for all
                off = iv.busy_until()
                if off <= start + EPSILON_S and start - off < cooldown - EPSILON_S:
                    return held(f"cool-down: off {start - off:.0f} s ago, {cooldown:g} s required")
                if iv.busy_from() >= end - EPSILON_S:
                    cut(iv.busy_from() - cooldown, "cool-down before a later step")
        per_hour = ch.limits.max_s_per_hour
        if per_hour is not None:
            allowed = _duty_allowed(
                [(iv.busy_from(), iv.busy_until()) for iv in others], start, end - start, per_hour
            )
            if allowed < end - start - EPSILON_S:
                cut(start + allowed, f"duty cycle: {per_hour:g} s per hour")
        seconds = want if limited is None else round(end - start, 3)
        if seconds < MIN_STEP_S:
            if per_hour is not None and limited and limited.startswith("duty cycle"):
                return held(f"duty cycle: {per_hour:g} s per hour used")
            return held(limited or "no time left within the limits")
        iv = _Interval(
            channel=name,
            start=start,
            until=start + seconds,
            ref=ref,
            zone=zone,
            why_off=why_off,
            pattern=(step.pattern.on_s, step.pattern.off_s) if step.pattern else None,
            clip=step.voice,
            clip_every_s=step.clip_s + step.gap_s if step.voice else 0.0,
            repeats=step.repeat if step.voice else 1,
        )
        return Action(name, seconds, None, at_s, limited), iv

    def _prune(self, now: float) -> None:
        for ch in self._channels.values():
            keep = HOUR_S + (ch.limits.cooldown_s if ch.limits else 0.0) + 1.0
            ch.intervals = [
                iv for iv in ch.intervals if iv.state in _LIVE or iv.busy_until() > now - keep
            ]

    def _max_on(self, channel: str) -> float:
        limits = self._channels[channel].limits
        return limits.max_on_s if limits is not None else 0.0

    # --- switching ----------------------------------------------------------------------------

    def enforce(self, now: float, wait: bool = True) -> None:
        """Switch off what is past its deadline, start steps that are due, flash strobes.

        ``wait=False`` (the scheduler thread) skips, until its next round, whatever another
        thread holds.
        """
        timeout = None if wait else FAILSAFE_PERIOD_S
        for ch in self._channels.values():
            self._check_deadline(ch, now, timeout)
        if self._stop.is_set():
            return  # stopped: nothing starts any more (a simulated clock may still tick)
        due: list[tuple[_Channel, _Interval]] = []
        if self._plan_lock.acquire(blocking=wait):  # busy: start them next round
            try:
                for ch in self._channels.values():
                    for iv in ch.intervals:
                        if iv.state is _State.PLANNED and iv.start <= now + EPSILON_S:
                            iv.state = _State.STARTING
                            due.append((ch, iv))
            finally:
                self._plan_lock.release()
        for ch, iv in sorted(due, key=lambda pair: pair[1].start):
            self._begin(ch, iv, now)
        for ch in self._channels.values():
            self._repeat(ch, now, timeout)

    def _check_deadline(self, ch: _Channel, now: float, timeout: float | None) -> None:
        iv = ch.active  # no lock: this is what keeps the failsafe independent of the planner
        if iv is not None and now + EPSILON_S >= iv.until:
            self._end(ch, iv, now, iv.why_off, timeout)
        elif iv is None and ch.must_off and self._acquire(ch, timeout):
            try:
                if ch.active is None and ch.must_off:
                    ch.must_off = not self._drive(ch, False, "-", "retrying switch-off")
            finally:
                ch.io.release()

    def _acquire(self, ch: _Channel, timeout: float | None) -> bool:
        if ch.io.acquire(timeout=-1 if timeout is None else timeout):
            ch.busy_logged = False
            return True
        if not ch.busy_logged:  # once per stall, not 20 times a second
            ch.busy_logged = True
            logger.error("%s: its driver is busy (hung?); switching it off is delayed", ch.name)
        return False

    def _begin(self, ch: _Channel, iv: _Interval, now: float) -> None:
        with ch.io:
            if iv.state is not _State.STARTING:
                return  # silenced meanwhile
            if now + EPSILON_S >= iv.until or ch.active is not None:
                iv.state = _State.CANCELLED
                logger.warning("%s: %s step skipped (late, or in use)", iv.ref, ch.name)
                return
            # The deadline is visible to the failsafe before the output goes on.
            ch.active, iv.state, iv.started = iv, _State.ON, now
            why = "profile step"
            if iv.pattern is not None:
                why = f"strobe {iv.pattern[0]:g} s on / {iv.pattern[1]:g} s off"
            elif iv.clip is not None:
                why = f"clip {iv.clip.rsplit('/', 1)[-1]}"
            if self._drive(ch, True, iv.ref, why, iv):
                iv.level, iv.plays = True, 1
                return
            ch.active, iv.state, iv.end = None, _State.FAILED, now
            ch.must_off = not self._drive(ch, False, iv.ref, "switch-on failed")

    def _end(
        self, ch: _Channel, iv: _Interval, now: float, why: str, timeout: float | None
    ) -> None:
        if not self._acquire(ch, timeout):
            return
        try:
            if ch.active is not iv:
                return  # someone else switched it off already
            ch.active, iv.state, iv.end = None, _State.DONE, now
            ch.must_off = not self._drive(ch, False, iv.ref, why)
        finally:
            ch.io.release()

    def _repeat(self, ch: _Channel, now: float, timeout: float | None) -> None:
        """Flash a strobe step, or start a voice clip's next repeat."""
        iv = ch.active
        if iv is None or iv.started is None:
            return
        elapsed = now - iv.started + EPSILON_S
        if iv.pattern is not None:
            on_s, off_s = iv.pattern
            level = elapsed % (on_s + off_s) < on_s
            if level == iv.level:
                return
        elif iv.clip is not None and iv.plays < iv.repeats:
            level = True
            if elapsed < iv.plays * iv.clip_every_s:
                return
        else:
            return
        if not self._acquire(ch, timeout):
            return
        try:
            if ch.active is iv and self._drive(ch, level, iv.ref, "pattern", iv, quiet=True):
                iv.level = level
                iv.plays += 1 if iv.clip is not None else 0
        finally:
            ch.io.release()

    def _drive(
        self,
        ch: _Channel,
        on: bool,
        ref: str,
        why: str,
        iv: _Interval | None = None,
        quiet: bool = False,
    ) -> bool:
        state = "on" if on else "off"
        try:
            if ch.output is not None:
                ch.output.set(on)
            elif ch.audio is not None:
                if on and iv is not None and iv.clip is not None:
                    ch.audio.play(iv.clip)
                else:
                    ch.audio.stop()
        except HardwareError as exc:  # ActuatorFault included: the caller decides what next
            logger.error("%s: %s could not be switched %s: %s", ref, ch.name, state, exc)
            self.faults.append(f"{ch.name}: {exc}")
            return False
        if quiet:
            logger.debug("%s: output %s %s (%s)", ref, ch.name, state, why)
        else:
            logger.info("%s: output %s %s (%s)", ref, ch.name, state.upper(), why)
        return True

    # --- everything off -----------------------------------------------------------------------

    def silence(self, ref: str) -> list[str]:
        """Everything off now and pending steps cancelled; return what was on or pending."""
        pending = self._cancel_planned()
        now = self.clock.now()
        names = [
            ch.name
            for ch in self._channels.values()
            if self._force_off(ch, now, ref, "silenced", None)
        ]
        names += [f"{name} (pending)" for name in pending if name not in names]
        logger.info("%s: silenced: %s", ref, ", ".join(names) or "nothing was on")
        return names

    def all_off(self, why: str) -> None:
        """Force every output off (on exit, on fault); never raises."""
        self._cancel_planned()
        now = self.clock.now()
        for ch in self._channels.values():
            try:
                self._force_off(ch, now, "-", why, SHUTDOWN_LOCK_S)
            except Exception as exc:  # switching the rest off matters more than this error
                logger.error("%s could not be forced off (%s): %s", ch.name, why, exc)
        logger.info("all outputs off (%s)", why)

    def _cancel_planned(self) -> list[str]:
        """Cancel every step not yet started; return the outputs that had one."""
        names: list[str] = []
        with self._plan_lock:
            for ch in self._channels.values():
                for iv in ch.intervals:
                    if iv.state in (_State.PLANNED, _State.STARTING):
                        iv.state = _State.CANCELLED
                        if ch.name not in names:
                            names.append(ch.name)
        return names

    def _force_off(
        self, ch: _Channel, now: float, ref: str, why: str, timeout: float | None
    ) -> bool:
        """Switch one output off whatever its state; return whether it was on."""
        if not self._acquire(ch, timeout):
            return False
        try:
            iv = ch.active
            was_on = iv is not None or (ch.output is not None and ch.output.is_on)
            if iv is not None:
                ch.active, iv.state, iv.end = None, _State.DONE, now
            if was_on or ch.must_off:
                ch.must_off = not self._drive(ch, False, iv.ref if iv else ref, why)
            else:  # not known to be on: make sure, without a line in the event log
                ch.must_off = not self._drive(ch, False, ref, why, quiet=True)
            return was_on
        finally:
            ch.io.release()

    def stop(self) -> None:
        """Stop the threads and switch everything off."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=1.0)
        self.all_off("shutdown")

    def active_outputs(self) -> list[str]:
        """Names of the outputs (and ``voice``) that are on now."""
        return [ch.name for ch in self._channels.values() if ch.active is not None]


def _max_hour_load(spans: Iterable[tuple[float, float]]) -> float:
    """The most on-time any one-hour window holds, for possibly overlapping spans."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    best = 0.0
    for a in [s for s, _ in merged] + [e - HOUR_S for _, e in merged]:
        load = sum(max(0.0, min(e, a + HOUR_S) - max(s, a)) for s, e in merged)
        best = max(best, load)
    return best


def _duty_allowed(
    spans: list[tuple[float, float]], start: float, want: float, per_hour: float
) -> float:
    """The longest on-time up to ``want`` from ``start`` that keeps every rolling hour in budget."""
    near = [(s, e) for s, e in spans if e > start - HOUR_S and s < start + want + HOUR_S]

    def fits(seconds: float) -> bool:
        return _max_hour_load([*near, (start, start + seconds)]) <= per_hour + EPSILON_S

    if fits(want):
        return want
    low, high = 0.0, want
    if not fits(low):
        return 0.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low
