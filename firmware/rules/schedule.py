"""Schedules: weekly windows in the site's time zone, by clock time or relative to the sun.

A window starts on each of its days at ``start`` and lasts until the next ``end`` after that:
``22:00`` to ``05:00`` ends the next morning, ``sunset+30min`` to ``sunrise-15min`` ends at the
next sunrise. Local times are turned into instants per date through the time zone database, so a
window is as long as the wall clock says, also on the nights the clocks change. A clock time the
spring change skips is read with the offset before the change (02:30 becomes 03:30 CEST); one the
autumn change repeats means its first occurrence. A sun event that does not happen on a date (no
dusk at a northern midsummer) means the window does not open that day.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from astral import Observer
from astral import sun as astral_sun

if TYPE_CHECKING:
    from firmware.config.site import SiteConfig

logger = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SUN_EVENTS = ("sunrise", "sunset", "dawn", "dusk")  # dawn and dusk: civil twilight (-6 degrees)
MAX_OFFSET_MIN = 6 * 60

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_SUN = re.compile(r"^(sunrise|sunset|dawn|dusk)(?:([+-])(?:(\d{1,2})h)?(?:(\d{1,3})min)?)?$")
_CACHE_DAYS = 32  # dates whose window instants are kept


@dataclass(frozen=True)
class TimeSpec:
    """A time of day: a clock time, or a sun event with an offset in minutes."""

    event: str | None  # None: a clock time
    minutes: int  # clock: minutes after midnight; sun: offset from the event

    def __str__(self) -> str:
        if self.event is None:
            return f"{self.minutes // 60:02d}:{self.minutes % 60:02d}"
        if self.minutes == 0:
            return self.event
        sign = "+" if self.minutes > 0 else "-"
        return f"{self.event}{sign}{abs(self.minutes)}min"


def parse_time_spec(text: str) -> TimeSpec:
    """Parse ``HH:MM`` or ``sunset+30min`` / ``sunrise-1h15min``; raise ValueError if neither."""
    text = text.strip()
    clock = _CLOCK.match(text)
    if clock:
        hours, minutes = int(clock.group(1)), int(clock.group(2))
        if hours > 23 or minutes > 59:
            raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59)")
        return TimeSpec(None, hours * 60 + minutes)
    sun = _SUN.match(text)
    if sun is None or (sun.group(2) and not (sun.group(3) or sun.group(4))):
        raise ValueError(
            f"{text!r} is neither HH:MM nor a sun event (sunrise, sunset, dawn, dusk) "
            "with an optional offset such as +30min or -1h15min"
        )
    offset = int(sun.group(3) or 0) * 60 + int(sun.group(4) or 0)
    if offset > MAX_OFFSET_MIN:
        raise ValueError(f"{text!r}: an offset may be at most {MAX_OFFSET_MIN // 60} h")
    return TimeSpec(sun.group(1), -offset if sun.group(2) == "-" else offset)


@dataclass(frozen=True)
class WindowSpec:
    """One weekly window: the weekdays it starts on (0 = Monday), its start and its end."""

    days: frozenset[int]
    start: TimeSpec
    end: TimeSpec


_SUN_FUNCS: dict[str, Callable[..., dt.datetime]] = {
    "sunrise": astral_sun.sunrise,
    "sunset": astral_sun.sunset,
    "dawn": astral_sun.dawn,
    "dusk": astral_sun.dusk,
}


class Schedule:
    """A named set of weekly windows, evaluated in one time zone (and place, for sun events)."""

    def __init__(
        self,
        name: str,
        windows: Iterable[WindowSpec],
        timezone: str,
        latitude: float | None = None,
        longitude: float | None = None,
    ) -> None:
        self.name = name
        self.windows = tuple(windows)
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.observer: Observer | None = None
        if latitude is not None and longitude is not None:
            self.observer = Observer(latitude=latitude, longitude=longitude)
        if self.observer is None and any(
            w.start.event or w.end.event for w in self.windows
        ):  # the config's cross-checks say this first; a direct caller gets it here
            raise ValueError(f"schedule {name!r} is relative to the sun but has no coordinates")
        self._cache: dict[dt.date, list[tuple[float, float]]] = {}

    def instant(self, spec: TimeSpec, day: dt.date) -> float | None:
        """The epoch time of ``spec`` on local date ``day`` (None: the sun event does not occur)."""
        if spec.event is None:
            hours, minutes = divmod(spec.minutes, 60)
            return dt.datetime.combine(day, dt.time(hours, minutes), tzinfo=self.tz).timestamp()
        assert self.observer is not None  # checked in __init__
        try:
            when = _SUN_FUNCS[spec.event](self.observer, day, tzinfo=self.tz)
        except ValueError:  # the sun does not reach that elevation on this date
            return None
        return when.timestamp() + spec.minutes * 60

    def opened_on(self, day: dt.date) -> list[tuple[float, float]]:
        """The windows that start on local date ``day``, as epoch intervals [start, end)."""
        cached = self._cache.get(day)
        if cached is not None:
            return cached
        out: list[tuple[float, float]] = []
        for window in self.windows:
            if day.weekday() not in window.days:
                continue
            start = self.instant(window.start, day)
            if start is None:
                continue
            end = self.instant(window.end, day)
            if end is None or end <= start:
                end = self.instant(window.end, day + dt.timedelta(days=1))
            if end is None or end <= start:
                continue
            out.append((start, end))
        if len(self._cache) >= _CACHE_DAYS:
            self._cache.clear()
        self._cache[day] = out
        return out

    def intervals(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """The windows that overlap [t0, t1), in order of their start."""
        first = dt.datetime.fromtimestamp(t0, self.tz).date() - dt.timedelta(days=2)
        last = dt.datetime.fromtimestamp(t1, self.tz).date()
        out: list[tuple[float, float]] = []
        day = first
        while day <= last:
            out.extend(w for w in self.opened_on(day) if w[0] < t1 and w[1] > t0)
            day += dt.timedelta(days=1)
        return sorted(out)

    def active(self, t: float) -> bool:
        """Whether ``t`` lies inside one of the windows."""
        return any(start <= t < end for start, end in self.intervals(t, t + 1e-3))

    def next_start(self, t0: float, t1: float) -> float | None:
        """The first instant in (t0, t1) at which the schedule becomes active, if any."""
        starts = [start for start, _ in self.intervals(t0, t1) if t0 < start < t1]
        return min(starts) if starts else None


def window_spec(days: Iterable[str], start: str, end: str) -> WindowSpec:
    """A window from its config form (day names, time specs)."""
    return WindowSpec(
        frozenset(DAYS.index(d) for d in days), parse_time_spec(start), parse_time_spec(end)
    )


def schedules_for(site: SiteConfig) -> dict[str, Schedule]:
    """The site's named schedules, ready to evaluate."""
    unit = site.unit
    return {
        name: Schedule(
            name,
            (window_spec(w.days, w.start, w.end) for w in cfg.windows),
            unit.timezone,
            unit.latitude,
            unit.longitude,
        )
        for name, cfg in site.schedules.items()
    }


def describe(schedules: Mapping[str, Schedule], name: str) -> str:
    """A schedule's windows, for log lines."""
    sched = schedules[name]
    parts = []
    for w in sched.windows:
        days = "daily" if len(w.days) == 7 else ",".join(DAYS[d] for d in sorted(w.days))
        parts.append(f"{days} {w.start}-{w.end}")
    return f"{name} ({'; '.join(parts)})"
