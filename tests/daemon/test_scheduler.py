"""Schedule maths: bounded, forward-moving, the same fire for every replica, crontab's rules.

Every call into the maths runs under a deadline in a daemon thread, so a regression to a
loop that never ends fails its test instead of hanging the suite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.db.records import Profile
from daemon.errors import ConfigError
from daemon.firetimes import segments
from daemon.scheduler import (
    apscheduler_trigger,
    fire_times,
    latest_fire_time,
    next_fire_time,
    parse_cron,
)
from profiles import validate_profile
from tests.daemon import cron_oracle
from tests.daemon.transitions import Transition, all_transitions, zone_transitions

T = TypeVar("T")
DEADLINE = 20.0
US = timedelta(microseconds=1)


def bounded(call: Callable[..., T], *args: Any) -> T:
    """call(*args) in a daemon thread; fail (never hang) if it does not return in time."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call(*args)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    if thread.is_alive():
        pytest.fail(f"{call.__name__}{args!r} did not return within {DEADLINE} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- every DST change of every zone ------------------------------------------------------

#: Expressions tried around each change, and half the window (seconds) watched around it.
EXPRESSIONS = {
    "*/15 * * * *": 3 * 3600,
    "0 * * * *": 3 * 3600,
    "30 1 * * *": 3 * 3600,
    "0 2 * * *": 3 * 3600,
    "*/7 * * * *": 3 * 3600,
    "0 9 1 * 1": 3 * 3600,
    "45 0-3 * * *": 3 * 3600,
    "0 0 * * *": 3 * 3600,
    "30 2 * * 0": 3 * 3600,
    "*/20 * * * * *": 1200,
    "0,30 */5 * * * *": 1200,
}
LOOKBACKS = [timedelta(seconds=s) for s in (0, 1, 59, 300, 3600)]


def _check_around(change: Transition, expr: str, shift: timedelta, lookback: timedelta) -> None:
    """Every promise of the maths, against the brute-force oracle, near one change."""
    schedule = parse_cron(expr, change.zone)
    half = timedelta(seconds=EXPRESSIONS[expr])
    start, end = change.at - 2 * half, change.at + 2 * half
    expected = cron_oracle.fires(expr, change.zone, start, end, zone_transitions(change.zone))
    # The whole sequence through the change: exactly the oracle's, strictly increasing.
    got, fire = [], next_fire_time(schedule, start - US)
    while fire <= end:
        got.append(fire)
        fire = next_fire_time(schedule, fire)
    assert got == expected
    now = change.at + shift
    latest = latest_fire_time(schedule, now, lookback)
    assert latest == max((f for f in expected if now - lookback <= f <= now), default=None)
    following = next_fire_time(schedule, now)
    assert following > now
    assert following == min((f for f in expected if f > now), default=following)
    # APScheduler's own next fire, asked at `now`: ours is the same, or earlier and a fire
    # that APScheduler stepped over (the second pass of a repeated hour, a shifted gap time,
    # the day after a spring change when its wall-clock step lands past the change).
    theirs = apscheduler_trigger(schedule).get_next_fire_time(None, now).astimezone(UTC)
    ours = next_fire_time(schedule, now - US)
    changes = zone_transitions(change.zone)
    assert ours == theirs or (
        ours < theirs and cron_oracle.fires(expr, change.zone, ours, ours, changes) == [ours]
    )


@settings(max_examples=100, deadline=None)
@given(
    change=st.deferred(lambda: st.sampled_from(all_transitions())),
    expr=st.sampled_from(sorted(EXPRESSIONS)),
    fraction=st.floats(-1, 1),
    micro=st.integers(0, 999_999),
    lookback=st.sampled_from(LOOKBACKS),
)
def test_fires_around_every_dst_change_match_the_oracle(
    change: Transition, expr: str, fraction: float, micro: int, lookback: timedelta
) -> None:
    """Near any DST change of any zone: the maths terminates, moves forward, finds exactly the
    oracle's fires, and agrees with APScheduler wherever APScheduler does not skip one."""
    shift = timedelta(seconds=int(fraction * EXPRESSIONS[expr]), microseconds=micro)
    bounded(_check_around, change, expr, shift, lookback)


def _sweep(changes: tuple[Transition, ...]) -> None:
    for change in changes:
        schedule = parse_cron("*/15 * * * *", change.zone)
        for shift in (-1, 0, 1799):
            now = change.at + timedelta(seconds=shift)
            latest = latest_fire_time(schedule, now, timedelta(minutes=5))
            assert latest is None or now - timedelta(minutes=5) <= latest <= now, change
            following = next_fire_time(schedule, now)
            assert following > now, change
            assert latest_fire_time(schedule, following, timedelta(0)) == following, change


def test_every_dst_change_of_every_zone_terminates() -> None:
    """For all 2026-2027 changes of all zones, `*/15 * * * *` next and latest fires return,
    within the lookback and strictly after now."""
    changes = all_transitions()
    assert len(changes) > 500
    bounded(_sweep, changes)


@pytest.mark.parametrize(
    ("zone", "now"),
    [
        # The reproductions: the repeated hour of London, New York and Sydney.
        ("Europe/London", "2026-10-25 01:00"),
        ("Europe/London", "2026-10-25 01:15"),
        ("Europe/London", "2026-10-25 01:30"),
        ("Europe/London", "2026-10-25 01:45"),
        ("America/New_York", "2026-11-01 06:00"),
        ("America/New_York", "2026-11-01 06:45"),
        ("Australia/Sydney", "2026-04-04 16:00"),
        ("Australia/Sydney", "2026-04-04 16:30"),
    ],
)
def test_latest_fire_in_the_repeated_hour_is_now(zone: str, now: str) -> None:
    """A quarter-hour in the second pass of a repeated hour is its own latest fire."""
    schedule = parse_cron("*/15 * * * *", zone)
    assert bounded(latest_fire_time, schedule, utc(now), timedelta(minutes=5)) == utc(now)


@pytest.mark.parametrize(
    ("expr", "after", "fires"),
    [
        # Repeated hour: every 15 minutes of real time through both passes.
        (
            "*/15 * * * *",
            "2026-10-25 00:40",
            ["00:45", "01:00", "01:15", "01:30", "01:45", "02:00"],
        ),
        # A fixed time in the repeated hour fires in both passes (01:30 BST, 01:30 GMT).
        ("30 1 * * *", "2026-10-24 23:00", ["00:30", "01:30"]),
        # Skipped hour: 01:30 does not exist; it fires once, at 02:30 BST (01:30 UTC).
        ("30 1 * * *", "2026-03-28 23:00", ["01:30"]),
        # Skipped hour: no pause, no burst.
        ("*/15 * * * *", "2026-03-29 00:40", ["00:45", "01:00", "01:15"]),
    ],
)
def test_london_dst_days_fire_as_documented(expr: str, after: str, fires: list[str]) -> None:
    """The module docstring's promises for the repeated and the skipped hour."""
    schedule = parse_cron(expr, "Europe/London")
    got = bounded(fire_times, schedule, utc(after), len(fires))
    assert [f.strftime("%H:%M") for f in got] == fires


# -- crontab's day-of-month OR day-of-week -----------------------------------------------


@pytest.mark.parametrize(
    ("expr", "dates"),
    [
        # Both restricted: the 1st OR a Monday.
        ("0 9 1 * 1", ["06-08", "06-15", "06-22", "06-29", "07-01", "07-06"]),
        # Day of week `*`: the 1st only.
        ("0 9 1 * *", ["07-01", "08-01", "09-01", "10-01", "11-01", "12-01"]),
        # Day of month `*`: Mondays only.
        ("0 9 * * 1", ["06-08", "06-15", "06-22", "06-29", "07-06", "07-13"]),
        # The 13th OR a Friday; Sunday as 0 or 7 alike.
        ("0 9 13 * 5", ["06-05", "06-12", "06-13", "06-19", "06-26", "07-03"]),
        ("0 9 2 * 0", ["06-07", "06-14", "06-21", "06-28", "07-02", "07-05"]),
        ("0 9 2 * 7", ["06-07", "06-14", "06-21", "06-28", "07-02", "07-05"]),
        # With seconds too; 31 February never comes, but Mondays in February do.
        ("0 0 9 1 * 1", ["06-08", "06-15", "06-22", "06-29", "07-01", "07-06"]),
        ("0 9 31 2 1", ["02-01", "02-08", "02-15", "02-22", "02-07", "02-14"]),
    ],
)
def test_day_of_month_or_day_of_week(expr: str, dates: list[str]) -> None:
    """When both day fields are restricted, a day matching either fires (crontab's rule)."""
    got = bounded(fire_times, parse_cron(expr), utc("2026-06-02 12:00"), len(dates))
    assert [f.strftime("%m-%d") for f in got] == dates


# -- schedules that never fire -------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 31 6,9,11 *", "0 0 0 30 2 *"],
)
def test_a_date_that_never_comes_is_refused(expr: str) -> None:
    """Cron text whose day never occurs is a ConfigError naming it, not a silent schedule."""
    with pytest.raises(ConfigError, match="never fires"):
        bounded(parse_cron, expr, "Europe/London")


