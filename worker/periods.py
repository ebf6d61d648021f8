"""ISO-week periods ("2026-W47") and their UTC bounds in a given time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.errors import InputError

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class Period:
    key: str
    start_utc: datetime
    end_utc: datetime  # exclusive


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"time zone {name!r} is not a known IANA zone (e.g. Europe/Berlin)"
        ) from None


def iso_week(key: str, tz_name: str) -> Period:
    """Monday 00:00 to the next Monday 00:00, local time in tz_name, as UTC instants."""
    match = _WEEK.match(key.strip())
    if not match:
        raise InputError(f"week {key!r} must look like 2026-W47")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InputError(f"week {key!r} does not exist: {year} has no week {week}") from None
    if not 1970 <= year <= 9998:
        raise InputError(f"week {key!r} is out of range (years 1970 to 9998)")
    tz = zone(tz_name)
    start = datetime.combine(monday, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=tz)
    return Period(
        key=f"{year}-W{week:02d}", start_utc=start.astimezone(UTC), end_utc=end.astimezone(UTC)
    )


def week_of(instant: datetime, tz_name: str) -> str:
    """The ISO week key that `instant` falls in, seen from tz_name."""
    year, week, _ = instant.astimezone(zone(tz_name)).isocalendar()
    return f"{year}-W{week:02d}"
