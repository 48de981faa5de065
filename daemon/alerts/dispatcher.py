"""The alert dispatcher: raises conditions, batches summaries and delivers messages.

One per process, run as the daemon's background task "alerts". Every decision that must
happen once across replicas is PostgreSQL's: fa_alert_raise (quiet periods), fa_alert_summarise
(who builds the summary) and alert_message_claim (who delivers a message, SKIP LOCKED and a
lease). Delivery failures are retried with backoff and never reach the runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import asyncpg

from daemon.alerts.channels import AlertDeliveryError, Channel, build_channels
from daemon.alerts.conditions import (
    Condition,
    DeadLetters,
    FinishedRun,
    Severity,
    Thresholds,
    reauth_condition,
    run_conditions,
)
from daemon.alerts.render import AlertRow, render
from daemon.db.queries import QUERIES
from daemon.errors import DatabaseError
from daemon.logs import get_logger
from daemon.metrics import Metrics
from daemon.settings import Settings

log = get_logger(__name__)

#: PostgreSQL away, or a statement it refused: logged, and the next tick tries again.
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, DatabaseError)
#: Messages one tick takes at most (the rest wait for the next tick).
CLAIM_BATCH = 20
#: First delivery retry waits this long, doubling per attempt up to MAX_BACKOFF.
BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    delivered: list[str]
    attempts: int


class AlertDispatcher:
    """Raise, batch and deliver alerts; `tick(now)` does one pass (tests drive it)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        channels: list[Channel],
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self.channels = channels
        self._replica = settings.replica_id
        self.interval = timedelta(minutes=settings.alert_summary_minutes)
        self.thresholds = Thresholds(
            settings.alert_failure_share, settings.alert_failure_min_records
        )
        self._attempts = settings.alert_delivery_attempts
        #: A delivery holds its messages this long; after it, another replica may retry them.
        self._lease = timedelta(seconds=settings.alert_timeout * 2 * max(1, len(channels)) + 30)
        self._poll = settings.alert_poll_seconds
        self._metrics = metrics
        #: Set when this process raised a critical alert: the loop sends it without waiting.
        self._wake = asyncio.Event()

    # -- raising ----------------------------------------------------------------------------

    async def raise_condition(self, condition: Condition, now: datetime) -> int | None:
        """Record a condition; its new alert's id, or None when it repeats within its quiet
        period (then it is merged into the unsent alert of the same key, if any)."""
        alert_id: int | None = await self._pool.fetchval(
            QUERIES["alert_raise"], str(condition.kind), str(condition.severity),
            condition.dedup_key, condition.profile, condition.client, condition.title,
            condition.details, condition.records, now,
            condition.quiet_until(now, self.interval),
        )  # fmt: skip
        log.info(
            "alert_raised" if alert_id else "alert_suppressed",
            kind=str(condition.kind), key=condition.dedup_key, alert_id=alert_id,
        )  # fmt: skip
        if alert_id and condition.severity is Severity.CRITICAL:
            self._wake.set()
        if alert_id and self._metrics is not None:
            self._metrics.alerts_raised.labels(str(condition.kind)).inc()
        return alert_id

    async def run_finished(
        self, run: FinishedRun, *, retry_max_attempts: int, now: datetime
    ) -> None:
        """The runner's hook: raise what a finished run is worth. Never raises: an alert
        that cannot be recorded is logged, and the run's result stands."""
        try:
            dead = DeadLetters()
            if run.counts.failed:
                row = await self._pool.fetchrow(
                    QUERIES["alert_dead_letters"],
                    run.profile_id,
                    str(run.run_id),
                    retry_max_attempts,
                )
                dead = DeadLetters(row["n"], row["exhausted"], tuple(row["sample"]))
            for condition in run_conditions(run, dead, self.thresholds):
                await self.raise_condition(condition, now)
        except DB_ERRORS as exc:
            log.warning("alert_raise_failed", run_id=run.run_id, error=repr(exc))

    async def scan_reauth(self, now: datetime) -> None:
        """Raise re-authorisation alerts for refused token pairs not alerted yet."""
        for row in await self._pool.fetch(QUERIES["alert_reauth_unraised"]):
            await self.raise_condition(
                reauth_condition(
                    dedup_key=row["dedup_key"], client=row["name"], reason=row["reason"],
                    refused_at=row["refused_at"], profiles=list(row["profiles"]),
                ),
                now,
            )  # fmt: skip

    # -- delivering -------------------------------------------------------------------------

    async def tick(self, now: datetime) -> int:
        """One pass: scan for refused tokens, build the summary if due, deliver what is due.
        Returns the number of messages delivered."""
        await self.scan_reauth(now)
        summary = await self._pool.fetchval(
            QUERIES["alert_summarise"], now, self.interval.total_seconds()
        )
        if summary:
            log.info("alert_summary_built", message_id=summary)
        sent = 0
        claimed = await self._pool.fetch(
            QUERIES["alert_message_claim"], now, self._lease.total_seconds(), CLAIM_BATCH
        )
        for row in claimed:
            message = Claimed(row["id"], row["kind"], list(row["delivered"]), row["attempts"])
            sent += await self._deliver(message, now)
        return sent

    async def _deliver(self, message: Claimed, now: datetime) -> int:
        rows = await self._pool.fetch(QUERIES["alert_message_alerts"], message.id)
        rendered = render(
            message.kind, [AlertRow.from_row(r) for r in rows], now=now, replica=self._replica
        )
        delivered, errors = list(message.delivered), []
        for channel in self.channels:
            if channel.name in delivered:
                continue
            try:
                await channel.send(rendered, now)
                delivered.append(channel.name)
                self._count(channel.name, "sent")
            except AlertDeliveryError as exc:
                errors.append(str(exc))
                self._count(channel.name, "failed")
            except Exception as exc:  # a bug in one channel must not stop the others, or runs
                log.exception("alert_channel_crashed", channel=channel.name)
                errors.append(f"{channel.name}: internal error {type(exc).__name__}")
                self._count(channel.name, "failed")
        attempts = message.attempts + 1
        if not errors:
            status, retry_at, error = "sent", None, None
            log.info("alert_sent", message_id=message.id, kind=message.kind, channels=delivered)
        else:
            error = "; ".join(errors)
            status = "failed" if attempts >= self._attempts else "pending"
            retry_at = now + min(BACKOFF * 2 ** (attempts - 1), MAX_BACKOFF)
            log.warning(
                "alert_delivery_failed", message_id=message.id, attempts=attempts, error=error,
                retry_at=retry_at.isoformat() if status == "pending" else None,
            )  # fmt: skip
        await self._pool.execute(
            QUERIES["alert_message_done"], message.id, delivered, error, retry_at, status, now
        )
        return 1 if status == "sent" else 0

    def _count(self, channel: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.alert_deliveries.labels(channel, outcome).inc()

    async def purge(self, older_than: datetime) -> None:
        """Forget sent or abandoned messages and expired quiet periods (housekeeping)."""
        await self._pool.execute(QUERIES["alert_purge"], older_than)

    async def flush(self, now: datetime) -> None:
        """One tick for a run-once command, whose failures are logged, never raised."""
        try:
            await self.tick(now)
        except Exception:  # the command's run result stands whatever alerting does
            log.exception("alert_tick_crashed")

    async def run(self, clock: Callable[[], datetime]) -> None:
        """The background task: a tick at once when woken (a critical alert here), else
        every alert_poll_seconds; any failure is logged and the next tick tries again."""
        while True:
            self._wake.clear()
            try:
                await self.tick(clock())
            except DB_ERRORS as exc:
                log.warning("alert_tick_failed", error=repr(exc))
            except Exception:  # alerting is a bystander: a bug here must not stop the runs
                log.exception("alert_tick_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)


def configured_dispatcher(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, settings: Settings, metrics: Metrics
) -> AlertDispatcher | None:
    """The process's dispatcher, or None when no channel is configured (alerts off)."""
    channels = build_channels(settings, lambda: session)
    if not channels:
        return None
    return AlertDispatcher(pool=pool, channels=channels, settings=settings, metrics=metrics)


async def send_test(
    channels: list[Channel], *, now: datetime, replica: str
) -> list[tuple[str, str | None]]:
    """Send a test message through each channel (no database): (name, error or None)."""
    message = render("test", [], now=now, replica=replica)
    results: list[tuple[str, str | None]] = []
    for channel in channels:
        try:
            await channel.send(message, now)
            results.append((channel.name, None))
        except AlertDeliveryError as exc:
            results.append((channel.name, str(exc)))
    return results
