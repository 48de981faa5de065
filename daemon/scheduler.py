"""Cron schedules of profiles: the only module that imports APScheduler.

Reading a schedule
    Cron text follows crontab: 5 fields (minute hour day month weekday), or 6 with leading
    seconds. Weekdays count from Sunday = 0 (7 is Sunday too), as in crontab; APScheduler counts
    from Monday = 0, so numbers are turned into names before APScheduler sees them.

    Day of month OR day of week: when both fields are restricted (neither is exactly `*`),
    the schedule fires on a day that matches EITHER, as crontab(5) says: `0 9 1 * 1` is 09:00
    on the 1st of every month and on every Monday. APScheduler alone would AND them (the 1st
    only when it is a Monday), so such a schedule is an OrTrigger of two CronTriggers.
    (Vixie cron also treats `*/2` as unrestricted; here only a bare `*` is.)

    A schedule that can never fire (`0 0 31 2 *`, `0 0 30 2 *`) is refused by parse_cron with
    a ConfigError, so the daemon flags the profile and `fa-sync profile create/set` refuse it.
    `0 0 29 2 *` is accepted: it fires in leap years (the check looks 9 years ahead).

What a fire is, in the repeated and the skipped hour of a DST change: daemon/firetimes.py,
which computes fires as UTC instants and is the only place that does.

Driving fires
    ProfileScheduler runs one asyncio task per enabled profile: compute the next fire from the
    injected clock, sleep until the clock reaches it (in naps of at most MAX_NAP, so a stepped
    wall clock is noticed), then fire the newest fire within the misfire grace (missed fires
    coalesce into one). APScheduler's own scheduler reads the wall clock itself
    (`datetime.now()` in BaseScheduler._process_jobs and add_job) and would fire by its own
    wall-clock walk; driving fires from the pure maths gives one clock (the process's,
    FA_SYNC_CLOCK_START in tests) and one definition of a fire for the whole daemon.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from daemon.db.records import Profile
from daemon.errors import ConfigError
from daemon.firetimes import fire_times, latest_fire_time, next_fire_time
from daemon.logs import get_logger

__all__ = ["ProfileScheduler", "Schedule", "fire_times", "latest_fire_time", "next_fire_time"]

log = get_logger(__name__)

_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: Window checked for "can this schedule ever fire": two leap years, any weekday pattern.
_CHECK_FROM = datetime(2001, 1, 1, tzinfo=UTC)
_CHECK_TO = datetime(2010, 1, 1, tzinfo=UTC)


def _translate_weekdays(text: str) -> str:
    """crontab weekday numbers (0/7 = Sunday) to names, which APScheduler reads unambiguously."""

    def name(match: re.Match[str]) -> str:
        number = int(match.group(0))
        if number > 7:
            raise ConfigError(f"weekday {number} is out of range 0-7")
        return _DOW_NAMES[number]

    # Only bare numbers that are values, not step sizes after '/'.
    return re.sub(r"(?<![/\d])\d+", name, text)


@dataclass(frozen=True)
class Schedule:
    """A parsed cron expression in a time zone."""

    expr: str  #: the cron text as written
    timezone: str  #: IANA name
    zone: tzinfo
    #: Cron fields as APScheduler dicts: one, or two when day-of-month OR day-of-week applies.
    fields: tuple[dict[str, str], ...]
    #: The fields matched against wall-clock readings: APScheduler in UTC, which has no DST.
    wall: Any = field(compare=False, repr=False)

    def first_wall(self, at: datetime) -> datetime | None:
        """The first matching wall-clock reading at or after `at` (a reading, tagged UTC)."""
        found: datetime | None = self.wall.get_next_fire_time(None, at)
        return found


def _wall_trigger(
    fields: tuple[dict[str, str], ...], zone: tzinfo, end_date: datetime | None = None
) -> Any:
    triggers = [CronTrigger(**f, timezone=zone, end_date=end_date) for f in fields]
    return triggers[0] if len(triggers) == 1 else OrTrigger(triggers)


def apscheduler_trigger(schedule: Schedule) -> Any:
    """APScheduler's own trigger for the schedule in its zone (the tests compare with it)."""
    return _wall_trigger(schedule.fields, schedule.zone)


def _cron_fields(expr: str) -> tuple[dict[str, str], ...]:
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ConfigError(f"cron {expr!r} has {len(fields)} fields, expected 5 (or 6 with seconds)")
    second = fields[0] if len(fields) == 6 else "0"
    minute, hour, day, month, dow = fields[-5:]
    base = {"second": second, "minute": minute, "hour": hour, "month": month}
    weekday = _translate_weekdays(dow)
    if day != "*" and dow != "*":
        # crontab: both restricted means either matches.
        by_day = {**base, "day": day, "day_of_week": "*"}
        return (by_day, {**base, "day": "*", "day_of_week": weekday})
    return ({**base, "day": day, "day_of_week": weekday},)


