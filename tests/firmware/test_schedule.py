"""Schedules: weekly windows across both DST changes, and windows that follow the sun (astral)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from astral import Observer
from astral import sun as astral_sun

from firmware.rules.schedule import Schedule, TimeSpec, parse_time_spec, window_spec

STOCKHOLM = zoneinfo.ZoneInfo("Europe/Stockholm")
UTC = dt.UTC
ESKILSTUNA = (59.37, 16.51)
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def utc(text: str) -> float:
    """Epoch seconds of a UTC wall time, ``YYYY-MM-DD HH:MM``."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()


def night(days: tuple[str, ...] = tuple(DAYS)) -> Schedule:
    return Schedule("night", [window_spec(days, "22:00", "05:00")], "Europe/Stockholm")


# 2026-03-29: at 01:00 UTC the clocks go from 02:00 CET (+01) to 03:00 CEST (+02).
SPRING = [
    ("2026-03-28 20:59", False),  # 21:59 CET, Saturday evening
    ("2026-03-28 21:00", True),  # 22:00 CET: the window opens
    ("2026-03-28 22:59", True),  # 23:59 CET
    ("2026-03-28 23:01", True),  # 00:01 CET, after midnight
    ("2026-03-29 00:59", True),  # 01:59 CET, the last minute before the change
    ("2026-03-29 01:00", True),  # 03:00 CEST, the first minute after it
    ("2026-03-29 01:30", True),  # 03:30 CEST
    ("2026-03-29 02:59", True),  # 04:59 CEST
    ("2026-03-29 03:00", False),  # 05:00 CEST: closed (a fixed +7 h would still be open)
    ("2026-03-29 19:59", False),  # 21:59 CEST on Sunday
    ("2026-03-29 20:00", True),  # 22:00 CEST: the next night, on summer time
]

# 2026-10-25: at 01:00 UTC the clocks go from 03:00 CEST (+02) back to 02:00 CET (+01).
AUTUMN = [
    ("2026-10-24 19:59", False),  # 21:59 CEST
    ("2026-10-24 20:00", True),  # 22:00 CEST: opens
    ("2026-10-24 22:30", True),  # 00:30 CEST, after midnight
    ("2026-10-25 00:30", True),  # 02:30 CEST, the first time
    ("2026-10-25 00:59", True),  # 02:59 CEST
    ("2026-10-25 01:00", True),  # 02:00 CET, the hour again
    ("2026-10-25 01:30", True),  # 02:30 CET, the second time
    ("2026-10-25 03:59", True),  # 04:59 CET
    ("2026-10-25 04:00", False),  # 05:00 CET: closed (a fixed +7 h would have closed at 04:00)
    ("2026-10-25 20:59", False),  # 21:59 CET on Sunday
    ("2026-10-25 21:00", True),  # 22:00 CET: the next night, on standard time
]


@pytest.mark.parametrize(("when", "armed"), SPRING + AUTUMN, ids=[w for w, _ in SPRING + AUTUMN])
def test_night_window_arms_correctly_on_both_dst_nights(when: str, armed: bool) -> None:
    assert night().active(utc(when)) is armed


def test_the_dst_nights_are_as_long_as_the_wall_clock_says() -> None:
    sched = night()
    spring = sched.opened_on(dt.date(2026, 3, 28))
    autumn = sched.opened_on(dt.date(2026, 10, 24))
    assert spring == [(utc("2026-03-28 21:00"), utc("2026-03-29 03:00"))]  # 6 h
    assert autumn == [(utc("2026-10-24 20:00"), utc("2026-10-25 04:00"))]  # 8 h
    ordinary = sched.opened_on(dt.date(2026, 3, 21))
    assert ordinary[0][1] - ordinary[0][0] == 7 * 3600


