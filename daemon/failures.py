"""The failure classification table: for each cause, what fa-sync does about it.

Three answers. *Retry in the request*: the transport tries again (after Retry-After or a
jittered backoff) before anyone sees the error. *Fail the record*: the error is about one
record; it goes on that ledger row (a transient one is retried in a later run, up to the
profile's retry_max_attempts) and the run goes on. *Stop the run*: the error is about the
account, the credentials or the endpoint, so every record would fail the same way; the run
ends `error` with the reason, its records are handed back untouched (no attempt counted), and
the profile's breaker delays its next scheduled runs.

`status_error` (daemon/clients/transport.py) maps a status to an exception class through
STATUS_ERRORS; FreeAgentClient narrows 403, 404 and 410 by what was asked
(`freeagent_run_level`);
the exporter's `_guarded` acts on the class. README's table is CAUSES, as rendered by
`table_rows()`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from daemon.errors import (
    ApiError,
    AuthError,
    EndpointError,
    RateLimited,
    RejectedRecord,
    TransientApiError,
)


class Action(enum.StrEnum):
    RETRY = "retry in the request"
    FAIL_RECORD = "fail the record"
    RETRY_RECORD = "retry the record in a later run"
    STOP_RUN = "stop the run"


@dataclass(frozen=True)
class Cause:
    """One row of the table."""

    cause: str  #: what happened
    error: type[ApiError]  #: the class raised for it
    action: Action  #: what the run does
    then: str = ""  #: what follows, if anything


CAUSES: tuple[Cause, ...] = (
    Cause("429 Too Many Requests", RateLimited, Action.RETRY,
          "after Retry-After; the user's budget is blocked for every sender"),
    Cause("timeout, dropped connection, 5xx", TransientApiError, Action.RETRY,
          "backoff; still failing: the record is retried in a later run"),
    Cause("the same, for several records in a row (an outage)", EndpointError, Action.STOP_RUN,
          "settings outage_after_failures; those records keep their attempts"),
    Cause("a POST whose answer was lost", TransientApiError, Action.RETRY_RECORD,
          "never re-sent blindly: looked up first"),
    Cause("401 (after one token refresh)", AuthError, Action.STOP_RUN, "re-authorise"),
    Cause("token endpoint refuses the grant", AuthError, Action.STOP_RUN, "re-authorise"),
    Cause("403 on DELETE of one contact", RejectedRecord, Action.FAIL_RECORD,
          "the contact has history: hidden instead"),
    Cause("403 on anything else (permission, subscription)", EndpointError, Action.STOP_RUN),
    Cause("404 or 410 on one contact", RejectedRecord, Action.FAIL_RECORD,
          "contact gone: dropped from the index; GET: none; PUT: recreated (not under "
          "api_behaviour update); DELETE: counts as deleted"),
    Cause("404 or 410 on a collection, users/me, company (wrong base URL)", EndpointError,
          Action.STOP_RUN),
    Cause("HTML, XML or text answering a read (GET) despite Accept JSON", TransientApiError,
          Action.RETRY, "backoff, then as a 5xx that goes on failing"),
    Cause("HTML or text where JSON was expected, answering a write", EndpointError,
          Action.STOP_RUN, "the write may have acted: never sent again blindly"),
    Cause("400, 409, 422 (validation, conflict)", RejectedRecord, Action.FAIL_RECORD,
          "the API's words on the ledger row"),
    Cause("other 4xx", ApiError, Action.FAIL_RECORD),
)  # fmt: skip

#: HTTP status -> the error the transport raises before the client narrows it by scope.
STATUS_ERRORS: MappingProxyType[int, type[ApiError]] = MappingProxyType(
    {
        400: RejectedRecord,
        401: AuthError,
        403: RejectedRecord,  # FreeAgentClient: EndpointError unless a DELETE of one contact
        404: RejectedRecord,  # FreeAgentClient: EndpointError unless about one contact
        409: RejectedRecord,
        410: RejectedRecord,  # as 404: a deleted record (or, on a collection, the endpoint)
        422: RejectedRecord,
        429: RateLimited,
    }
)


#: Statuses meaning the record asked for no longer exists. FreeAgent documents 404 for an
#: unknown id; 410 Gone is how many APIs answer for a deleted one, so both mean deleted.
GONE = frozenset({404, 410})


def error_class(status: int) -> type[ApiError] | None:
    """The error class for a failed status (None below 400)."""
    if status < 400:
        return None
    if status >= 500:
        return TransientApiError
    return STATUS_ERRORS.get(status, ApiError)


def freeagent_run_level(status: int | None, method: str, one_record: bool) -> bool:
    """Is this FreeAgent 403/404/410 about the account or endpoint rather than one record?

    one_record: the URL names one contact (…/contacts/<id>).
    """
    if status == 403:
        return not (one_record and method == "DELETE")
    if status in GONE:
        return not one_record
    return False


def table_rows() -> list[tuple[str, str, str]]:
    """(cause, what fa-sync does, then) for the README."""
    return [(c.cause, str(c.action), c.then) for c in CAUSES]
