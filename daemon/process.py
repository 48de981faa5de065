"""The daemon process: build resources, start background tasks, await stop, shut down.

Background tasks: the profile listener (LISTEN on a dedicated connection, re-established with
backoff after PostgreSQL restarts, with a periodic full resync in case a NOTIFY was lost) and
housekeeping (history retention). If one of them dies, the daemon stops loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from daemon.alerts.dispatcher import configured_dispatcher
from daemon.claims import TAKEOVER_GRACE, session_name
from daemon.clients.transport import Transport
from daemon.context import RunOptions, RunSlots
from daemon.db.embedded import start_embedded
from daemon.db.pool import DEFAULT_STATEMENT_CACHE, create_pool, migrate
from daemon.db.queries import QUERIES
from daemon.db.records import Profile, RunTrigger
from daemon.errors import DatabaseError
from daemon.logs import get_logger
from daemon.metrics import Metrics
from daemon.priority import CHANNEL as PRIORITY_CHANNEL
from daemon.priority import PriorityDispatch
from daemon.resources import ClientFactory
from daemon.runner import Runner, RunOutcome, process_clock, utcnow
from daemon.scheduler import ProfileScheduler
from daemon.secretbox import box_for, prepare_secrets
from daemon.service import supervised
from daemon.settings import Settings
from daemon.systemd import Notifier
from profiles import validate_profile

log = get_logger(__name__)

CHANNEL = "fa_sync_profile"
#: Connection errors that mean "PostgreSQL is away", as opposed to a bad statement.
DB_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    DatabaseError,
    ConnectionError,
    TimeoutError,
)
#: ... or any PostgreSQL error: logged, and the loop carries on.
DB_OR_SQL = (*DB_DOWN, asyncpg.PostgresError)


@dataclass
class Services:
    """What main() builds once and passes around (no globals)."""

    settings: Settings
    dsn: str
    pool: asyncpg.Pool
    factory: ClientFactory
    session: aiohttp.ClientSession
    #: Shared by the transport (requests) and the daemon (runs); served at /metrics.
    metrics: Metrics = field(default_factory=Metrics)


@asynccontextmanager
async def open_services(
    settings: Settings, *, migrate_schema: bool = True
) -> AsyncIterator[Services]:
    """Database (embedded if DATABASE_URL is unset), schema, HTTP session and client factory."""
    # Connection budget: no code path waits for a second pooled connection while holding
    # one, each in-flight record needs at most one, each exporting run one more (claims,
    # lease), and Daemon bounds exporting runs to max_concurrent_runs; so this size never
    # starves (pool_size() refuses a smaller FA_SYNC_DB_POOL_SIZE before anything starts).
    # Runs not exporting (claiming, collecting, finding nothing due) hold one connection at a
    # time for one short statement, never while waiting for anything else.
    size = settings.pool_size()
    dsn, server = await database_server(settings)
    pool = await connect_with_retry(
        dsn,
        max_size=size,
        acquire_timeout=settings.db_acquire_timeout,
        statement_cache=settings.db_statement_cache,
    )
    try:
        box = box_for(settings, embedded=server is not None)
        if migrate_schema:
            await migrate(pool)
            await prepare_secrets(pool, box)
        timeout = aiohttp.ClientTimeout(total=settings.http_timeout)
        metrics = Metrics()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            transport = Transport(session=session, settings=settings, metrics=metrics)
            factory = ClientFactory(pool=pool, settings=settings, transport=transport, secrets=box)
            yield Services(settings, dsn, pool, factory, session, metrics)
    finally:
        await pool.close()
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()


async def database_server(settings: Settings) -> tuple[str, Any]:
    """The configured DSN, or an embedded server's (and its handle, to stop it after)."""
    configured = settings.dsn()
    if configured is not None:
        return configured, None
    return await asyncio.to_thread(start_embedded, settings.data_dir)


