"""Which ticks a schedule fires, in UTC whatever the machine's zone, and what a
user is told when a schedule's timing is refused (the API and the forms show
these messages as they are)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from jobsys.errors import SpecError
from jobsys.timing import MAX_INTERVAL_S, CatchUp, due_ticks, parse_timing


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def machine_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone is New York (UTC-5 in January), as on a server
    that was not set to UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def is_utc(moment: datetime) -> bool:
    return moment.utcoffset() == timedelta(0)


def test_ticks_are_utc_whatever_the_local_zone(machine_in_new_york: None) -> None:
    # The scheduler stores ticks and compares them with "now"; SQLite keeps no
    # offset, so a tick in the machine's zone would be stored five hours off.
    hourly = parse_timing("0 * * * *", timezone="Europe/Berlin")
    moment = utc(2026, 1, 10, 12, 30)
    assert hourly.next_after(moment) == utc(2026, 1, 10, 13)
    assert is_utc(hourly.next_after(moment))
    assert hourly.latest_until(moment) == utc(2026, 1, 10, 12)
    assert is_utc(hourly.latest_until(moment))
    on_time = due_ticks(hourly, utc(2026, 1, 10, 12), moment, CatchUp.SKIP, timedelta(hours=1))
    assert on_time == [utc(2026, 1, 10, 12)]
    assert all(is_utc(tick) for tick in on_time)


def test_latest_until_is_at_or_before_in_the_schedules_zone() -> None:
    at_nine_berlin = parse_timing("0 9 * * *", timezone="Europe/Berlin")
    # 09:00 in Berlin is 08:00 UTC in winter: exactly then is "at", not "before"
    assert at_nine_berlin.latest_until(utc(2026, 1, 10, 8)) == utc(2026, 1, 10, 8)
    assert at_nine_berlin.latest_until(utc(2026, 1, 10, 7, 59)) == utc(2026, 1, 9, 8)
    assert at_nine_berlin.latest_until(utc(2026, 1, 10, 12)) == utc(2026, 1, 10, 8)


def test_interval_ticks_in_a_window_are_the_latest_limit_of_them() -> None:
    every_minute = parse_timing(interval_s=60)
    after, until = utc(2026, 1, 1, 10, 0, 30), utc(2026, 1, 1, 10, 5, 30)
    assert every_minute.ticks(after, until, limit=100) == [
        utc(2026, 1, 1, 10, minute) for minute in range(1, 6)
    ]
    assert every_minute.ticks(after, until, limit=2) == [
        utc(2026, 1, 1, 10, 4),
        utc(2026, 1, 1, 10, 5),
    ]
    # exactly one tick in the window, and none
    assert every_minute.ticks(utc(2026, 1, 1, 10, 0, 30), utc(2026, 1, 1, 10, 1, 30), 100) == [
        utc(2026, 1, 1, 10, 1)
    ]
    assert every_minute.ticks(utc(2026, 1, 1, 10, 0, 10), utc(2026, 1, 1, 10, 0, 50), 100) == []


def test_catch_up_all_fires_at_most_100_ticks_by_default() -> None:
    every_second = parse_timing(interval_s=1)
    now = utc(2026, 1, 1, 12)
    fired = due_ticks(every_second, now - timedelta(hours=1), now, CatchUp.ALL, timedelta(days=1))
    assert len(fired) == 100
    assert fired[-1] == now
    assert fired[0] == now - timedelta(seconds=99)


def test_an_interval_of_exactly_a_year_is_allowed_and_a_second_more_is_not() -> None:
    assert parse_timing(interval_s=MAX_INTERVAL_S).interval_s == MAX_INTERVAL_S
    with pytest.raises(SpecError) as caught:
        parse_timing(interval_s=MAX_INTERVAL_S + 1)
    assert caught.value.fields == {
        "interval_s": f"give a whole number of seconds, at least 1 and at most {MAX_INTERVAL_S} "
        "(a year)"
    }


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_a_blank_time_zone_means_utc(blank: str | None) -> None:
    assert parse_timing("@daily", timezone=blank).timezone == "UTC"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        (
            {"interval_s": 60, "timezone": 5},
            {"timezone": "give the time zone as text: an IANA name such as Europe/Berlin"},
        ),
        (
            {"cron": "  ", "interval_s": None},
            {"cron": "give either a cron line or interval_s, not both or neither"},
        ),
        (
            {"cron": "* * * * *", "interval_s": 60},
            {"cron": "give either a cron line or interval_s, not both or neither"},
        ),
        ({"interval_s": 1.5}, None),
        ({"interval_s": float("nan")}, {"interval_s": "give a whole number of seconds"}),
        ({"interval_s": True}, {"interval_s": "give a whole number of seconds"}),
        (
            {"cron": "@fortnightly"},
            {
                "cron": "unknown alias '@fortnightly'; use one of @yearly, @annually, @monthly, "
                "@weekly, @daily, @midnight, @hourly"
            },
        ),
        (
            {"cron": "0 0 * *"},
            {
                "cron": "'0 0 * *' has 4 fields; give 5: minute hour day-of-month month "
                "day-of-week (e.g. '*/15 * * * *')"
            },
        ),
        (
            {"cron": "0 0 30 2 *"},
            {"cron": "'0 0 30 2 *' never fires: no date matches its day and month fields"},
        ),
    ],
)
def test_what_a_refused_timing_tells_the_user(
    kwargs: dict[str, object], fields: dict[str, str] | None
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_timing(**kwargs)  # type: ignore[arg-type]
    if fields is None:  # a fraction of a second: the range message, which says "whole"
        assert list(caught.value.fields) == ["interval_s"]
        assert caught.value.fields["interval_s"].startswith("give a whole number of seconds")
    else:
        assert caught.value.fields == fields
