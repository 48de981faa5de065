"""One run of one profile: claim the fire, hold the lease, execute the stages, write history.

Claiming is PostgreSQL's job: `profile_run` has one row per (profile, scheduled_for) and a
partial unique index on running runs, so across replicas a fire runs once and a profile never
runs twice at once. A lease, renewed while the run lives, lets another replica take over from a
dead one; the run's fence, checked by every ledger write, stops the old owner writing after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from daemon.alerts.conditions import FinishedRun, RunAlerts
from daemon.claims import FireClaims
from daemon.context import Resources, RunContext, RunCounts, RunOptions, RunSlots
from daemon.db.queries import QUERIES
from daemon.db.records import Profile, Run, RunStatus, RunTrigger
from daemon.errors import FaSyncError, LeaseLost
from daemon.logs import get_logger
from daemon.metrics import Metrics
from daemon.settings import Settings
from profiles import ProfileExecutor, executor_for

log = get_logger(__name__)

#: Claims of one fire refused by a run that had ended by the time we looked (see _claim).
CLAIM_ATTEMPTS = 3


def utcnow() -> datetime:
    return datetime.now(UTC)


def process_clock(settings: Settings) -> Callable[[], datetime]:
    """The one clock of the process: the system's, or (FA_SYNC_CLOCK_START, for testing)
    one that starts at the given instant and advances with the monotonic clock, so the
    scheduler's sleeps and the clock agree."""
    if settings.clock_start is None:
        return utcnow
    start, origin = settings.clock_start.astimezone(UTC), time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


@dataclass(frozen=True)
class RunOutcome:
    """What a fire came to: a finished run, or why it did not run."""

    run_id: int | None
    status: str
    counts: RunCounts
    error: str | None = None


