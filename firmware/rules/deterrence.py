"""Deterrence: switch outputs by profile, within limits that no rule or command can exceed.

Every output that goes on gets a deadline (its ``max_on_s``). :meth:`Deterrence.enforce` switches
off whatever is past its deadline; a failsafe thread calls it several times a second, independent
of the rule loop, so an output goes off at its limit even when that loop hangs. On a fast simulated
clock it also runs on every clock tick, so that simulated timing is exact.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from firmware.clock import Clock, SimClock
from firmware.config.site import DeterrenceConfig, Profile, ProfileStep
from firmware.errors import ActuatorFault
from firmware.hal.base import Output

logger = logging.getLogger(__name__)

FAILSAFE_PERIOD_S = 0.05
EPSILON_S = 1e-6  # simulated time is a sum of frame periods: forgive rounding


@dataclass
class _Planned:
    output: str
    start: float
    until: float
    ref: str


@dataclass
class Action:
    """What one profile step did, or why it did not."""

    output: str
    seconds: float
    suppressed: str | None = None


@dataclass
class Deterrence:
    """Owns the outputs: every switch goes through here."""

    outputs: dict[str, Output]
    config: DeterrenceConfig
    clock: Clock
    _planned: list[_Planned] = field(default_factory=list)
    _deadline: dict[str, float] = field(default_factory=dict)
    _off_at: dict[str, float] = field(default_factory=dict)
    _owner: dict[str, str] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    faults: list[str] = field(default_factory=list)

    def start_failsafe(self) -> None:
        """Start the failsafe thread (and the per-tick check on a fast simulated clock)."""
        if isinstance(self.clock, SimClock) and self.clock.fast:
            self.clock.on_advance(self.enforce)
        self._thread = threading.Thread(target=self._failsafe_loop, name="failsafe", daemon=True)
        self._thread.start()

    def _failsafe_loop(self) -> None:
        while not self._stop.wait(FAILSAFE_PERIOD_S):
            self.enforce(self.clock.now())

    def preview(self, profile: Profile) -> list[Action]:
        """What activating ``profile`` now would do, and what it would suppress and why."""
        now = self.clock.now()
        with self._lock:
            return [self._plan_step(step, now) for step in profile.steps]

    def _plan_step(self, step: ProfileStep, now: float) -> Action:
        limits = self.config.limits[step.output]
        seconds = min(step.for_s or limits.max_on_s, limits.max_on_s)
        last_off = self._off_at.get(step.output)
        if step.output in self._deadline:
            return Action(step.output, 0, f"already on for {self._owner.get(step.output)}")
        if last_off is not None and now - last_off < limits.cooldown_s:
            reason = f"cool-down: off {now - last_off:.0f} s ago, {limits.cooldown_s:g} s required"
            return Action(step.output, 0, reason)
        return Action(step.output, seconds)

    def activate(self, profile_name: str, profile: Profile, ref: str) -> list[Action]:
        """Plan a profile's steps for alarm ``ref``; return what will be done and what was not."""
        now = self.clock.now()
        with self._lock:
            actions = [self._plan_step(step, now) for step in profile.steps]
            for step, action in zip(profile.steps, actions, strict=True):
                if action.suppressed is not None:
                    logger.info("%s: %s suppressed (%s)", ref, step.output, action.suppressed)
                    continue
                start = now + step.at_s
                self._planned.append(_Planned(step.output, start, start + action.seconds, ref))
                logger.info("%s: profile %s: %s planned at +%g s for %g s (max_on_s %g)", ref,
                            profile_name, step.output, step.at_s, action.seconds,
                            self.config.limits[step.output].max_on_s)  # fmt: skip
        self.enforce(now)
        return actions

    def enforce(self, now: float) -> None:
        """Start planned steps that are due and switch off outputs past their deadline."""
        with self._lock:
            for plan in [p for p in self._planned if p.start <= now + EPSILON_S]:
                self._planned.remove(plan)
                if self._switch(plan.output, True, plan.ref, "profile step"):
                    self._deadline[plan.output] = plan.until
                    self._owner[plan.output] = plan.ref
            for name, deadline in list(self._deadline.items()):
                if now + EPSILON_S >= deadline:
                    self._switch(name, False, self._owner.get(name, "-"), "max on-time reached")
                    self._deadline.pop(name, None)
                    self._owner.pop(name, None)
                    self._off_at[name] = now

    def _switch(self, name: str, on: bool, ref: str, why: str) -> bool:
        try:
            self.outputs[name].set(on)
        except ActuatorFault as exc:
            logger.error(
                "%s: %s could not be switched %s: %s", ref, name, "on" if on else "off", exc
            )
            self.faults.append(f"{name}: {exc}")
            return False
        logger.info("%s: output %s %s (%s)", ref, name, "ON" if on else "OFF", why)
        return True

    def all_off(self, why: str) -> None:
        """Force every output off (on exit, on fault); never raises."""
        with self._lock:
            self._planned.clear()
            for name, output in self.outputs.items():
                try:
                    output.set(False)
                except Exception as exc:  # switching the rest off matters more than this error
                    logger.error("%s could not be forced off (%s): %s", name, why, exc)
                self._deadline.pop(name, None)
            logger.info("all outputs off (%s)", why)

    def stop(self) -> None:
        """Stop the failsafe thread and switch everything off."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.all_off("shutdown")
