"""The fire set of a schedule, and the pure maths over it: no clock, no I/O, always bounded.

What "fires" means
    APScheduler matches the fields against local wall-clock readings. This module defines the
    fires of a schedule as a set of UTC instants, and computes with instants only:

    - every instant whose local wall-clock reading matches the fields, and
    - every matching wall time that a spring-forward change skipped, read with the offset in
      force before the change (zoneinfo's fold=0), i.e. shifted later by the size of the jump.

    Repeated hour (autumn): a matching wall time happens twice, so it fires twice, once per
    offset. `*/15 * * * *` in Europe/London on 2026-10-25 fires at 00:00, 00:15 ... 01:45 UTC
    (01:00 BST ... 01:45 GMT): every 15 minutes of real time, no gap, no pause. A daily
    `30 1 * * *` fires at 01:30 BST and again at 01:30 GMT that day. This is APScheduler's
    own reading (it returns both folds when walked fire by fire); Vixie cron runs fixed-time
    jobs once instead. A run is idempotent, so the second fire costs a quick, empty run.
    Skipped hour (spring): `30 1 * * *` in London on 2026-03-29 fires once, at 02:30 BST
    (01:30 UTC), as APScheduler does when it steps into the gap; `*/15 * * * *` fires every
    15 minutes of real time (01:00 UTC = 02:00 BST, whether read as 01:00 or 02:00).

    Every replica therefore computes the same `scheduled_for` for one fire: it is an element
    of a set that depends only on the cron text and the zone, never on when or where one asks.

Why not APScheduler's get_next_fire_time directly
    It works in local wall-clock time. Asked from inside the first pass of a repeated hour it
    can step over the second pass (from 00:40 UTC, `30 1 * * *` jumps to the next day, missing
    01:30 GMT); asked just after a spring gap it misses the shifted fires; and adding a
    microsecond to a time in the second pass (as the old latest_fire_time did) lands in the
    first pass, an hour back, so a loop over fires never ended. Here APScheduler only matches
    fields, with its trigger in UTC (wall time without any DST); segments() splits time into
    stretches of one UTC offset, and within each stretch wall time and UTC differ by a
    constant. Every loop has a bound: a search ends at HORIZON with ScheduleError.

UTC-offset segments
    zoneinfo answers "what is the offset at this instant" but does not list its transitions,
    so they are found by reading the offset once an hour and bisecting each change to the
    second. A zone that changed its offset twice within one hour, and back, would be missed:
    no zone in the tz database does that, and the property tests check every zone for two
    years.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from daemon.errors import ScheduleError

#: Seconds between offset readings; shorter than the gap between two transitions.
_STEP = 3600
#: The largest jump of a UTC offset (Samoa skipped 30 December 2011: 24 h), with a margin.
MAX_JUMP = timedelta(hours=26)


@dataclass(frozen=True)
class Segment:
    """[start, end) in UTC, during which the zone's clocks read UTC + offset."""

    start: datetime  #: UTC, inclusive
    end: datetime  #: UTC, exclusive
    offset: timedelta
    #: When the segment begins with clocks going forward: the offset before the jump. The
    #: wall times the jump skipped are read with it (zoneinfo's fold=0), so they map into
    #: [start, start + (offset - skipped_from)).
    skipped_from: timedelta | None = None


def offset_at(zone: tzinfo, instant: datetime) -> timedelta:
    """The zone's UTC offset at an aware instant."""
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None, "aware datetimes always have an offset"
    return offset


@functools.lru_cache(maxsize=4096)
def _change_in_hour(zone: tzinfo, hour: int) -> tuple[int, timedelta]:
    """The offset change in (hour, hour + _STEP] (POSIX seconds), as (when, new offset),
    for an hour known to hold one. Offsets change on whole seconds, so bisection runs over
    whole seconds; memoised, as replicas and loops ask about the same change again."""
    low, high = hour, hour + _STEP
    old = _offset_posix(zone, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_posix(zone, middle) == old:
            low = middle
        else:
            high = middle
    return high, _offset_posix(zone, high)


def _offset_posix(zone: tzinfo, posix: int) -> timedelta:
    return offset_at(zone, datetime.fromtimestamp(posix, UTC))


@functools.lru_cache(maxsize=1024)
def _year_changes(zone: tzinfo, year: int) -> tuple[tuple[int, timedelta], ...]:
    """The offset changes at POSIX seconds in (1 January `year`, 1 January `year + 1`] UTC,
    in order, as (when, new offset): the offset read once an hour and each change bisected.
    Memoised per zone and year, so segments() over months or years (a monthly or yearly
    schedule, the whole fire set at every profile reload) costs lookups, not 24 readings a
    day; the readings are the same wherever a scan starts, so the changes found are too."""
    hour = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    stop = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()) if year < 9999 else _LAST_HOUR
    changes: list[tuple[int, timedelta]] = []
    reading = _offset_posix(zone, hour)
    while hour < stop:
        following = _offset_posix(zone, hour + _STEP)
        if following != reading:
            changes.append(_change_in_hour(zone, hour))
        hour, reading = hour + _STEP, following
    return tuple(changes)


#: The last whole hour whose next hour datetime can still represent.
_LAST_HOUR = int(datetime(9999, 12, 31, 22, tzinfo=UTC).timestamp())


