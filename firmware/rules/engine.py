"""Rules: events in zones -> alarms (open, close) and deterrence profiles.

A rule names an event kind, optionally object classes, the zones it watches, a schedule, and how
long (``min_duration_s``) and how many at once (``min_count``) before it fires. For each rule and
zone there is at most one open alarm. It opens when the rule's conditions hold, and closes when no
matching event has been seen for ``detection.fire.clear_after_s``. The alarm is committed to the
outbox before anything else is done for it; deterrence follows. Disarmed, the unit opens no new
alarms; in test mode alarms are raised and marked as tests, and outputs are not switched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from firmware.config.site import Rule, SiteConfig
from firmware.detect.fire import HotSpot
from firmware.hal.base import ThermalFrame
from firmware.rules.deterrence import Action, Deterrence
from firmware.rules.schedule import Schedule, schedules_for
from firmware.uplink import protocol

logger = logging.getLogger(__name__)

GAP_S = 1.0  # an event unseen for longer than this starts its minimum duration afresh
REASON_LEN = 64  # the protocol's limit for a suppressed step's reason


@dataclass(frozen=True)
class Event:
    """One detection the rules look at: what, where in which image, and when."""

    kind: str  # a rule's ``event``: "fire", "person", ...
    t: float
    point: tuple[float, float]  # where it counts: the bottom centre of its box, in pixels
    sensor: str = "thermal"
    cls: str | None = None  # the object class, for detectors that have them
    object_id: int = 0  # distinct objects count separately towards ``min_count``
    frame_index: int = 0
    max_temp_c: float | None = None
    box: tuple[int, int, int, int] | None = None


@dataclass
class OpenAlarm:
    """An alarm the unit has opened and not yet closed."""

    alarm_id: int
    ref: str
    rule: Rule
    zone: str
    opened_t: float
    last_seen_t: float
    max_temp_c: float | None  # fire: the hottest pixel seen
    box: tuple[int, int, int, int] | None
    test: bool = False


@dataclass
class _Pending:
    """A rule's conditions seen in a zone, not yet for its minimum duration."""

    first_t: float
    last_t: float


def fire_events(frame: ThermalFrame, spots: list[HotSpot]) -> list[Event]:
    """One fire event per confirmed hot spot of a frame."""
    return [
        Event(
            "fire",
            frame.t,
            spot.bottom_centre,
            object_id=spot.spot_id,
            frame_index=frame.index,
            max_temp_c=spot.max_temp_c,
            box=spot.box,
        )
        for spot in spots
    ]


# commit(message builder taking msg_id, priority, ref) -> msg_id; the runtime binds the outbox.
Commit = Callable[[Callable[[int], protocol.Message], int, str], int]