def test_29_february_fires_in_leap_years() -> None:
    """`0 0 29 2 *` is valid: it fires every leap year, across 2100 too."""
    schedule = parse_cron("0 0 29 2 *")
    got = bounded(fire_times, schedule, utc("2026-01-01 00:00"), 2)
    assert got == [utc("2028-02-29 00:00"), utc("2032-02-29 00:00")]
    assert bounded(next_fire_time, schedule, utc("2097-01-01 00:00")) == utc("2104-02-29 00:00")


def test_validate_profile_flags_a_never_firing_schedule() -> None:
    """The daemon's and the CLI's validation names the profile and the impossible date."""
    profile = Profile(
        **{
            "id": 1,
            "name": "feb",
            "type": "freeagent_contact_export",
            "enabled": True,
            "schedule": "0 0 31 2 *",
            "timezone": "Europe/London",
            "batch_size": 100,
            "retry_enabled": True,
            "retry_max_attempts": 5,
            "api_behaviour": "upsert",
            "collect_mode": "append",
            "collection_size": 100,
            "history_enabled": True,
            "client_id": None,
            "connection_id": None,
            "settings": {},
        }
    )
    problem = validate_profile(profile)
    assert problem is not None
    assert "feb" in problem
    assert "never fires" in problem


# -- boundaries of the API -------------------------------------------------------------------


