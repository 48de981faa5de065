"""Process-wide settings: environment variables prefixed FA_SYNC_, or a .env file.

Per-profile behaviour lives in the `profile` table, not here: these are the knobs of the process.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from daemon.clients.requestlog import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES
from daemon.db.pool import DEFAULT_STATEMENT_CACHE
from daemon.errors import ConfigError
from daemon.loop import EventLoop

#: Connections kept for the process itself (profile reloads, housekeeping, token refreshes).
POOL_RESERVE = 4
#: An ambiguous create settles after at least this many HTTP timeouts (see settle_window).
SETTLE_TIMEOUTS = 10


def _default_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error is about."""
    field = str(loc[0]) if loc else "?"
    return (
        "DATABASE_URL" if field in ("database_url", "DATABASE_URL") else f"FA_SYNC_{field.upper()}"
    )


class Settings(BaseSettings):
    """One Settings object is built in main() and passed to whatever needs it."""

    # NaN and infinity are refused everywhere: `1e300` hours once overflowed timedelta on
    # every run. Every number below has bounds for the same reason.
    model_config = SettingsConfigDict(
        env_prefix="FA_SYNC_", env_file=".env", extra="ignore", allow_inf_nan=False
    )

    #: PostgreSQL DSN. Also read from plain DATABASE_URL. Unset: an embedded server is started.
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    #: Fernet key sealing secrets in the database. Unset with the embedded database: a key
    #: kept beside data_dir; unset with DATABASE_URL: no secret can be stored.
    secret_key: SecretStr | None = None
    #: Comma-separated previous keys: they still open secrets, until `fa-sync secrets rotate-key`.
    secret_keys_old: SecretStr | None = None
    #: Where the embedded PostgreSQL keeps its data when database_url is unset.
    data_dir: Path = Path(".fa-sync/pgdata")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    #: Event loop of every fa-sync process: uvloop (less overhead per callback and socket
    #: operation), or asyncio (the standard library's; also wherever uvloop is not installed).
    event_loop: EventLoop = "uvloop"
    #: Directory for request/response logs of profiles that enable them.
    request_log_dir: Path = Path("logs")
    #: A request log file is rotated before it passes this size (bytes).
    request_log_max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=4096, le=1024**4)
    #: Rotated request log files kept per profile (file.1 newest .. file.N); 0 keeps none.
    request_log_backups: int = Field(default=DEFAULT_BACKUPS, ge=0, le=1000)
    #: Identifies this replica in run leases; unique per process.
    replica_id: str = Field(default_factory=_default_replica_id)
    #: How long a run lease lasts without renewal; renewed every third of it.
    lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    #: Full re-read of all profiles, in case a NOTIFY was lost.
    resync_seconds: float = Field(default=60.0, ge=1, le=86400)
    #: SIGTERM: how long running batches may take to finish (below systemd's 90 s).
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    #: APScheduler misfire grace: a fire missed by less than this still runs.
    misfire_grace_seconds: int = Field(default=300, ge=1, le=86400)
    #: Days of profile_run history kept.
    history_retention_days: int = Field(default=7, ge=1, le=3650)
    #: Concurrent FreeAgent writes per run.
    export_concurrency: int = Field(default=4, ge=1, le=64)
    #: Runs one process exports at once (export_concurrency records each); further runs wait
    #: for a slot (connection budget). A fire is claimed when due whatever the slots say.
    max_concurrent_runs: int = Field(default=4, ge=1, le=64)
    #: Runs one process reads Magento for at once (collect: I/O-bound, one connection at a
    #: time for a short statement, so they take no connections of their own).
    max_concurrent_collects: int = Field(default=32, ge=1, le=1024)
    #: A scheduled fire is claimed at once by its assignee among the live replicas
    #: (daemon/claims.py); every other replica waits between this and twice this many
    #: seconds, then claims it only if it is still free (its assignee died or lags). So
    #: replicas split fires arriving together instead of the quickest one taking them all.
    #: 0: every replica claims at once.
    claim_spread_seconds: float = Field(default=0.3, ge=0, le=60)
    #: Seconds a FreeAgent user (users/me) and Magento store views and store configs are
    #: reused across runs; a re-authorised client or another connection reads them again.
    #: 0 reads them in every run.
    config_cache_seconds: float = Field(default=900.0, ge=0, le=86400)
    #: PostgreSQL connections in the pool. Unset: max_concurrent_runs * (export_concurrency
    #: + 1) + 4. Set lower than that and the daemon refuses to start (see pool_size()).
    db_pool_size: int | None = Field(default=None, ge=1, le=10_000)
    #: Longest wait for a free pooled connection before a DatabaseError (seconds).
    db_acquire_timeout: float = Field(default=30.0, gt=0, le=3600)
    #: Prepared statements kept per pooled connection, so a repeated statement is one round
    #: trip instead of two (prepare, then execute). 0 behind PgBouncer in transaction mode
    #: unless it tracks prepared statements (PgBouncer 1.21+ with max_prepared_statements).
    db_statement_cache: int = Field(default=DEFAULT_STATEMENT_CACHE, ge=0, le=10_000)
    #: A create whose outcome is unknown (timeout, 5xx) is looked up again only after this
    #: long, and never sooner than 10 HTTP timeouts: FreeAgent may still commit it.
    create_settle_seconds: float = Field(default=300.0, gt=0, le=7 * 86400)
    #: HTTP timeouts (seconds).
    http_timeout: float = Field(default=30.0, gt=0, le=600)
    #: Attempts per HTTP request for transient errors, within one record attempt.
    http_retry_attempts: int = Field(default=5, ge=1, le=100)
    #: Attempts per HTTP request while the server keeps answering 429 (each waits Retry-After).
    http_rate_limit_attempts: int = Field(default=30, ge=1, le=1000)
    #: Largest response body read (bytes, after decompression); a larger answer is an error.
    http_max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    #: Upper bound of one backoff sleep between HTTP retries.
    http_retry_max_wait: float = Field(default=60.0, ge=0, le=3600)
    #: Rate-limit windows in seconds (FreeAgent: 60 and 3600; tests shorten them).
    rate_minute_window: float = Field(default=60.0, gt=0, le=86400)
    rate_hour_window: float = Field(default=3600.0, gt=0, le=86400)
    #: Seconds a granted request stays counted beyond its window: the longest we expect
    #: between our grant and FreeAgent's receipt (see daemon/clients/ratelimit.py).
    rate_latency_allowance: float = Field(default=5.0, ge=0, le=600)
    #: Requests per window left unused, below each client's configured limits.
    rate_headroom_per_minute: int = Field(default=2, ge=0, le=10_000)
    rate_headroom_per_hour: int = Field(default=20, ge=0, le=100_000)
    #: Of that headroom, requests per window the priority lane (Magento events) may spend.
    rate_priority_per_minute: int = Field(default=1, ge=0, le=10_000)
    rate_priority_per_hour: int = Field(default=10, ge=0, le=100_000)
    #: Requests per hour the backlog leaves to the priority lane (0: none kept back).
    rate_priority_reserve_per_hour: int = Field(default=60, ge=0, le=100_000)
    #: FreeAgent's second limit, per IP address across users: requests per minute window
    #: every FreeAgent user sending from one address shares (0: no egress budget).
    rate_egress_per_minute: int = Field(default=1000, ge=0, le=1_000_000)
    #: Requests per minute window left unused below it (the priority lane may spend
    #: rate_priority_per_minute of them).
    rate_egress_headroom_per_minute: int = Field(default=10, ge=0, le=1_000_000)
    #: Names the address this replica's requests leave from. Replicas with the same name share
    #: one egress budget: the default gives every replica on the database one (they may sit
    #: behind one NAT); replicas with public addresses of their own set one each (the hostname).
    rate_egress_key: str = Field(default="shared", min_length=1, max_length=200)
    #: Consecutive run-level failures back a profile off exponentially from this base.
    breaker_base_seconds: float = Field(default=60.0, ge=0, le=86400)
    #: Longest breaker back-off (seconds).
    breaker_max_seconds: float = Field(default=3600.0, ge=0, le=7 * 86400)
    #: Consecutive records failing transiently (after their own retries) that stop a run.
    outage_after_failures: int = Field(default=3, ge=0, le=10_000)
    #: Backoff base for per-record retries across runs (seconds, doubled per attempt).
    record_retry_base_seconds: float = Field(default=60.0, ge=0, le=86400)
    #: Sent on every request; FreeAgent asks apps to identify themselves.
    user_agent: str = "fa-sync/0.1 (+https://github.com/fa-sync)"
    #: Port of the /healthz, /readyz and /metrics server of `fa-sync run` (0 disables it).
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    #: For testing only: the process clock starts at this instant (ISO 8601 with an offset)
    #: and runs at real speed. Schedules, scheduled_for and run times follow it; PostgreSQL's
    #: own clock (leases) does not. Unset: the system clock.
    clock_start: AwareDatetime | None = None
    #: Address the metrics server binds: loopback unless deliberately exposed ("0.0.0.0").
    metrics_address: str = "127.0.0.1"
    #: /healthz answers 503 once the event loop has not ticked for this long (seconds).
    health_stall_seconds: float = Field(default=10.0, gt=0)
    #: /readyz and /metrics give PostgreSQL this long to answer (seconds).
    health_db_timeout: float = Field(default=2.0, gt=0)
    #: host:port of the POST /webhooks/magento listener (daemon/webhook.py). Unset: no endpoint.
    #: Separate from the metrics server, which stays on loopback while this one may not.
    webhook_listen: str | None = Field(default=None, pattern=r"^\[?[^\s\]]*\]?:[0-9]{1,5}$")
    #: Largest webhook body accepted (bytes); larger deliveries are answered 413.
    webhook_max_body_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    #: A delivery whose timestamp is further than this from our clock is refused (seconds).
    webhook_tolerance_seconds: float = Field(default=300.0, ge=1, le=3600)
    #: Events sent while the shop's transaction is still open (Adobe Commerce Webhooks,
    #: Mageplaza) are answered at once and queued this many seconds later, once it committed.
    webhook_settle_seconds: float = Field(default=5.0, ge=0, le=300)
    #: The contact index is swept (every contact listed, those FreeAgent no longer has
    #: dropped) at most this often per FreeAgent client (hours): updated_since never reports
    #: a deletion, and a deleted contact left in the index could be linked to.
    contact_sweep_hours: float = Field(default=24.0, gt=0, le=24 * 365)

    #: Alerts (daemon/alerts/): both channels unset turns them off. A Slack-compatible
    #: incoming webhook; its URL holds a secret, so it is never logged.
    alert_webhook_url: SecretStr | None = None
    #: SMTP server for alert e-mail; needs alert_email_from and alert_email_to.
    alert_smtp_host: str | None = None
    #: Unset: 465 for ssl, else 587 (25 for none).
    alert_smtp_port: int | None = Field(default=None, ge=1, le=65535)
    #: starttls (upgrade after connecting), ssl (TLS from the start) or none.
    alert_smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    alert_smtp_username: str | None = None
    alert_smtp_password: SecretStr | None = None
    alert_email_from: str | None = None
    #: Comma-separated recipients.
    alert_email_to: str | None = None
    #: Warnings are batched into one summary this often; a condition is not repeated sooner.
    alert_summary_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    #: A run whose failed (or retrying) share of records is at least this raises an alert ...
    alert_failure_share: float = Field(default=0.2, gt=0, le=1)
    #: ... if it handled at least this many records (1 of 1 failing is no trend).
    alert_failure_min_records: int = Field(default=10, ge=1, le=1_000_000)
    #: Delivery attempts of one message before it is given up (backoff 30 s doubling, 1 h max).
    alert_delivery_attempts: int = Field(default=10, ge=1, le=100)
    #: Seconds one delivery may take (webhook POST, SMTP conversation).
    alert_timeout: float = Field(default=15.0, gt=0, le=300)
    #: How often each replica looks for due alerts raised elsewhere (its own are sent at once).
    alert_poll_seconds: float = Field(default=15.0, gt=0, le=3600)

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Settings from the environment (and .env), or a ConfigError naming every bad variable
        and what it should be. Values are never quoted: one of them may be a secret."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = "; ".join(
                f"{_env_name(error['loc'])}: {error['msg']}" for error in exc.errors()
            )
            raise ConfigError(f"settings: {problems}") from None

    def pool_size(self) -> int:
        """Pool connections: one per in-flight record and one per exporting run (claims,
        lease, history), plus a reserve; a configured size below that is refused, as it could
        starve runs. Runs between their claim and an export slot (claiming, collecting,
        waiting) use one connection at a time for one short statement and wait their turn."""
        needed = self.max_concurrent_runs * (self.export_concurrency + 1) + POOL_RESERVE
        if self.db_pool_size is None:
            return needed
        if self.db_pool_size < needed:
            raise ConfigError(
                f"FA_SYNC_DB_POOL_SIZE={self.db_pool_size} is too small: "
                f"FA_SYNC_MAX_CONCURRENT_RUNS={self.max_concurrent_runs} x "
                f"(FA_SYNC_EXPORT_CONCURRENCY={self.export_concurrency} + 1) + {POOL_RESERVE} "
                f"= {needed} connections are needed; raise it or lower the other two"
            )
        return self.db_pool_size

    def settle_window(self) -> timedelta:
        """How long after a create intent its POST is certainly finished at FreeAgent."""
        seconds = max(self.create_settle_seconds, SETTLE_TIMEOUTS * self.http_timeout)
        return timedelta(seconds=seconds)

    def webhook_address(self) -> tuple[str, int] | None:
        """(host, port) of the webhook listener, or None when it is off."""
        if not self.webhook_listen:
            return None
        host, _, port = self.webhook_listen.rpartition(":")
        if int(port) > 65535:
            raise ConfigError(f"FA_SYNC_WEBHOOK_LISTEN: port {port} is above 65535")
        return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (asked for)

    def dsn(self) -> str | None:
        """The configured DSN, or None for the embedded server."""
        return self.database_url.get_secret_value() if self.database_url else None
