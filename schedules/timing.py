"""When a schedule fires: cron expressions read by croniter, in the schedule's own time zone.

Cron fields are matched against local wall-clock time, stepping over local times without a time
zone, and each match becomes one UTC instant through zoneinfo. So across DST changes:
- "09:00 local" fires at 09:00 local on both sides of the change (the UTC hour moves);
- a local time that does not exist (the spring-forward gap, e.g. 02:30 in Europe/Berlin on the
  last Sunday of March) fires once, at the same wall-clock distance past the gap (03:30);
- a local time that exists twice (the fall-back hour) fires once, at its first occurrence.
Two matches that land on the same instant count once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, croniter

from worker.errors import InputError
from worker.periods import zone

MAX_STEPS = 10_000  # bounds the search for a cron that (almost) never matches


def check_cron(expression: str) -> str:
    """The expression, trimmed, if croniter accepts it with five fields; else InputError."""
    cleaned = " ".join(expression.split())
    if len(cleaned.split(" ")) != 5:
        raise InputError(
            f"cron {expression!r} must have five fields: minute hour day-of-month month "
            'day-of-week (e.g. "0 9 * * MON")'
        )
    if not croniter.is_valid(cleaned):
        raise InputError(
            f"cron {expression!r} is not a valid cron expression "
            "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6 or MON-SUN)"
        )
    try:  # valid fields can still describe no date at all (30 February)
        croniter(cleaned, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise InputError(f"cron {expression!r} never matches a real date") from None
    return cleaned


def check_zone(name: str) -> ZoneInfo:
    """The zone, or InputError naming the field. Only named IANA zones: "localtime" or
    "Factory" would mean something else on every host."""
    if name not in _known_zones():
        raise InputError(f"tz {name!r} is not a known IANA time zone (e.g. Europe/Berlin)")
    return zone(name)


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones() - {"localtime", "Factory"})


def _instant(local: datetime, tz: ZoneInfo) -> datetime:
    # fold=0: the first of a repeated local time; a non-existent one keeps the offset from
    # before the gap, which places it the gap's length later on the wall clock.
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def fires_after(cron: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants strictly after `after` (UTC, aware)."""
    tz = check_zone(tz_name)
    # Start an hour early in local time: a repeated hour makes local time run backwards.
    start = after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=1)
    steps = croniter(cron, start)
    found: list[datetime] = []
    for _ in range(MAX_STEPS):
        instant = _instant(steps.get_next(datetime), tz)
        if instant > after and instant not in found:
            found.append(instant)
            if len(found) == count:
                break
    return sorted(found)


def last_fire(cron: str, tz_name: str, now: datetime) -> datetime | None:
    """The latest fire instant at or before `now` (UTC, aware), if one is within reach."""
    tz = check_zone(tz_name)
    start = now.astimezone(tz).replace(tzinfo=None) + timedelta(hours=1, seconds=1)
    steps = croniter(cron, start)
    for _ in range(MAX_STEPS):
        instant = _instant(steps.get_prev(datetime), tz)
        if instant <= now:
            return instant
    return None
