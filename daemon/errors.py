"""The fa-sync exception hierarchy.

    FaSyncError
    ├── ConfigError            a profile, client or setting is unusable as written
    │   └── ScheduleError      a schedule has no fire where one was needed (never a hang)
    ├── DatabaseError          PostgreSQL refused or dropped us
    ├── LeaseLost              another replica took over a run; stop writing at once
    └── ApiError               a remote API answered with an error (status, body)
        ├── TransientApiError  timeouts, dropped connections, 429, 5xx: retried with backoff
        │   ├── RateLimited    429; carries Retry-After
        │   └── OutcomeUnknown a create FreeAgent may have acted on: settle, then look it up
        ├── AuthError          401 after a refresh, revoked grant: needs re-authorisation
        ├── EndpointError      about the account or the endpoint, not one record (403, a 404
        │                      on a collection, HTML for JSON, an outage): stops the run
        └── RejectedRecord     4xx about one record (422 validation...): stored on the ledger row

Which cause leads to which error, and what a run then does, is the table in daemon/failures.py.

Messages say which object and what was expected: "profile 7: cron has 4 fields, expected 5".
"""

from __future__ import annotations

from typing import Any


class FaSyncError(Exception):
    """Base class of every error fa-sync raises on purpose."""


class ConfigError(FaSyncError):
    """A profile, client, connection or setting cannot be used as written."""


class ScheduleError(ConfigError):
    """Schedule maths found no fire within its bound: the schedule cannot be used as written."""


class DatabaseError(FaSyncError):
    """PostgreSQL refused a statement or the connection was lost."""


class ProfileRehearsed(FaSyncError):
    """A dry run of the profile holds its ledger rows until it ends: try again after it."""


class LeaseLost(FaSyncError):
    """This replica no longer owns the run: another one took it over after the lease expired."""


class ApiError(FaSyncError):
    """A remote API answered with an error status."""

    def __init__(
        self, message: str, *, status: int | None = None, body: Any = None, service: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.service = service

    def as_json(self) -> dict[str, Any]:
        """The error as stored on a ledger row: the remote API's own words, never our secrets."""
        return {
            "service": self.service,
            "status": self.status,
            "message": str(self),
            "body": self.body,
        }


class TransientApiError(ApiError):
    """Worth retrying later: timeouts, connection errors, 5xx and 429.

    retry_after: seconds the server asked us to wait (a 503 from a proxy in maintenance
    sends Retry-After too), or None when it named no time.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimited(TransientApiError):
    """HTTP 429; retry_after is the server's Retry-After in seconds."""

    retry_after: float

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, status=429, retry_after=retry_after, **kwargs)


class OutcomeUnknown(TransientApiError):
    """A request that must not be repeated (a POST without idempotency key) may have been acted
    on: a timeout, a dropped connection, a 5xx/504. Never re-send it before it has settled."""


class AuthError(ApiError):
    """Credentials are missing, revoked or refused even after a refresh."""


class EndpointError(ApiError):
    """The account or the endpoint refuses everything: a subscription or permission 403, a
    wrong base URL (404 on a collection), HTML instead of JSON, an outage. Stops the run with
    the records untouched; the profile's breaker delays the next runs."""


class RejectedRecord(ApiError):
    """The API refused this one record (validation); retrying the same payload will not help."""