class RuleEngine:
    """Turns events into alarm lifecycles and deterrence."""

    def __init__(
        self,
        site: SiteConfig,
        deterrence: Deterrence,
        commit: Commit,
        next_alarm_id: Callable[[], int],
        *,
        schedules: Mapping[str, Schedule] | None = None,
    ) -> None:
        self.site = site
        self.deterrence = deterrence
        self.commit = commit
        self.next_alarm_id = next_alarm_id
        self.schedules = schedules if schedules is not None else schedules_for(site)
        if deterrence.schedules is None:
            deterrence.use_schedules(self.schedules)  # quiet hours are one of the schedules
        self.zones: dict[str, tuple[str, PreparedGeometry]] = {
            name: (z.sensor, prep(Polygon(z.polygon))) for name, z in site.zones.items() if z.armed
        }
        self.open: dict[tuple[str, str], OpenAlarm] = {}
        self.actions: dict[str, list[Action]] = {}
        self.armed = True
        self.test_mode = False
        self._pending: dict[tuple[str, str], _Pending] = {}

    def set_armed(self, armed: bool) -> None:
        """Arm or disarm: disarmed, no new alarm opens (open ones run their course)."""
        if armed != self.armed:
            logger.info("unit %s: %s", self.site.unit.id, "armed" if armed else "disarmed")
        self.armed = armed
        self._pending.clear()

    def set_test_mode(self, on: bool) -> None:
        """Test mode: rules evaluated and alarms raised as tests; outputs not switched."""
        if on != self.test_mode:
            logger.info("unit %s: test mode %s", self.site.unit.id, "on" if on else "off")
        self.test_mode = on
        self.deterrence.set_test_mode(on)

    def zones_of(self, event: Event) -> list[str]:
        """The armed zones on the event's sensor that hold its point."""
        point = Point(*event.point)
        return [
            name
            for name, (sensor, poly) in self.zones.items()
            if sensor == event.sensor and poly.covers(point)
        ]

    def on_events(self, t: float, events: list[Event]) -> None:
        """Handle one frame's events at time ``t``, then close alarms that have cleared."""
        matches: dict[tuple[str, str], list[Event]] = {}
        rules = {rule.name: rule for rule in self.site.rules}
        for event in events:
            for zone in self.zones_of(event):
                for rule in self.site.rules:
                    if rule.event != event.kind or zone not in rule.zones:
                        continue
                    if rule.classes and event.cls not in rule.classes:
                        continue
                    matches.setdefault((rule.name, zone), []).append(event)
        for (rule_name, zone), found in matches.items():
            self._seen(rules[rule_name], zone, found, t)
        for key, pending in list(self._pending.items()):
            if t - pending.last_t > GAP_S:
                del self._pending[key]
        clear_s = self.site.detection.fire.clear_after_s
        for key, alarm in list(self.open.items()):
            if t - alarm.last_seen_t >= clear_s:
                self._close(key, alarm, t)

    def _seen(self, rule: Rule, zone: str, events: list[Event], t: float) -> None:
        key = (rule.name, zone)
        hottest = max(events, key=lambda e: e.max_temp_c or 0.0)
        alarm = self.open.get(key)
        if alarm is not None:
            alarm.last_seen_t = t
            if hottest.max_temp_c is not None:
                alarm.max_temp_c = max(alarm.max_temp_c or hottest.max_temp_c, hottest.max_temp_c)
            alarm.box = hottest.box or alarm.box
            return
        if not self.armed:
            return
        if rule.schedule is not None and not self.schedules[rule.schedule].active(t):
            return
        if len({e.object_id for e in events}) < rule.min_count:
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(t, t)
        pending.last_t = t
        if t - pending.first_t + 1e-6 < rule.min_duration_s:
            return
        del self._pending[key]
        self._open(rule, zone, hottest, t)

    def _open(self, rule: Rule, zone: str, event: Event, t: float) -> None:
        alarm_id = self.next_alarm_id()
        ref = f"{self.site.unit.id}/{alarm_id}"
        alarm = OpenAlarm(
            alarm_id, ref, rule, zone, t, t, event.max_temp_c, event.box, test=self.test_mode
        )
        self.open[(rule.name, zone)] = alarm
        logger.info(
            "%s: rule %s matched: %s in zone %s, frame %d, %s %d box=%s%s%s",
            ref,
            rule.name,
            event.kind,
            zone,
            event.frame_index,
            "hot spot" if event.kind == "fire" else "object",
            event.object_id,
            event.box,
            f" max={alarm.max_temp_c:.1f}C" if alarm.max_temp_c is not None else "",
            " (test mode)" if alarm.test else "",
        )
        profile = self.site.deterrence.profiles.get(rule.profile) if rule.profile else None
        now = self.deterrence.clock.now()
        preview = self.deterrence.preview(profile, zone, now=now) if profile is not None else []
        # Commit first: whatever happens next, the alarm is on disk.
        self._send(alarm, protocol.Phase.OPEN, t, preview)
        if profile is None or rule.profile is None:
            return
        if alarm.test:
            self.actions[ref] = preview
            for a in preview:
                if a.suppressed is None:
                    logger.info("%s: test mode: would switch %s for %g s", ref, a.output, a.seconds)
            return
        actions = self.deterrence.activate(rule.profile, profile, ref, zone, now=now)
        if actions != preview:  # another thread switched something in between
            logger.warning("%s: deterrence differs from what the alarm announced", ref)
        self.actions[ref] = actions

    def _close(self, key: tuple[str, str], alarm: OpenAlarm, now: float) -> None:
        del self.open[key]
        logger.info(
            "%s: closed: no %s in zone %s for %.0f s",
            alarm.ref,
            alarm.rule.event,
            alarm.zone,
            now - alarm.last_seen_t,
        )
        self._send(alarm, protocol.Phase.CLOSE, now, [])

    def _send(
        self,
        alarm: OpenAlarm,
        phase: protocol.Phase,
        t: float,
        actions: list[Action],
    ) -> None:
        done = tuple((a.output, round(a.seconds)) for a in actions if a.suppressed is None)
        held = tuple(
            (a.output, (a.suppressed or a.limited or "")[:REASON_LEN])
            for a in actions
            if a.suppressed is not None or a.limited is not None
        )

        def build(msg_id: int) -> protocol.Message:
            return protocol.Alarm(
                unit_id=self.site.unit.id,
                msg_id=msg_id,
                time_s=round(t),
                alarm_id=alarm.alarm_id,
                phase=phase,
                event=protocol.EventKind[alarm.rule.event.upper()],
                priority=alarm.rule.priority,
                zone=alarm.zone,
                rule=alarm.rule.name,
                max_temp_dc=None if alarm.max_temp_c is None else round(alarm.max_temp_c * 10),
                box=alarm.box,
                actions=done,
                suppressed=held,
                started_s=round(alarm.opened_t),
                test=alarm.test,
            )

        self.commit(build, alarm.rule.priority, alarm.ref)
