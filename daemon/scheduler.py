"""Cron schedules of profiles: the only module that imports APScheduler.

Cron text follows crontab: 5 fields (minute hour day month weekday), or 6 with leading
seconds. APScheduler numbers weekdays from Monday = 0, crontab from Sunday = 0 (7 too), so
numeric weekdays are translated to names before APScheduler sees them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from daemon.db.records import Profile
from daemon.errors import ConfigError
from daemon.logs import get_logger

log = get_logger(__name__)

_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _translate_weekdays(field: str) -> str:
    """crontab weekday numbers (0/7 = Sunday) to names, which APScheduler reads unambiguously."""

    def name(match: re.Match[str]) -> str:
        number = int(match.group(0))
        if number > 7:
            raise ConfigError(f"weekday {number} is out of range 0-7")
        return _DOW_NAMES[number]

    # Only bare numbers that are values, not step sizes after '/'.
    return re.sub(r"(?<![/\d])\d+", name, field)


def parse_cron(expr: str, timezone: str = "UTC") -> CronTrigger:
    """A CronTrigger for a 5- or 6-field expression; ConfigError says what is wrong."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ConfigError(f"cron {expr!r} has {len(fields)} fields, expected 5 (or 6 with seconds)")
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown timezone {timezone!r}") from exc
    second = fields[0] if len(fields) == 6 else "0"
    minute, hour, day, month, dow = fields[-5:]
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_translate_weekdays(dow),
            timezone=tz,
        )
    except ValueError as exc:
        raise ConfigError(f"cron {expr!r}: {exc}") from exc


def latest_fire_time(trigger: CronTrigger, now: datetime, lookback: timedelta) -> datetime | None:
    """The newest fire time of trigger at or before now, looking back at most lookback.

    Every replica computes the same value for one fire, which is what makes
    (profile_id, scheduled_for) a cluster-wide identity of the fire.
    """
    latest: datetime | None = None
    candidate = trigger.get_next_fire_time(None, now - lookback)
    while candidate is not None and candidate <= now:
        latest = candidate
        candidate = trigger.get_next_fire_time(candidate, candidate + timedelta(microseconds=1))
    return latest


FireCallback = Callable[[int, datetime], Awaitable[None]]


@dataclass(frozen=True)
class _Entry:
    schedule: str
    timezone: str
    trigger: CronTrigger


class ProfileScheduler:
    """Keeps one APScheduler job per enabled profile in step with the profile rows."""

    def __init__(
        self, *, on_fire: FireCallback, misfire_grace_seconds: int, clock: Callable[[], datetime]
    ) -> None:
        self._on_fire = on_fire
        self._grace = misfire_grace_seconds
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        self._scheduler = AsyncIOScheduler(
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": misfire_grace_seconds,
            }
        )

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop firing; running runs are the process's business, not the scheduler's."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def sync(self, profiles: list[Profile]) -> dict[int, str | None]:
        """Apply the profile rows; returns {profile_id: error or None} for rows that changed."""
        outcome: dict[int, str | None] = {}
        wanted = {p.id: p for p in profiles if p.enabled}
        for profile_id in set(self._entries) - set(wanted):
            self.remove(profile_id)
        for profile in wanted.values():
            current = self._entries.get(profile.id)
            if current and (current.schedule, current.timezone) == (
                profile.schedule,
                profile.timezone,
            ):
                continue
            outcome[profile.id] = self._apply(profile)
        return outcome

    def remove(self, profile_id: int) -> None:
        if self._entries.pop(profile_id, None) is not None:
            self._scheduler.remove_job(str(profile_id))
            log.info("schedule_removed", profile_id=profile_id)

    def next_fire(self, profile_id: int) -> datetime | None:
        job = self._scheduler.get_job(str(profile_id))
        return job.next_run_time if job else None

    def _apply(self, profile: Profile) -> str | None:
        try:
            trigger = parse_cron(profile.schedule, profile.timezone)
        except ConfigError as exc:
            self.remove(profile.id)
            message = f"profile {profile.name}: {exc}"
            log.error("profile_schedule_invalid", profile=profile.name, error=message)
            return message
        self._entries[profile.id] = _Entry(profile.schedule, profile.timezone, trigger)
        self._scheduler.add_job(
            self._fire,
            trigger,
            args=[profile.id],
            id=str(profile.id),
            replace_existing=True,
            name=profile.name,
        )
        log.info(
            "schedule_set",
            profile=profile.name,
            schedule=profile.schedule,
            timezone=profile.timezone,
            next_fire=str(self.next_fire(profile.id)),
        )
        return None

    async def _fire(self, profile_id: int) -> None:
        entry = self._entries.get(profile_id)
        if entry is None:
            return
        now = self._clock()
        scheduled_for = latest_fire_time(entry.trigger, now, timedelta(seconds=self._grace)) or now
        await self._on_fire(profile_id, scheduled_for)