def segments(zone: tzinfo, start: datetime, end: datetime) -> list[Segment]:
    """The segments covering [start, end), in order (the first starts at start, the last ends
    at end). start and end are aware; the result is in UTC."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first, last = start.timestamp(), end.timestamp()
    found: list[Segment] = []
    seg_start, offset, skipped_from = start, offset_at(zone, start), None
    changes = (c for year in range(start.year, end.year + 1) for c in _year_changes(zone, year))
    for when, new in changes:
        if when <= first:
            continue
        if when >= last:
            break
        at = datetime.fromtimestamp(when, UTC)
        found.append(Segment(seg_start, at, offset, skipped_from))
        skipped_from = offset if new > offset else None
        seg_start, offset = at, new
    found.append(Segment(seg_start, end, offset, skipped_from))
    return found


_SECOND = timedelta(seconds=1)
#: The furthest a next fire is looked for: a valid schedule fires at least every 8 years
#: (29 February, across a century that is not a leap year).
HORIZON = timedelta(days=9 * 366)
#: First stretch searched for a next fire; grown fourfold up to HORIZON.
_FIRST_SPAN = timedelta(days=2)
#: Bound on the steps of latest_fire_time (2**64 seconds is far beyond any lookback).
_MAX_STEPS = 64


class WallSchedule(Protocol):
    """What the maths needs of a schedule (daemon.scheduler.Schedule)."""

    @property
    def expr(self) -> str: ...

    @property
    def zone(self) -> tzinfo: ...

    def first_wall(self, at: datetime) -> datetime | None:
        """The first matching wall-clock reading at or after `at` (a reading, tagged UTC)."""
        ...


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} is naive: schedule maths needs an aware instant")
    return moment.astimezone(UTC)


def _first_in(
    schedule: WallSchedule, segs: list[Segment], not_before: datetime, end: datetime
) -> datetime | None:
    """The first fire in [not_before, end), reading each stretch of one offset (and each
    spring gap) with its own offset. segs must cover [not_before - MAX_JUMP, end)."""
    best: datetime | None = None
    for seg in segs:
        readings = [(seg.offset, min(seg.end, end))]
        if seg.skipped_from is not None:
            gap_end = seg.start + (seg.offset - seg.skipped_from)
            readings.append((seg.skipped_from, min(seg.end, gap_end, end)))
        for offset, stop in readings:
            lower = max(seg.start, not_before)
            if lower >= stop or (best is not None and lower >= best):
                continue
            wall = schedule.first_wall(lower + offset)
            if wall is None:
                continue
            fire = wall - offset
            if fire < lower:
                raise ScheduleError(f"cron {schedule.expr!r}: field matching went backwards")
            if fire < stop and (best is None or fire < best):
                best = fire
        if best is not None and best < seg.end:
            return best
    return best


def _first_fire(schedule: WallSchedule, not_before: datetime, until: datetime) -> datetime | None:
    """The first fire f with not_before <= f <= until (both whole seconds), or None."""
    span = _FIRST_SPAN
    while True:
        end = min(not_before + span, until + _SECOND)
        segs = segments(schedule.zone, not_before - MAX_JUMP, end)
        fire = _first_in(schedule, segs, not_before, end)
        if fire is not None or end > until:
            return fire
        span *= 4


def next_fire_time(schedule: WallSchedule, after: datetime) -> datetime:
    """The first fire strictly after `after` (aware), in UTC. Always later than `after`;
    ScheduleError (never a hang) if there is none within HORIZON."""
    start = _utc(after).replace(microsecond=0) + _SECOND
    fire = _first_fire(schedule, start, start + HORIZON)
    if fire is None:
        raise ScheduleError(f"cron {schedule.expr!r} has no fire within {HORIZON.days} days")
    return fire


def fire_times(schedule: WallSchedule, after: datetime, count: int) -> list[datetime]:
    """The next `count` fires after `after`, strictly increasing, in UTC."""
    fires: list[datetime] = []
    for _ in range(count):
        after = next_fire_time(schedule, after)
        fires.append(after)
    return fires


def latest_fire_time(schedule: WallSchedule, now: datetime, lookback: timedelta) -> datetime | None:
    """The newest fire f with now - lookback <= f <= now, in UTC, or None.

    Every replica computes the same value for one fire, which is what makes
    (profile_id, scheduled_for) a cluster-wide identity of the fire. Bounded: one scan of
    the zone's offsets over the lookback, then about 2 * log2(lookback in seconds) matches.
    """
    if lookback < timedelta(0):
        raise ValueError("lookback must not be negative")
    now = _utc(now)
    top = now.replace(microsecond=0)
    earliest = now - lookback
    if earliest.microsecond:
        earliest = earliest.replace(microsecond=0) + _SECOND
    segs = segments(schedule.zone, earliest - MAX_JUMP, top + _SECOND)

    def first(low: datetime, high: datetime) -> datetime | None:
        return _first_in(schedule, segs, low, high + _SECOND)

    # Gallop back: no fire in (high, top]; look at windows twice as wide each time.
    high, width = top, _SECOND
    for _ in range(_MAX_STEPS):
        if high < earliest:
            return None
        low = max(high - width, earliest)
        found = first(low, high)
        if found is not None:
            return _last_fire(schedule, first, found, high)
        high, width = low - _SECOND, width * 2
    raise ScheduleError(f"cron {schedule.expr!r}: lookback {lookback} too long to search")


def _last_fire(
    schedule: WallSchedule,
    first: Callable[[datetime, datetime], datetime | None],
    known: datetime,
    high: datetime,
) -> datetime:
    """The last fire in [known, high], given a fire at `known` (bisection over seconds)."""
    low = known
    for _ in range(_MAX_STEPS):
        if low >= high:
            return low
        middle = low + _half(high - low)
        found = first(middle, high)
        if found is None:
            high = middle - _SECOND
        else:
            low = found
    raise ScheduleError(f"cron {schedule.expr!r}: bisection did not converge")


def _half(span: timedelta) -> timedelta:
    """Half a span of whole seconds, rounded up (so bisection always moves)."""
    seconds = int(span.total_seconds())
    return timedelta(seconds=(seconds + 1) // 2)
