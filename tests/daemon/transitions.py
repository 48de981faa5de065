"""Every UTC-offset change of every zone in zoneinfo over a span, found independently of the
code under test (daily readings, then bisection to the second)."""

from __future__ import annotations

import functools
import math
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

FROM = datetime(2026, 1, 1, tzinfo=UTC)
TO = datetime(2028, 1, 1, tzinfo=UTC)
#: Seconds between offset readings.
STEP = 5 * 86_400


@dataclass(frozen=True)
class Transition:
    """One change of a zone's UTC offset."""

    zone: str
    at: datetime  #: first instant (UTC) with the new offset
    before: timedelta
    after: timedelta

    @property
    def forward(self) -> bool:
        """Clocks went forward: some wall times were skipped."""
        return self.after > self.before

    def __str__(self) -> str:  # Hypothesis prints examples with it
        return f"{self.zone} {self.at:%Y-%m-%d %H:%M:%S}Z {self.before}->{self.after}"


def _offset(zone: ZoneInfo, posix: int) -> timedelta:
    offset = datetime.fromtimestamp(posix, UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _bisect(zone: ZoneInfo, low: int, high: int) -> int:
    old = _offset(zone, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == old:
            low = middle
        else:
            high = middle
    return high


def zone_transitions(name: str, start: datetime = FROM, end: datetime = TO) -> list[Transition]:
    """The offset changes of one zone in [start, end) (readings STEP apart: no zone changes
    twice within one, checked once against daily readings)."""
    zone = ZoneInfo(name)
    found = []
    low = math.floor(start.timestamp())
    low_offset = _offset(zone, low)
    while low < end.timestamp():
        high = low + STEP
        high_offset = _offset(zone, high)
        if high_offset != low_offset:
            at = _bisect(zone, low, high)
            found.append(
                Transition(
                    name,
                    datetime.fromtimestamp(at, UTC),
                    _offset(zone, at - 1),
                    _offset(zone, at),
                )
            )
            low, low_offset = at, _offset(zone, at)
        else:
            low, low_offset = high, high_offset
    return found


@functools.cache
def all_transitions() -> tuple[Transition, ...]:
    """Every offset change of every zone in 2026-2027, sorted by zone and time."""
    return tuple(
        t for name in sorted(zoneinfo.available_timezones()) for t in zone_transitions(name)
    )


def span_of(transitions: tuple[Transition, ...], zone: str) -> list[Transition]:
    return [t for t in transitions if t.zone == zone]
