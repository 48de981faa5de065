"""A brute-force reading of cron text, written apart from the code under test.

It checks each instant on a grid against the fields (with crontab's day-of-month OR
day-of-week rule), and adds the wall times a spring-forward change skipped, read with the
offset before the change: the fire set daemon/firetimes.py promises.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.daemon.transitions import Transition


def _field(spec: str, value: int, low: int, high: int) -> bool:
    for part in spec.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(v) for v in base.split("-"))
        else:
            first = last = int(base)
            if step:
                last = high
        if first <= value <= last and (value - first) % int(step or 1) == 0:
            return True
    return False


def matches(expr: str, wall: datetime) -> bool:
    """Does a wall-clock reading match cron text (5 fields, or 6 with seconds)?"""
    fields = expr.split()
    second = fields[0] if len(fields) == 6 else "0"
    minute, hour, day, month, dow = fields[-5:]
    weekday = wall.isoweekday() % 7  # crontab: Sunday = 0 (or 7)
    dow_ok = _field(dow, weekday, 0, 7) or (weekday == 0 and _field(dow, 7, 0, 7))
    day_ok = _field(day, wall.day, 1, 31)
    date_ok = (day_ok or dow_ok) if "*" not in (day, dow) else (day_ok and dow_ok)
    return (
        date_ok
        and _field(second, wall.second, 0, 59)
        and _field(minute, wall.minute, 0, 59)
        and _field(hour, wall.hour, 0, 23)
        and _field(month, wall.month, 1, 12)
    )


def grid(expr: str) -> int:
    """Seconds between candidate instants: the expressions tested use multiples of it."""
    return 10 if len(expr.split()) == 6 else 60


def fires(
    expr: str, zone_name: str, start: datetime, end: datetime, changes: list[Transition]
) -> list[datetime]:
    """Every fire in [start, end] (UTC), sorted."""
    zone, step = ZoneInfo(zone_name), grid(expr)
    found: set[datetime] = set()
    posix = -(-int(start.timestamp()) // step) * step
    while posix <= end.timestamp():
        instant = datetime.fromtimestamp(posix, UTC)
        if matches(expr, instant.astimezone(zone).replace(tzinfo=None)):
            found.add(instant)
        posix += step
    for change in changes:
        if not change.forward:
            continue
        wall = (change.at + change.before).replace(tzinfo=None)
        while wall < (change.at + change.after).replace(tzinfo=None):
            instant = (wall - change.before).replace(tzinfo=UTC)
            if matches(expr, wall) and start <= instant <= end:
                found.add(instant)
            wall += timedelta(seconds=step)
    return sorted(found)