def test_naive_instants_are_refused() -> None:
    """Schedule maths works on aware instants only: a naive one is a ValueError, not a guess."""
    with pytest.raises(ValueError, match="naive"):
        next_fire_time(parse_cron("* * * * *"), datetime(2026, 1, 1))  # noqa: DTZ001


def test_results_are_utc_whole_seconds() -> None:
    """Fires come back in UTC, on whole seconds, whatever zone `now` is given in."""
    schedule = parse_cron("*/20 * * * * *", "Asia/Kolkata")
    now = datetime(2026, 5, 1, 12, 0, 7, 250, tzinfo=schedule.zone)
    following = next_fire_time(schedule, now)
    latest = latest_fire_time(schedule, now, timedelta(minutes=1))
    assert following.tzinfo is UTC and latest is not None and latest.tzinfo is UTC
    assert following.microsecond == 0 and latest.microsecond == 0
    assert latest < now < following


ZONES_WITH_CHANGES = sorted({t.zone for t in all_transitions()})


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(ZONES_WITH_CHANGES),
    # Hypothesis takes naive bounds and attaches the zone itself.
    start=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 1), timezones=st.just(UTC)),  # noqa: DTZ001
    days=st.integers(0, 700),
    seconds=st.integers(0, 86_399),
)
def test_segments_split_time_at_exactly_the_zones_changes(
    zone: str, start: datetime, days: int, seconds: int
) -> None:
    """segments() (offset changes memoised per zone and year) against changes found
    independently: the same instants, the offsets zoneinfo gives, across year ends."""
    start = start.replace(microsecond=0)
    end = min(start + timedelta(days=days, seconds=seconds + 1), datetime(2028, 1, 1, tzinfo=UTC))
    tz = ZoneInfo(zone)
    found = segments(tz, start, end)
    expected = [t.at for t in zone_transitions(zone, start, end) if start < t.at < end]
    assert [s.start for s in found[1:]] == expected
    assert found[0].start == start and found[-1].end == end
    for seg in found:
        assert seg.offset == seg.start.astimezone(tz).utcoffset()
        assert seg.offset == (seg.end - timedelta(seconds=1)).astimezone(tz).utcoffset()


def test_a_schedule_is_parsed_once_per_expression_and_zone() -> None:
    """Reloads parse every profile's schedule again: the same text and zone give the same
    (immutable) Schedule; another zone, another one; a bad one is refused every time."""
    assert parse_cron("*/5 * * * *", "Europe/London") is parse_cron("*/5 * * * *", "Europe/London")
    assert parse_cron("*/5 * * * *", "Europe/Paris").zone != parse_cron("*/5 * * * *").zone
    for _ in range(2):
        with pytest.raises(ConfigError):
            parse_cron("0 9 31 2 *", "Europe/London")