class Runner:
    """Runs profiles; shared by the daemon's schedule and the CLI (run-once mode)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: Settings,
        resources: Resources,
        stopping: asyncio.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        alerts: RunAlerts | None = None,
        slots: RunSlots | None = None,
    ) -> None:
        #: profile id -> wake-up of its run in this process (the priority lane's NOTIFY).
        self.lanes: dict[int, asyncio.Event] = {}
        self._pool = pool
        self._alerts = alerts
        self._settings = settings
        self._resources = resources
        self._stopping = stopping or asyncio.Event()
        self._clock = clock
        self._metrics = metrics
        self._slots = slots or RunSlots()
        #: Profile reads and claims of fires, shared by fires arriving together.
        self.claims = FireClaims(
            pool=pool, replica_id=settings.replica_id, lease_seconds=settings.lease_seconds
        )

    async def fire(
        self,
        profile_id: int,
        scheduled_for: datetime | None = None,
        *,
        trigger: RunTrigger = RunTrigger.SCHEDULE,
        options: RunOptions | None = None,
    ) -> RunOutcome:
        """Claim and run one fire of a profile; never raises for a bad profile."""
        options = options or RunOptions()
        scheduled_for = scheduled_for or self._clock()
        row = await self.claims.profile(profile_id)
        if row is None:
            return RunOutcome(None, RunStatus.SKIPPED, RunCounts(), "profile no longer exists")
        profile = Profile.from_row(row)
        if trigger is RunTrigger.SCHEDULE and not profile.enabled:
            return RunOutcome(None, RunStatus.SKIPPED, RunCounts(), "profile disabled")
        executor = executor_for(profile.type)
        if executor is None:
            reason = f"profile {profile.name}: unknown type {profile.type!r}"
            return await self._record_skip(profile, trigger, scheduled_for, reason)
        if trigger is RunTrigger.SCHEDULE and (held := self._breaker_open(row)):
            return await self._record_skip(profile, trigger, scheduled_for, held)
        run = await self._claim(profile, trigger, scheduled_for)
        if isinstance(run, RunOutcome):
            return run
        with structlog.contextvars.bound_contextvars(
            profile=profile.name, profile_id=profile.id, run_id=run.id, trigger=str(trigger)
        ):
            return await self._run(profile, run, executor, options)

    async def _claim(
        self, profile: Profile, trigger: RunTrigger, scheduled_for: datetime
    ) -> Run | RunOutcome:
        """One (shared) statement when the profile is free; only a refused claim asks why."""
        for _ in range(CLAIM_ATTEMPTS):
            row = await self.claims.claim(profile.id, trigger, scheduled_for)
            if row is not None:
                return Run.from_row(row)
            refused = await self.claims.refusal(profile.id, scheduled_for)
            if refused is not None and refused["same_fire"]:
                # Another replica already took this very fire: nothing to account for here.
                return RunOutcome(None, RunStatus.SKIPPED, RunCounts(), "fire already taken")
            if refused is not None and refused["stale"]:
                # Its owner stopped renewing the lease (a dead replica): close it, claim again.
                for r in await self._pool.fetch(QUERIES["run_expire_stale"], profile.id):
                    log.warning("run_lease_expired", profile=profile.name, run_id=r["id"])
                continue
            if refused is not None and refused["rehearsed"]:
                reason = (
                    f"profile {profile.name}: a dry run of it is in progress; its fires are "
                    "skipped until the dry run ends"
                )
                return await self._record_skip(profile, trigger, scheduled_for, reason)
            if refused is not None:
                reason = (
                    f"run #{refused['id']} of profile {profile.name} is still running "
                    f"(owner {refused['owner']})"
                )
                return await self._record_skip(profile, trigger, scheduled_for, reason)
            # Refused by a run that ended before we looked: the profile is free, claim again.
        reason = f"profile {profile.name}: runs kept ending and starting; fire not claimed"
        return await self._record_skip(profile, trigger, scheduled_for, reason)

    async def _record_skip(
        self, profile: Profile, trigger: RunTrigger, scheduled_for: datetime, reason: str
    ) -> RunOutcome:
        run_id = await self._pool.fetchval(
            QUERIES["run_record_skipped"],
            profile.id,
            str(trigger),
            scheduled_for,
            reason,
            self._settings.replica_id,
        )
        log.info("run_skipped", profile=profile.name, reason=reason)
        return RunOutcome(run_id, RunStatus.SKIPPED, RunCounts(), reason)

    async def _run(
        self, profile: Profile, run: Run, executor: ProfileExecutor, options: RunOptions
    ) -> RunOutcome:
        counts = RunCounts()
        ctx = RunContext(
            pool=self._pool,
            settings=self._settings,
            profile=profile,
            run=run,
            resources=self._resources,
            options=options,
            counts=counts,
            stopping=self._stopping,
            clock=self._clock,
            slots=self._slots,
        )
        self.lanes[profile.id] = ctx.wake
        try:
            return await self._execute(profile, run, executor, ctx)
        finally:
            self.lanes.pop(profile.id, None)

    async def _execute(
        self, profile: Profile, run: Run, executor: ProfileExecutor, ctx: RunContext
    ) -> RunOutcome:
        counts = ctx.counts
        log.info("run_started", scheduled_for=run.scheduled_for.isoformat())
        status, error, run_level = RunStatus.COMPLETE, None, False
        job: asyncio.Task[None] = asyncio.ensure_future(executor(ctx))
        lease = asyncio.create_task(self._keep_lease(run, job), name=f"lease-{run.id}")
        try:
            await job
        except LeaseLost as exc:
            status, error = RunStatus.ERROR, str(exc)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                await self._interrupted(run, counts, lease)
                raise
            # Only the job was cancelled: by the lease keeper, which lost the lease.
            status, error = RunStatus.ERROR, "lease lost; another replica may own the profile"
        except FaSyncError as exc:
            status, error, run_level = RunStatus.ERROR, str(exc), True
            log.error("run_failed", error=error)
        except Exception as exc:  # a bug must not take the daemon down with it
            status, error = RunStatus.ERROR, f"internal error: {type(exc).__name__}: {exc}"
            run_level = True
            log.exception("run_crashed")
        finally:
            lease.cancel()
        if lease.done() and not lease.cancelled() and isinstance(lease.exception(), LeaseLost):
            status, error, run_level = RunStatus.ERROR, str(lease.exception()), False
        if status is RunStatus.COMPLETE and (cut := await self._cut_short(profile, counts)):
            status, error = RunStatus.INTERRUPTED, cut
        if status is RunStatus.COMPLETE and (
            counts.failed or counts.retrying or counts.skipped or counts.needs_review
        ):
            status = RunStatus.WARNING
        await self._breaker_update(profile, status, run_level, error)
        return await self._finish(profile, run, status, counts, error or counts.summary)

    async def _cut_short(self, profile: Profile, counts: RunCounts) -> str | None:
        """If shutdown stopped the run with records still to do, say so with the counts."""
        if not self._stopping.is_set():
            return None
        left = int(await self._pool.fetchval(QUERIES["entity_count_unfinished"], profile.id))
        if left == 0:
            return None
        c = counts
        done = c.created + c.updated + c.linked + c.unchanged + c.skipped + c.failed + c.retrying
        done += c.needs_review
        log.warning("run_interrupted", done=done, left=left, **counts.as_dict())
        return (
            f"interrupted by shutdown after {done} of {done + left} records "
            f"(created {c.created}, updated {c.updated}); {left} resume on the next run"
        )

    def _breaker_open(self, row: asyncpg.Record) -> str | None:
        """Why a scheduled fire must wait: the profile's breaker (profile_for_fire) is open."""
        until = row["breaker_open_until"]
        if until is None or until <= self._clock():
            return None
        return (
            f"breaker open after {row['breaker_failures']} run-level failure(s) until "
            f"{until.isoformat()}: {row['breaker_reason']}"
        )

    async def _breaker_update(
        self, profile: Profile, status: RunStatus, run_level: bool, error: str | None
    ) -> None:
        """A run-level failure backs the profile off exponentially; a finished run resets it."""
        s = self._settings
        if status in (RunStatus.COMPLETE, RunStatus.WARNING):
            await self._pool.execute(QUERIES["breaker_reset"], profile.id)
        elif status is RunStatus.ERROR and run_level:
            row = await self._pool.fetchrow(
                QUERIES["breaker_trip"], profile.id, self._clock(),
                s.breaker_base_seconds, s.breaker_max_seconds, error or "run failed",
            )  # fmt: skip
            log.warning("breaker_tripped", failures=row["failures"],
                        open_until=row["open_until"].isoformat())  # fmt: skip

    async def _finish(
        self, profile: Profile, run: Run, status: RunStatus, counts: RunCounts, error: str | None
    ) -> RunOutcome:
        closed = await self._close(run, status, counts, error)
        if not closed:
            log.error(
                "run_finish_fenced", reason="lease lost: another replica owns this profile now"
            )
        if not profile.history_enabled:
            await self._pool.execute(QUERIES["run_delete_history_disabled"])
        log.info("run_finished", status=str(status), error=error, **counts.as_dict())
        if self._metrics is not None:
            seconds = (self._clock() - (run.started_at or run.scheduled_for)).total_seconds()
            self._metrics.observe_run(profile.name, str(status), counts, seconds)
        await self._alert(profile, run, status, counts, error)
        return RunOutcome(run.id, status, counts, error)

    async def _alert(
        self, profile: Profile, run: Run, status: RunStatus, counts: RunCounts, error: str | None
    ) -> None:
        """Tell the alert dispatcher; whatever happens there, the run's result stands."""
        if self._alerts is None:
            return
        finished = FinishedRun(profile.id, profile.name, run.id, str(status), error, counts)
        try:
            await self._alerts.run_finished(
                finished, retry_max_attempts=profile.retry_max_attempts, now=self._clock()
            )
        except Exception:  # a bug in alerting must not turn a finished run into a crash
            log.exception("alert_hook_failed")

    async def _close(
        self, run: Run, status: RunStatus, counts: RunCounts, error: str | None
    ) -> bool:
        """Hand the run's unfinished rows back to the queue, then close the run (fenced).
        False when the run was no longer ours to close."""
        c = counts
        await self._pool.execute(QUERIES["entity_release_run"], run.id)
        row = await self._pool.fetchrow(
            QUERIES["run_finish"], run.id, run.fence, str(status), c.collected, c.created,
            c.updated, c.skipped, c.failed, c.linked, c.unchanged, c.retrying, error, c.messages,
            c.removed, c.drifted, c.needs_review,
        )  # fmt: skip
        return row is not None

    async def _interrupted(self, run: Run, counts: RunCounts, lease: asyncio.Task[Any]) -> None:
        """Shutdown cut the run short: hand its rows back and close it, so the next run resumes."""
        lease.cancel()
        with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            await asyncio.shield(self._close(
                run, RunStatus.INTERRUPTED, counts,
                "interrupted by shutdown; unfinished records resume on the next run"))  # fmt: skip
        log.warning("run_interrupted", **counts.as_dict())

    async def _keep_lease(self, run: Run, job: asyncio.Task[Any]) -> None:
        """Renew the lease every third of its length; if it cannot be kept, stop the run."""
        lease = self._settings.lease_seconds
        last_ok = self._clock()
        while True:
            await asyncio.sleep(lease / 3)
            try:
                renewed = await self._pool.fetchval(QUERIES["run_renew"], run.id, run.fence, lease)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                log.warning("run_lease_renew_failed", error=str(exc))
                renewed = None if (self._clock() - last_ok).total_seconds() > lease else run.id
            if renewed is None:
                job.cancel()
                raise LeaseLost(
                    f"run {run.id}: lease lost; another replica may own the profile now"
                )
            last_ok = self._clock()
