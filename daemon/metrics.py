"""Prometheus metrics of one process, served at /metrics by daemon/health.py.

Counters are fed where the events happen: runs and records by the runner (observe_run),
HTTP requests, 429s, retries and token refreshes by the transport (observe_response...).
Queue depth and last success per profile are read from PostgreSQL at scrape time
(collect_database), so every replica reports the same shared truth and a restart loses none.
"""

from __future__ import annotations

import asyncio

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from daemon.context import RunCounts
from daemon.db.queries import QUERIES
from daemon.logs import get_logger

log = get_logger(__name__)

#: Run duration buckets (seconds): a quiet incremental run takes seconds, a first full
#: export of a large shop an hour or more.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))


class Metrics:
    """One registry per process (not the global default), so tests can build their own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.runs = Counter(
            "fa_sync_runs", "Finished runs by profile and status", ["profile", "status"], registry=r
        )
        self.records = Counter(
            "fa_sync_records", "Ledger outcomes by profile and outcome", ["profile", "outcome"],
            registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "fa_sync_run_seconds", "Run duration by profile", ["profile"], buckets=RUN_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "fa_sync_http_requests",
            'HTTP attempts by service and status ("error": no answer: timeout, connection)',
            ["service", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "fa_sync_http_rate_limited", "429 answers by service", ["service"], registry=r
        )
        self.retries = Counter(
            "fa_sync_http_retries", "HTTP attempts repeated after a failure", ["service"],
            registry=r,
        )  # fmt: skip
        self.token_refreshes = Counter(
            "fa_sync_token_refreshes",
            "FreeAgent token refreshes by outcome (rejected: re-authorisation needed)",
            ["outcome"],
            registry=r,
        )
        self.queue = Gauge(
            "fa_sync_queue_depth", "Ledger rows by profile and status (read at scrape time)",
            ["profile", "status"], registry=r,
        )  # fmt: skip
        self.last_success = Gauge(
            "fa_sync_last_success_timestamp_seconds",
            "Finish time of the newest complete or warning run per profile (from history)",
            ["profile"],
            registry=r,
        )
        self.alerts_raised = Counter(
            "fa_sync_alerts_raised", "Alert conditions raised (not suppressed) by kind", ["kind"],
            registry=r,
        )  # fmt: skip
        self.alert_deliveries = Counter(
            "fa_sync_alert_deliveries",
            "Alert message deliveries by channel and outcome (sent, failed)",
            ["channel", "outcome"],
            registry=r,
        )
        self.database_up = Gauge(
            "fa_sync_database_up", "1 if the scrape-time queries answered in time", registry=r
        )

    def observe_run(self, profile: str, status: str, counts: RunCounts, seconds: float) -> None:
        """Count one finished run and its records."""
        self.runs.labels(profile, status).inc()
        for outcome, n in counts.as_dict().items():
            if n:
                self.records.labels(profile, outcome).inc(n)
        self.duration.labels(profile).observe(seconds)

    def observe_response(self, service: str, status: int | None) -> None:
        """One HTTP attempt: its status, or None when no answer came."""
        self.requests.labels(service, str(status) if status is not None else "error").inc()
        if status == 429:
            self.rate_limited.labels(service).inc()

    def observe_retry(self, service: str) -> None:
        self.retries.labels(service).inc()

    def observe_token_refresh(self, status: int | None) -> None:
        """A refresh_token grant: ok, rejected (400/401: invalid_grant, revoked) or error."""
        if status is not None and status < 400:
            outcome = "ok"
        elif status in (400, 401):
            outcome = "rejected"
        else:
            outcome = "error"
        self.token_refreshes.labels(outcome).inc()

    async def collect_database(self, pool: asyncpg.Pool, *, within: float) -> bool:
        """Refresh the gauges read from PostgreSQL; on failure or timeout they are cleared
        (a stale queue depth would mislead) and fa_sync_database_up is 0."""
        try:
            async with asyncio.timeout(within):
                depth = await pool.fetch(QUERIES["metrics_queue_depth"])
                success = await pool.fetch(QUERIES["metrics_last_success"])
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("metrics_database_unavailable", error=repr(exc))
            self.queue.clear()
            self.last_success.clear()
            self.database_up.set(0)
            return False
        self.queue.clear()
        for row in depth:
            self.queue.labels(row["profile"], row["status"]).set(row["n"])
        self.last_success.clear()
        for row in success:
            self.last_success.labels(row["profile"]).set(row["finished_at"].timestamp())
        self.database_up.set(1)
        return True
