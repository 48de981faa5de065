"""Rows as frozen dataclasses: one from_row() per table, statuses as Enums matching SQL."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Self


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    WARNING = "warning"
    ERROR = "error"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  #: shutdown cut it short; the next run resumes its records


class RunTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    CLI = "cli"


class EntityStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    CREATING = "creating"
    CREATED = "created"
    UPDATED = "updated"
    LINKED = "linked"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    REMOVED = "removed"  #: customer gone; contact left as it was
    HIDDEN = "hidden"  #: customer gone; contact set Hidden
    DELETED = "deleted"  #: customer gone; contact deleted
    NEEDS_REVIEW = "needs_review"  #: waits for a person (fa-sync match; queue resolve for drift)


class _FromRow:
    @classmethod
    def from_row(cls, row: Any) -> Self:
        """Build from an asyncpg Record (extra columns, e.g. joins, are ignored)."""
        names = _field_names(cls)  # type: ignore[arg-type]
        return cls(**{k: v for k, v in row.items() if k in names})


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    """A dataclass's field names: fixed once the class is built, and asked for on every row
    of every batch."""
    return frozenset(f.name for f in fields(cls))


#: The sandbox's request limit while requests send `X-RateLimit-Test: true` (reference §0).
RATE_LIMIT_TEST_PER_MINUTE = 5


def client_rate_limits(per_minute: int, per_hour: int, rate_limit_test: bool) -> tuple[int, int]:
    """(per minute, per hour) a client's budget may spend: its configured limits, or, while
    its requests send X-RateLimit-Test, what FreeAgent then allows.

    The header lowers the sandbox's limit to 5 a minute; counting 120 would earn a 429 on the
    sixth request of every minute. What it does to the hour is undocumented: fixed minute
    windows cannot admit more than 5 x 60 in an hour, so 300 is the most we could spend
    anyway and the hour budget shrinks to it (the status screen then shows what is usable).
    """
    if not rate_limit_test:
        return per_minute, per_hour
    minute = min(per_minute, RATE_LIMIT_TEST_PER_MINUTE)
    return minute, min(per_hour, minute * 60)


@dataclass(frozen=True)
class FreeAgentClientRow(_FromRow):
    id: int  #: primary key
    name: str  #: operator's label
    environment: str  #: production | sandbox | custom
    base_url: str | None  #: custom environments only (ends with /v2/)
    client_id: str  #: OAuth client id
    client_secret: str = field(repr=False)  #: never logged (repr hides it)
    redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob"
    access_token: str | None = field(default=None, repr=False)
    access_token_expires_at: datetime | None = None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_token_expires_at: datetime | None = None
    token_version: int = 0  #: bumped on each token write; stale holders re-read
    user_url: str | None = None  #: the authorising user: key of the shared rate budget
    user_email: str | None = None
    permission_level: int | None = None
    company_name: str | None = None
    company_subdomain: str | None = None
    rate_limit_per_minute: int = 120
    rate_limit_per_hour: int = 3600
    rate_limit_test: bool = False  #: send X-RateLimit-Test: true (sandbox: 5 requests/min)
    config_data: dict[str, Any] = field(default_factory=dict)
    config_collected_at: datetime | None = None

    @property
    def api_base(self) -> str:
        """The API root, ending in /v2/."""
        if self.environment == "production":
            return "https://api.freeagent.com/v2/"
        if self.environment == "sandbox":
            return "https://api.sandbox.freeagent.com/v2/"
        assert self.base_url, "custom environment without base_url (schema forbids it)"
        return self.base_url

    @property
    def rate_limits(self) -> tuple[int, int]:
        """(per minute, per hour) this client's requests may use (client_rate_limits)."""
        return client_rate_limits(
            self.rate_limit_per_minute, self.rate_limit_per_hour, self.rate_limit_test
        )

    @property
    def budget_key(self) -> str:
        """FreeAgent limits requests per authorising user; clients of one user share a budget."""
        return f"user:{self.user_url}" if self.user_url else f"client:{self.id}"


@dataclass(frozen=True)
class MagentoConnectionRow(_FromRow):
    id: int
    name: str
    base_url: str  #: shop root, e.g. https://shop.example.com
    store_code: str | None
    access_token: str = field(repr=False)  #: integration access token
    consumer_key: str | None = field(default=None, repr=False)
    consumer_secret: str | None = field(default=None, repr=False)
    access_token_secret: str | None = field(default=None, repr=False)

    @property
    def uses_oauth1(self) -> bool:
        """Sign with OAuth 1.0a when the integration's consumer credentials are configured."""
        return bool(self.consumer_key and self.consumer_secret and self.access_token_secret)


@dataclass(frozen=True)
class Profile(_FromRow):
    id: int
    name: str
    type: str
    enabled: bool
    schedule: str  #: cron text: 5 fields, or 6 with leading seconds
    timezone: str
    batch_size: int
    retry_enabled: bool
    retry_max_attempts: int
    api_behaviour: str  #: upsert | create | update | mirror (upsert + removal)
    collect_mode: str  #: append | replace
    collection_size: int
    history_enabled: bool
    client_id: int | None
    connection_id: int | None
    settings: dict[str, Any]
    updated_at: datetime | None = None
    config_error: str | None = None  #: set by the daemon when the row cannot be scheduled


@dataclass(frozen=True)
class Run(_FromRow):
    id: int
    profile_id: int
    trigger: str
    scheduled_for: datetime
    status: str
    fence: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    owner: str | None = None


@dataclass(frozen=True)
class ContactEntity(_FromRow):
    id: int
    profile_id: int
    source_key: str  #: customer:<id> | guest:<email>
    magento_customer_id: int | None
    website_id: int | None
    email: str | None
    freeagent_url: str | None
    status: str
    attempts: int
    payload_hash: str | None
    source_data: dict[str, Any]
    metadata: dict[str, Any]
    last_error: Any = None
    attempt_history: list[Any] = field(default_factory=list)
    next_attempt_at: datetime | None = None
