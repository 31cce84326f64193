"""Rules v1: fire in a zone -> alarm (open, close) and a deterrence profile.

For each rule and zone there is at most one open alarm. It opens when a confirmed hot spot's
bottom centre lies in an armed zone the rule names, and closes when no such spot has been seen for
``detection.fire.clear_after_s``. The alarm is committed to the outbox before anything else is done
for it; deterrence follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from firmware.config.site import Rule, SiteConfig
from firmware.detect.fire import HotSpot
from firmware.hal.base import ThermalFrame
from firmware.rules.deterrence import Action, Deterrence
from firmware.uplink import protocol

logger = logging.getLogger(__name__)


@dataclass
class OpenAlarm:
    """An alarm the unit has opened and not yet closed."""

    alarm_id: int
    ref: str
    rule: Rule
    zone: str
    opened_t: float
    last_seen_t: float
    max_temp_c: float
    box: tuple[int, int, int, int]


# commit(message builder taking msg_id, priority, ref) -> msg_id; the runtime binds the outbox.
Commit = Callable[[Callable[[int], protocol.Message], int, str], int]


class RuleEngine:
    """Turns confirmed hot spots into alarm lifecycles and deterrence."""

    def __init__(
        self,
        site: SiteConfig,
        deterrence: Deterrence,
        commit: Commit,
        next_alarm_id: Callable[[], int],
    ) -> None:
        self.site = site
        self.deterrence = deterrence
        self.commit = commit
        self.next_alarm_id = next_alarm_id
        self.zones: dict[str, PreparedGeometry] = {
            name: prep(Polygon(z.polygon))
            for name, z in site.zones.items()
            if z.armed and z.sensor == "thermal"
        }
        self.open: dict[tuple[str, str], OpenAlarm] = {}
        self.actions: dict[str, list[Action]] = {}

    def zone_of(self, spot: HotSpot) -> str | None:
        """The first armed zone that holds the spot's bottom centre."""
        point = Point(*spot.bottom_centre)
        return next((n for n, poly in self.zones.items() if poly.covers(point)), None)

    def on_fire(self, frame: ThermalFrame, spots: list[HotSpot]) -> None:
        """Handle one frame's confirmed hot spots."""
        for spot in spots:
            zone = self.zone_of(spot)
            if zone is None:
                continue
            for rule in self.site.rules:
                if rule.event == "fire" and zone in rule.zones:
                    self._seen(rule, zone, spot, frame)
        clear_s = self.site.detection.fire.clear_after_s
        for key, alarm in list(self.open.items()):
            if frame.t - alarm.last_seen_t >= clear_s:
                self._close(key, alarm, frame.t)

    def _seen(self, rule: Rule, zone: str, spot: HotSpot, frame: ThermalFrame) -> None:
        key = (rule.name, zone)
        alarm = self.open.get(key)
        if alarm is not None:
            alarm.last_seen_t = frame.t
            alarm.max_temp_c = max(alarm.max_temp_c, spot.max_temp_c)
            alarm.box = spot.box
            return
        alarm_id = self.next_alarm_id()
        ref = f"{self.site.unit.id}/{alarm_id}"
        alarm = OpenAlarm(alarm_id, ref, rule, zone, frame.t, frame.t, spot.max_temp_c, spot.box)
        self.open[key] = alarm
        logger.info(
            "%s: rule %s matched: fire in zone %s, frame %d, hot spot %d box=%s max=%.1fC",
            ref,
            rule.name,
            zone,
            frame.index,
            spot.spot_id,
            spot.box,
            spot.max_temp_c,
        )
        profile = self.site.deterrence.profiles.get(rule.profile) if rule.profile else None
        preview = self.deterrence.preview(profile) if profile is not None else []
        planned = tuple((a.output, round(a.seconds)) for a in preview if a.suppressed is None)
        # Commit first: whatever happens next, the alarm is on disk.
        self._send(alarm, protocol.Phase.OPEN, frame.t, planned)
        if profile is not None and rule.profile is not None:
            self.actions[ref] = self.deterrence.activate(rule.profile, profile, ref)

    def _close(self, key: tuple[str, str], alarm: OpenAlarm, now: float) -> None:
        del self.open[key]
        logger.info(
            "%s: closed: no fire in zone %s for %.0f s",
            alarm.ref,
            alarm.zone,
            now - alarm.last_seen_t,
        )
        self._send(alarm, protocol.Phase.CLOSE, now, ())

    def _send(
        self,
        alarm: OpenAlarm,
        phase: protocol.Phase,
        t: float,
        actions: tuple[tuple[str, int], ...],
    ) -> None:
        def build(msg_id: int) -> protocol.Message:
            return protocol.Alarm(
                unit_id=self.site.unit.id,
                msg_id=msg_id,
                time_ms=round(t * 1000),
                alarm_id=alarm.alarm_id,
                phase=phase,
                event=protocol.EventKind.FIRE,
                priority=alarm.rule.priority,
                zone=alarm.zone,
                rule=alarm.rule.name,
                max_temp_dc=round(alarm.max_temp_c * 10),
                box=alarm.box,
                actions=actions,
                started_ms=round(alarm.opened_t * 1000),
            )

        self.commit(build, alarm.rule.priority, alarm.ref)
