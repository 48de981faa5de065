"""Words for operators: crontab patterns ("every 15 minutes") and ages ("3m ago").

Pure functions, no clock: callers pass `now`. Patterns this module does not know come back
as the cron text itself, so a description is never wrong, only sometimes plain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTHS = ["", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_NUMBER = re.compile(r"^\d+$")
_STEP = re.compile(r"^\*/(\d+)$")


class _Unknown(Exception):
    """A field this describer does not put into words."""


def describe_cron(expr: str) -> str:
    """`*/15 * * * *` -> "every 15 minutes", `0 9 * * 1-5` -> "09:00 on Mon-Fri";
    anything else -> the cron text."""
    parts = expr.split()
    if len(parts) == 6:
        if parts[0] != "0":
            return expr
        parts = parts[1:]
    if len(parts) != 5:
        return expr
    try:
        return _describe(*parts)
    except _Unknown:
        return expr


def _describe(minute: str, hour: str, dom: str, month: str, dow: str) -> str:
    days = _days(dom, dow) + _months(month)
    if hour == "*" and minute == "*":
        return "every minute" + days
    step = _STEP.match(minute)
    if hour == "*" and step:
        n = int(step.group(1))
        return ("every minute" if n == 1 else f"every {n} minutes") + days
    if not _NUMBER.match(minute) or int(minute) > 59:
        raise _Unknown(minute)
    if hour == "*":
        return f"hourly at :{int(minute):02d}" + days
    step = _STEP.match(hour)
    if step:
        n = int(step.group(1))
        return ("hourly" if n == 1 else f"every {n} hours") + f" at :{int(minute):02d}" + days
    hours = hour.split(",")
    if not all(_NUMBER.match(h) and int(h) < 24 for h in hours):
        raise _Unknown(hour)
    times = ", ".join(f"{int(h):02d}:{int(minute):02d}" for h in hours)
    return times + (days or " every day")


def _days(dom: str, dow: str) -> str:
    if dom in ("*", "?") and dow in ("*", "?"):
        return ""
    if dow in ("*", "?"):
        return f" on day {_list(dom, _day_of_month)}"
    if dom in ("*", "?"):
        return f" on {_list(dow, _weekday)}"
    # crontab: when both are restricted, either one matching fires.
    return f" on day {_list(dom, _day_of_month)} or on {_list(dow, _weekday)}"


def _months(month: str) -> str:
    return "" if month == "*" else f" in {_list(month, _month)}"


def _list(field: str, name: Callable[[str], str]) -> str:
    """Comma lists and a-b ranges of plain values; steps are left to the fallback."""
    words = []
    for item in field.split(","):
        first, sep, last = item.partition("-")
        words.append(f"{name(first)}-{name(last)}" if sep else name(first))
    return ",".join(words)


def _day_of_month(value: str) -> str:
    if not _NUMBER.match(value) or not 1 <= int(value) <= 31:
        raise _Unknown(value)
    return str(int(value))


def _weekday(value: str) -> str:
    if _NUMBER.match(value) and int(value) <= 7:
        return _DAYS[int(value)]
    title = value.title()
    if title in _DAYS:
        return title
    raise _Unknown(value)


def _month(value: str) -> str:
    if _NUMBER.match(value) and 1 <= int(value) <= 12:
        return _MONTHS[int(value)]
    title = value.title()
    if title in _MONTHS[1:]:
        return title
    raise _Unknown(value)


def ago(moment: datetime | None, now: datetime) -> str:
    """Compact age: "just now", "42s ago", "3m ago", "5h ago", "2d ago"; "" for None."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return "in " + span(-seconds)
    if seconds < 1:
        return "just now"
    return span(seconds) + " ago"


def until(moment: datetime | None, now: datetime) -> str:
    """Compact time to come: "in 4m"; "" for None."""
    if moment is None:
        return ""
    seconds = (moment - now).total_seconds()
    return "now" if seconds < 1 else "in " + span(seconds)


def span(seconds: float) -> str:
    """42s, 3m, 5h, 2d: the largest whole unit."""
    delta = timedelta(seconds=seconds)
    if delta < timedelta(minutes=1):
        return f"{int(seconds)}s"
    if delta < timedelta(hours=1):
        return f"{int(seconds // 60)}m"
    if delta < timedelta(days=2):
        return f"{int(seconds // 3600)}h"
    return f"{delta.days}d"