def test_times_the_changes_skip_or_repeat() -> None:
    # 02:30 does not exist on 29 March: the window opens at 03:30 CEST (the offset before).
    skipped = Schedule("s", [window_spec(["sun"], "02:30", "04:00")], "Europe/Stockholm")
    assert skipped.opened_on(dt.date(2026, 3, 29)) == [
        (utc("2026-03-29 01:30"), utc("2026-03-29 02:00"))
    ]
    # 02:30 happens twice on 25 October: the first one counts.
    repeated = Schedule("r", [window_spec(["sun"], "02:30", "04:00")], "Europe/Stockholm")
    assert repeated.opened_on(dt.date(2026, 10, 25))[0][0] == utc("2026-10-25 00:30")


def test_weekdays_are_the_days_a_window_opens() -> None:
    weekend = night(("fri", "sat"))
    assert weekend.active(utc("2026-03-27 22:00"))  # Friday 23:00 CET
    assert weekend.active(utc("2026-03-28 02:00"))  # Saturday 03:00: Friday's night
    assert weekend.active(utc("2026-03-29 02:00"))  # Sunday 04:00 CEST: Saturday's night
    assert not weekend.active(utc("2026-03-29 21:00"))  # Sunday 23:00 CEST
    assert not weekend.active(utc("2026-03-26 22:00"))  # Thursday 23:00 CET


@pytest.mark.parametrize("day", [dt.date(2026, 12, 21), dt.date(2026, 6, 21)], ids=str)
def test_sun_relative_window_follows_astral_for_eskilstuna(day: dt.date) -> None:
    lat, lon = ESKILSTUNA
    sched = Schedule(
        "dark", [window_spec(DAYS, "sunset+30min", "sunrise-15min")], "Europe/Stockholm", lat, lon
    )
    observer = Observer(latitude=lat, longitude=lon)
    sunset = astral_sun.sunset(observer, day, tzinfo=STOCKHOLM)
    sunrise = astral_sun.sunrise(observer, day + dt.timedelta(days=1), tzinfo=STOCKHOLM)
    opens = sunset.timestamp() + 30 * 60
    closes = sunrise.timestamp() - 15 * 60
    assert sched.opened_on(day) == [(opens, closes)]
    for t, armed in [
        (opens - 60, False),
        (opens + 60, True),
        ((opens + closes) / 2, True),
        (closes - 60, True),
        (closes + 60, False),
    ]:
        assert sched.active(t) is armed
    # Local times, not UTC: winter sunset in Eskilstuna is mid-afternoon, summer's near 22:00.
    assert sunset.hour in ((14, 15) if day.month == 12 else (21, 22))


def test_dusk_that_never_comes_means_no_window() -> None:
    # At 66 N the sun stays above -6 degrees all midsummer night: no civil dusk, no window.
    sched = Schedule("d", [window_spec(DAYS, "dusk", "dawn")], "Europe/Stockholm", 66.0, 20.0)
    assert sched.opened_on(dt.date(2026, 6, 21)) == []
    assert sched.opened_on(dt.date(2026, 12, 21)) != []


def test_next_start_finds_where_a_window_begins() -> None:
    sched = night()
    assert sched.next_start(utc("2026-06-10 19:50"), utc("2026-06-10 20:30")) == utc(
        "2026-06-10 20:00"
    )
    assert sched.next_start(utc("2026-06-10 17:00"), utc("2026-06-10 18:00")) is None


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("22:00", TimeSpec(None, 22 * 60)),
        ("7:05", TimeSpec(None, 7 * 60 + 5)),
        ("sunset", TimeSpec("sunset", 0)),
        ("sunset+30min", TimeSpec("sunset", 30)),
        ("sunrise-15min", TimeSpec("sunrise", -15)),
        ("dusk+1h30min", TimeSpec("dusk", 90)),
    ],
)
def test_time_specs_parse(text: str, spec: TimeSpec) -> None:
    assert parse_time_spec(text) == spec


@pytest.mark.parametrize("text", ["24:00", "12:60", "noon", "sunset+", "sunset+30", "sunset+7h"])
def test_bad_time_specs_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("+", r"\+")):
        parse_time_spec(text)


def test_sun_relative_schedule_needs_coordinates() -> None:
    with pytest.raises(ValueError, match="no coordinates"):
        Schedule("dark", [window_spec(DAYS, "sunset", "sunrise")], "Europe/Stockholm")