@functools.lru_cache(maxsize=1024)
def parse_cron(expr: str, timezone: str = "UTC") -> Schedule:
    """The schedule of a 5- or 6-field expression; ConfigError says what is wrong, including
    a schedule that never fires. Memoised: a Schedule is immutable, and every reload parses
    every profile's schedule again (a refusal is not remembered: it is asked again)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown timezone {timezone!r}") from exc
    # Half of an OR that never fires (`31 2` in `0 9 31 2 1`) is dropped: APScheduler would
    # search it to the year 9999 on every call.
    fields = tuple(f for f in _cron_fields(expr) if _ever_fires(expr, f))
    if not fields:
        raise ConfigError(f"cron {expr!r} never fires: no date matches (e.g. 31 February)")
    return Schedule(expr, timezone, zone, fields, _wall_trigger(fields, UTC))


def _ever_fires(expr: str, fields: dict[str, str]) -> bool:
    try:
        check = _wall_trigger((fields,), UTC, end_date=_CHECK_TO)
        return check.get_next_fire_time(None, _CHECK_FROM) is not None
    except ValueError as exc:
        raise ConfigError(f"cron {expr!r}: {exc}") from exc


# -- driving fires -------------------------------------------------------------------------

FireCallback = Callable[[int, datetime], Awaitable[None]]
#: Longest single sleep while waiting for a fire: a stepped wall clock is noticed this soon.
MAX_NAP = 60.0


@dataclass
class _Entry:
    schedule: Schedule
    task: asyncio.Task[None] | None = None
    due: datetime | None = None  #: the next fire the task waits for


class ProfileScheduler:
    """Keeps one firing task per enabled profile in step with the profile rows."""

    def __init__(
        self, *, on_fire: FireCallback, misfire_grace_seconds: int, clock: Callable[[], datetime]
    ) -> None:
        self._on_fire = on_fire
        self._grace = timedelta(seconds=misfire_grace_seconds)
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        self._running = False

    def start(self) -> None:
        self._running = True
        for profile_id, entry in self._entries.items():
            self._launch(profile_id, entry)

    def shutdown(self) -> None:
        """Stop firing; running runs are the process's business, not the scheduler's."""
        self._running = False
        for profile_id in list(self._entries):
            self.remove(profile_id)

    def sync(self, profiles: list[Profile]) -> dict[int, str | None]:
        """Apply the profile rows; returns {profile_id: error or None} for rows that changed."""
        outcome: dict[int, str | None] = {}
        wanted = {p.id: p for p in profiles if p.enabled}
        for profile_id in set(self._entries) - set(wanted):
            self.remove(profile_id)
        for profile in wanted.values():
            current = self._entries.get(profile.id)
            if current and (current.schedule.expr, current.schedule.timezone) == (
                profile.schedule,
                profile.timezone,
            ):
                continue
            outcome[profile.id] = self._apply(profile)
        return outcome

    def remove(self, profile_id: int) -> None:
        entry = self._entries.pop(profile_id, None)
        if entry is not None:
            if entry.task is not None:
                entry.task.cancel()
            log.info("schedule_removed", profile_id=profile_id)

    @property
    def scheduled(self) -> list[int]:
        """Ids of the profiles with a live schedule."""
        return sorted(self._entries)

    def next_fire(self, profile_id: int) -> datetime | None:
        """The next fire of a scheduled profile (UTC), or None if it is not scheduled."""
        entry = self._entries.get(profile_id)
        if entry is None:
            return None
        return entry.due or next_fire_time(entry.schedule, self._clock())

    def _apply(self, profile: Profile) -> str | None:
        try:
            schedule = parse_cron(profile.schedule, profile.timezone)
            first = next_fire_time(schedule, self._clock())
        except ConfigError as exc:
            self.remove(profile.id)
            message = f"profile {profile.name}: {exc}"
            log.error("profile_schedule_invalid", profile=profile.name, error=message)
            return message
        self.remove(profile.id)
        entry = self._entries[profile.id] = _Entry(schedule)
        if self._running:
            self._launch(profile.id, entry)
        log.info(
            "schedule_set",
            profile=profile.name,
            schedule=profile.schedule,
            timezone=profile.timezone,
            next_fire=first.isoformat(),
        )
        return None

    def _launch(self, profile_id: int, entry: _Entry) -> None:
        if entry.task is None or entry.task.done():
            entry.task = asyncio.create_task(
                self._fire_forever(profile_id, entry), name=f"schedule-{profile_id}"
            )
            entry.task.add_done_callback(_report_death)

    async def _fire_forever(self, profile_id: int, entry: _Entry) -> None:
        """Sleep until each fire by the clock, then fire; missed fires coalesce into one."""
        after = self._clock()
        while True:
            entry.due = due = next_fire_time(entry.schedule, after)
            await self._sleep_until(due)
            now = self._clock()
            fire = latest_fire_time(entry.schedule, now, self._grace)
            if fire is None:
                log.warning("fire_missed", profile_id=profile_id, due=due.isoformat())
            else:
                await self._on_fire(profile_id, fire)
            # Strictly forward, even if the wall clock was stepped back meanwhile.
            after = max(now, due)

    async def _sleep_until(self, due: datetime) -> None:
        """Until the clock reads `due`: the clock is the process's, not the event loop's."""
        while True:
            remaining = (due - self._clock()).total_seconds()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, MAX_NAP))


def _report_death(task: asyncio.Task[None]) -> None:
    """A profile's firing task never ends on its own: say so loudly if it does."""
    if not task.cancelled() and task.exception() is not None:
        log.error("schedule_task_died", task=task.get_name(), error=repr(task.exception()))