async def connect_with_retry(
    dsn: str,
    attempts: int = 30,
    max_size: int = 10,
    acquire_timeout: float = 30.0,
    statement_cache: int = DEFAULT_STATEMENT_CACHE,
) -> asyncpg.Pool:
    """A pool, waiting for PostgreSQL to accept connections (it may be starting too)."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return await create_pool(
                dsn,
                max_size=max_size,
                acquire_timeout=acquire_timeout,
                statement_cache=statement_cache,
            )
        except DatabaseError:
            if attempt == attempts:
                raise
            log.warning("database_unavailable", attempt=attempt, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


class Daemon:
    """Schedules every enabled profile and runs their fires until told to stop."""

    def __init__(self, services: Services, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.services = services
        self.settings = services.settings
        self.stopping = asyncio.Event()
        self._clock = clock
        self.metrics = services.metrics
        #: None when no alert channel is configured (alerts off).
        self.alerts = configured_dispatcher(services.pool, services.session, self.settings,
                                            self.metrics)  # fmt: skip
        #: Run slots: every fire is claimed when due; then collects beyond
        #: max_concurrent_collects and exports beyond max_concurrent_runs (the connection
        #: budget) wait here.
        self.slots = RunSlots(
            collect=asyncio.Semaphore(self.settings.max_concurrent_collects),
            export=asyncio.Semaphore(self.settings.max_concurrent_runs),
        )
        self.runner = Runner(
            pool=services.pool,
            settings=self.settings,
            resources=services.factory,
            stopping=self.stopping,
            clock=clock,
            metrics=self.metrics,
            alerts=self.alerts,
            slots=self.slots,
        )
        self.scheduler = ProfileScheduler(
            on_fire=self.fire,
            misfire_grace_seconds=self.settings.misfire_grace_seconds,
            clock=clock,
        )
        self._runs: set[asyncio.Task[Any]] = set()
        self._reload_wanted = asyncio.Event()
        #: Set after each completed reload (tests await it instead of sleeping).
        self.reloaded = asyncio.Condition()
        self.reload_count = 0
        #: Outcomes of finished fires, newest last (tests await `runs_changed`).
        self.outcomes: list[RunOutcome] = []
        self.runs_changed = asyncio.Condition()
        self._errors: dict[int, str | None] = {}
        self.priority = PriorityDispatch(self, clock)  #: Magento events, the priority lane

    def track(self, task: asyncio.Task[Any]) -> None:
        """A run task the shutdown drains."""
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until stop is set (signal) or a background task dies."""
        self.scheduler.start()
        tasks = [
            asyncio.create_task(self._listen_forever(), name="profile-listener"),
            asyncio.create_task(self._reloader(), name="profile-reloader"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]
        if self.alerts is not None:
            tasks.append(asyncio.create_task(self.alerts.run(self._clock), name="alerts"))
        log.info("alerts", channels=[c.name for c in self.alerts.channels] if self.alerts else [])
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        log.info("daemon_started", replica=self.settings.replica_id)
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception():
                    log.error(
                        "background_task_died", task=task.get_name(), error=repr(task.exception())
                    )
                    raise RuntimeError(
                        f"background task {task.get_name()} died"
                    ) from task.exception()
        finally:
            for task in [stopper, *tasks]:
                task.cancel()
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop firing, let running batches finish within the grace period, release the rest."""
        self.scheduler.shutdown()
        self.stopping.set()
        if self._runs:
            log.info(
                "draining_runs",
                running=len(self._runs),
                grace_seconds=self.settings.shutdown_grace_seconds,
            )
            _, pending = await asyncio.wait(
                self._runs, timeout=self.settings.shutdown_grace_seconds
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        with contextlib.suppress(*DB_DOWN, asyncpg.PostgresError):
            released = await self.services.pool.fetch(
                QUERIES["run_release_owner"], self.settings.replica_id
            )
            if released:
                log.warning("runs_released", runs=[r["id"] for r in released])
        log.info("daemon_stopped")

    def status_line(self) -> str:
        """What the daemon is doing, in words (systemd's STATUS=)."""
        running = len(self._runs)
        if self.stopping.is_set():
            return f"stopping: draining {running} run(s)"
        if not self.reload_count:
            return "loading profiles"
        line = f"{len(self.scheduler.scheduled)} profile(s) scheduled, {running} run(s) in progress"
        if self.outcomes:
            line += f", last run {self.outcomes[-1].status}"
        return line

    # -- fires ----------------------------------------------------------------------------

    async def fire(self, profile_id: int, scheduled_for: datetime) -> None:
        """The scheduler's callback: start the run as a task and return, so it never waits."""
        if self.stopping.is_set():
            return
        fire = self.run_fire(profile_id, scheduled_for, RunTrigger.SCHEDULE)
        self.track(asyncio.create_task(fire, name=f"fire-{profile_id}"))

    async def run_fire(self, profile_id: int, scheduled_for: datetime, trigger: RunTrigger,
                       options: RunOptions | None = None) -> None:  # fmt: skip
        """Claim and run one fire now (its stages wait for run slots, see RunSlots); if
        PostgreSQL went away mid-run, try again once it is back."""
        spread = self.settings.claim_spread_seconds
        if trigger is RunTrigger.SCHEDULE and not self.runner.claims.claims_first(profile_id):
            # Another live replica is this profile's assignee (daemon/claims.py): let it
            # claim first; take over only if the fire is still free after the spread, or
            # after the grace if the assignee is still connected.
            await asyncio.sleep(spread * random.uniform(1, 2))  # noqa: S311 (not a secret)
            if not self.stopping.is_set() and await self.runner.claims.assignee_live(profile_id):
                await asyncio.sleep(spread * TAKEOVER_GRACE)
            if self.stopping.is_set() or await self.runner.claims.fire_taken(
                profile_id, scheduled_for
            ):
                return  # claimed (or skipped) by its assignee: nothing to take over
        if not self.stopping.is_set():
            await self._run_fire_attempts(profile_id, scheduled_for, trigger, options)

    async def _run_fire_attempts(self, profile_id: int, scheduled_for: datetime,
                                 trigger: RunTrigger, options: RunOptions | None,
                                 ) -> None:  # fmt: skip
        for attempt in range(1, 4):
            try:
                outcome = await self.runner.fire(
                    profile_id, scheduled_for, trigger=trigger, options=options
                )
                async with self.runs_changed:
                    self.outcomes = [*self.outcomes[-99:], outcome]
                    self.runs_changed.notify_all()
                await self.priority.after_run(profile_id, outcome)
                return
            except DB_OR_SQL as exc:
                log.error("fire_failed", profile_id=profile_id, error=repr(exc), attempt=attempt)
                if self.stopping.is_set():
                    return
                await asyncio.sleep(min(2**attempt, 30))
                # A retry is a new, manual fire: the scheduled one is closed (or its lease expires).
                scheduled_for, trigger = self._clock(), RunTrigger.MANUAL

    # -- profile reloads --------------------------------------------------------------------

    def _notified(self, *_: Any) -> None:
        self._reload_wanted.set()

    async def _reloader(self) -> None:
        """Reload on request; a failed reload (PostgreSQL away) is tried again with backoff
        rather than waiting for the next NOTIFY or periodic resync."""
        delay = 0.5
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            try:
                await self.reload()
                delay = 0.5
            except DB_OR_SQL as exc:
                log.warning("profile_reload_failed", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
                self._reload_wanted.set()

    async def reload(self) -> None:
        """Read every profile and bring the schedule in line; flag rows that cannot run."""
        rows = await self.services.pool.fetch(QUERIES["profile_list"])
        await self.runner.claims.refresh_replicas()
        profiles = [Profile.from_row(r) for r in rows]
        valid = []
        for profile in profiles:
            problem = validate_profile(profile)
            if problem:
                await self._flag(profile, problem)
            else:
                valid.append(profile)
        for profile_id, error in self.scheduler.sync(valid).items():
            profile = next(p for p in profiles if p.id == profile_id)
            await self._flag(profile, error)
        for profile in valid:
            if profile.config_error and self.scheduler.next_fire(profile.id) is not None:
                await self._flag(profile, None)
        async with self.reloaded:
            self.reload_count += 1
            self.reloaded.notify_all()

    async def _flag(self, profile: Profile, error: str | None) -> None:
        if error:
            self.scheduler.remove(profile.id)
            log.error("profile_invalid", profile=profile.name, error=error)
        if profile.config_error != error:
            await self.services.pool.execute(QUERIES["profile_set_error"], profile.id, error)

    async def _listen_forever(self) -> None:
        """LISTEN for profile changes; reconnect with backoff; resync periodically and after."""
        delay = 0.5
        while True:
            try:
                await self._listen_once()
                delay = 0.5
            except DB_OR_SQL as exc:
                log.warning("listener_reconnecting", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def _listen_once(self) -> None:
        # LISTEN needs a session connection: behind PgBouncer point this one at a session pool.
        # Its application_name is how the other replicas see this one (daemon/claims.py).
        conn = await asyncpg.connect(
            self.services.dsn,
            server_settings={"application_name": session_name(self.settings.replica_id)},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._notified)
            await conn.add_listener(PRIORITY_CHANNEL, self.priority.notified)
            await self.priority.resume()  # rows whose NOTIFY came while nobody listened
            log.info("listening", channel=CHANNEL)
            self._reload_wanted.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=self.settings.resync_seconds)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1")  # liveness of a quiet connection
                    self._reload_wanted.set()
            raise ConnectionError("listener connection closed")
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def _housekeeping(self) -> None:
        """History retention, hourly."""
        while True:
            try:
                await self.purge_history()
            except DB_OR_SQL as exc:
                log.warning("history_purge_failed", error=repr(exc))
            await asyncio.sleep(3600)

    async def purge_history(self) -> None:
        """Drop finished runs (and sent alerts) older than FA_SYNC_HISTORY_RETENTION_DAYS."""
        cutoff = self._clock() - timedelta(days=self.settings.history_retention_days)
        result = await self.services.pool.execute(QUERIES["run_purge"], cutoff)
        if self.alerts is not None:
            await self.alerts.purge(cutoff)
        log.info("history_purged", result=result, older_than=cutoff.isoformat())


async def main(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """`fa-sync run`: serve until SIGTERM/SIGINT; exit 0 after a clean drain."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    clock = process_clock(settings)
    if settings.clock_start is not None:
        log.warning("clock_shifted", now=clock().isoformat(), reason="FA_SYNC_CLOCK_START")
    notifier = Notifier.from_environ()
    notifier.status("connecting to PostgreSQL")
    async with open_services(settings) as services:
        daemon = Daemon(services, clock=clock)
        async with supervised(daemon, notifier):
            await daemon.serve(stop)
    return 0
