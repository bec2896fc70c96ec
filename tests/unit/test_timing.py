"""Schedule timing: cron and interval parsing, next ticks across DST changes,
and catch-up policies, all with "now" passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobsys.errors import SpecError
from jobsys.timing import CatchUp, Timing, due_ticks, parse_timing

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_aliases_and_spacing_are_normalised() -> None:
    assert parse_timing("@hourly").cron == "0 * * * *"
    assert parse_timing("  */15   *  * * * ").cron == "*/15 * * * *"
    assert parse_timing(interval_s=30, timezone="Europe/Berlin") == Timing(
        cron=None, interval_s=30, timezone="Europe/Berlin"
    )


@pytest.mark.parametrize(
    ("kwargs", "field", "hint"),
    [
        ({"cron": "61 * * * *"}, "cron", "not a valid cron line"),
        ({"cron": "* * * *"}, "cron", "has 4 fields; give 5"),
        ({"cron": "@fortnightly"}, "cron", "unknown alias"),
        ({"cron": "* * * * *", "interval_s": 5}, "cron", "not both"),
        ({}, "cron", "neither"),
        ({"interval_s": 0}, "interval_s", "at least 1"),
        ({"interval_s": "10"}, "interval_s", "whole number"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
    ],
)
def test_bad_timing_names_the_field(kwargs: dict[str, object], field: str, hint: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_timing(**kwargs)  # type: ignore[arg-type]
    assert hint in caught.value.fields[field]


def test_interval_ticks_are_aligned_and_strictly_after() -> None:
    every_15_min = parse_timing(interval_s=900)
    assert every_15_min.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 15)
    assert every_15_min.next_after(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 30)
    assert every_15_min.latest_until(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 15)


def test_cron_in_a_time_zone() -> None:
    at_nine = parse_timing("0 9 * * *", timezone="Europe/Berlin")
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer
    assert at_nine.next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 8)
    assert at_nine.next_after(utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 7)


def test_hourly_through_the_fall_back_fires_every_real_hour() -> None:
    hourly = parse_timing("@hourly", timezone="Europe/Berlin")
    start = datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN)
    ticks = hourly.ticks(start, utc(2026, 10, 25, 2, 30), limit=10)  # 4 real hours on
    # 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET: four real hours, none doubled
    assert ticks == [
        utc(2026, 10, 24, 23 + h) if h < 1 else utc(2026, 10, 25, h - 1) for h in range(4)
    ]


def test_a_time_skipped_by_spring_forward_fires_once_just_after() -> None:
    at_230 = parse_timing("30 2 * * *", timezone="Europe/Berlin")
    first = at_230.next_after(datetime(2026, 3, 28, 12, tzinfo=BERLIN))
    assert first.astimezone(BERLIN).isoformat() == "2026-03-29T03:00:00+02:00"
    second = at_230.next_after(first)
    assert second.astimezone(BERLIN).isoformat() == "2026-03-30T02:30:00+02:00"


EVERY_MINUTE = parse_timing("* * * * *")
WINDOW = timedelta(minutes=10)


def test_a_tick_on_time_fires_once_whatever_the_policy() -> None:
    for policy in CatchUp:
        due = due_ticks(
            EVERY_MINUTE, utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 0, 0), policy, WINDOW
        )
        assert due == [utc(2026, 1, 1, 10, 0)]
    assert (
        due_ticks(
            EVERY_MINUTE, utc(2026, 1, 1, 10, 1), utc(2026, 1, 1, 10, 0, 59), CatchUp.ALL, WINDOW
        )
        == []
    )


def test_catch_up_policies_after_an_hour_down() -> None:
    missed_since, now = utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 10, 0, 30)
    assert due_ticks(EVERY_MINUTE, missed_since, now, CatchUp.SKIP, WINDOW) == [
        utc(2026, 1, 1, 10, 0)
    ]
    assert due_ticks(EVERY_MINUTE, missed_since, now, CatchUp.ONCE, WINDOW) == [
        utc(2026, 1, 1, 9, 0),
        utc(2026, 1, 1, 10, 0),
    ]
    every = due_ticks(EVERY_MINUTE, missed_since, now, CatchUp.ALL, WINDOW)
    # bounded by the window: the ten minutes before now, oldest first
    assert every == [utc(2026, 1, 1, 9, 51) + timedelta(minutes=i) for i in range(10)]
    assert due_ticks(EVERY_MINUTE, missed_since, now, CatchUp.ALL, WINDOW, limit=3) == every[-3:]


def test_all_within_the_window_starts_at_the_first_missed_tick() -> None:
    due = due_ticks(
        EVERY_MINUTE, utc(2026, 1, 1, 9, 58), utc(2026, 1, 1, 10, 0), CatchUp.ALL, WINDOW
    )
    assert due == [utc(2026, 1, 1, 9, 58), utc(2026, 1, 1, 9, 59), utc(2026, 1, 1, 10, 0)]


def test_a_long_outage_with_a_one_second_interval_stays_cheap() -> None:
    every_second = parse_timing(interval_s=1)
    due = due_ticks(
        every_second, utc(2025, 1, 1), utc(2026, 1, 1), CatchUp.ALL, timedelta(days=400), limit=5
    )
    assert due == [utc(2025, 12, 31, 23, 59, 56) + timedelta(seconds=i) for i in range(5)]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        EVERY_MINUTE.next_after(datetime(2026, 1, 1))
