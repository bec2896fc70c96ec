"""When a schedule fires: cron lines and intervals in a time zone, and which
missed ticks to run by the schedule's catch-up policy.

Pure functions of the times passed in (no clock reads), so the maths is tested
without sleeping. Cron arithmetic across DST changes is croniter's, on
``zoneinfo`` zones: an hourly line fires every real hour through a fall-back
(02:00 twice), a daily 02:30 fires at 03:00 on a spring-forward day, as cron does.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from jobsys.errors import SpecError

#: The usual ``@`` names, as Vixie cron and Celery users know them.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_EPSILON = timedelta(microseconds=1)

#: The shortest interval a schedule may have; beat checks every second or so.
MIN_INTERVAL_S = 1
#: The longest: a year. Ticks count from the epoch, and far longer ones leave
#: the calendar (a schedule of 10^300 s cannot say when it next fires).
MAX_INTERVAL_S = 366 * 24 * 3600


class CatchUp(enum.StrEnum):
    """What to run for ticks missed while no scheduler ran (or it fell behind).

    - ``skip``: only the latest due tick;
    - ``once``: one catch-up run for the earliest missed tick, plus the latest;
    - ``all``: every due tick inside the catch-up window, oldest first.
    """

    SKIP = "skip"
    ONCE = "once"
    ALL = "all"


@dataclass(frozen=True)
class Timing:
    """A cron line (5 fields, aliases expanded) or an interval, in a time zone."""

    cron: str | None
    interval_s: int | None
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (aware), in UTC.

        An interval counts from the epoch, so ticks do not drift with restarts
        and every scheduler process computes the same ones.
        """
        moment = _aware(moment)
        if self.interval_s is not None:
            seconds = moment.timestamp()
            ticks = int(seconds // self.interval_s) + 1
            return datetime.fromtimestamp(ticks * self.interval_s, UTC)
        assert self.cron is not None
        local = moment.astimezone(self.zone)
        found: datetime = croniter(self.cron, local).get_next(datetime)
        return found.astimezone(UTC)

    def latest_until(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment``, in UTC."""
        moment = _aware(moment)
        if self.interval_s is not None:
            ticks = int(moment.timestamp() // self.interval_s)
            return datetime.fromtimestamp(ticks * self.interval_s, UTC)
        assert self.cron is not None
        local = (moment + _EPSILON).astimezone(self.zone)
        found: datetime = croniter(self.cron, local).get_prev(datetime)
        return found.astimezone(UTC)

    def ticks(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Ticks in ``(after, until]``, oldest first; the latest ``limit`` of them."""
        until = _aware(until)
        if self.interval_s is not None:
            first = self.next_after(after).timestamp()
            last = self.latest_until(until).timestamp()
            start = max(first, last - (limit - 1) * self.interval_s)
            count = int((last - start) // self.interval_s) + 1 if last >= start else 0
            return [datetime.fromtimestamp(start + i * self.interval_s, UTC) for i in range(count)]
        found: list[datetime] = []
        tick = self.next_after(after)
        while tick <= until:
            found.append(tick)
            if len(found) > limit:
                found.pop(0)
            tick = self.next_after(tick)
        return found


def parse_timing(
    cron: str | None = None, interval_s: int | float | None = None, timezone: str = "UTC"
) -> Timing:
    """Check and normalise a schedule's timing; SpecError names each bad field."""
    problems: dict[str, str] = {}
    zone_name = "UTC"
    if timezone is not None and not isinstance(timezone, str):
        problems["timezone"] = "give the time zone as text: an IANA name such as Europe/Berlin"
    else:
        zone_name = (timezone or "UTC").strip() or "UTC"
        try:
            ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            problems["timezone"] = (
                f"unknown time zone {zone_name!r}; use an IANA name such as UTC or Europe/Berlin"
            )
    line: str | None = None
    seconds: int | None = None
    if (cron is None or not str(cron).strip()) == (interval_s is None):
        problems["cron"] = "give either a cron line or interval_s, not both or neither"
    elif cron is not None:
        line = _check_cron(str(cron), problems)
    else:
        if (
            isinstance(interval_s, bool)
            or not isinstance(interval_s, int | float)
            or not math.isfinite(interval_s)
        ):
            problems["interval_s"] = "give a whole number of seconds"
        elif not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S or interval_s != int(interval_s):
            problems["interval_s"] = (
                f"give a whole number of seconds, at least {MIN_INTERVAL_S} and at most "
                f"{MAX_INTERVAL_S} (a year)"
            )
        else:
            seconds = int(interval_s)
    if problems:
        raise SpecError(problems)
    return Timing(cron=line, interval_s=seconds, timezone=zone_name)


def _check_cron(raw: str, problems: dict[str, str]) -> str | None:
    line = " ".join(raw.split())
    line = ALIASES.get(line.lower(), line)
    if line.startswith("@"):
        problems["cron"] = f"unknown alias {raw!r}; use one of {', '.join(ALIASES)}"
        return None
    if len(line.split()) != 5:
        problems["cron"] = (
            f"{raw!r} has {len(line.split())} fields; give 5: minute hour day-of-month "
            "month day-of-week (e.g. '*/15 * * * *')"
        )
        return None
    try:
        croniter(line)
    except (CroniterError, ValueError) as exc:
        problems["cron"] = f"{raw!r} is not a valid cron line: {exc}"
        return None
    try:
        # Valid fields can still name a day that never comes (February 30th).
        croniter(line, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        problems["cron"] = f"{raw!r} never fires: no date matches its day and month fields"
        return None
    return line


def due_ticks(
    timing: Timing,
    next_tick: datetime,
    now: datetime,
    policy: CatchUp,
    window: timedelta,
    limit: int = 100,
) -> list[datetime]:
    """The ticks to fire now, oldest first, given the schedule's stored next tick.

    ``all`` never reaches further back than ``window`` (nor more than ``limit``
    ticks), so a schedule that was off for a month does not flood the workers.
    """
    next_tick, now = _aware(next_tick), _aware(now)
    if next_tick > now:
        return []
    latest = timing.latest_until(now)
    if latest <= next_tick:
        return [next_tick]  # on time: nothing was missed
    if policy is CatchUp.SKIP:
        return [latest]
    if policy is CatchUp.ONCE:
        return [next_tick, latest]
    oldest = max(next_tick, now - window)
    return timing.ticks(oldest - _EPSILON, now, limit)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC)
