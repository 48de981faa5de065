"""Which failures belong to one record and which to the whole run.

One bad record must never stop a profile: while collecting or exporting one record, an
error about that record's data fails (or skips) that record, with the reason on its ledger
row, and the run goes on. Only causes outside the record end the run with status error:

* FreeAgent 422 or another 4xx about the record: the record fails, FreeAgent's words on it;
* timeout, 429, 5xx: the record is retried with backoff, then fails;
* PostgreSQL refuses one of its values (``UNSTORABLE``): the record fails (export) or is
  stored as skipped (collect), with the reason;
* any other exception while handling the record: it fails with
  "internal error: <type>: <message>" and the traceback is logged;
* ConfigError, AuthError, LeaseLost, DatabaseError, a lost connection, a schema or permission
  error (``RUN_LEVEL``): the run ends with status error.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

from daemon.errors import ApiError, FaSyncError
from profiles.freeagent_contact_export.clean import Note, clean_record

#: What a value PostgreSQL (or asyncpg's encoder) refuses raises: a fault of one record, not
#: of the database. Connection loss, missing tables and permissions stay run-level.
UNSTORABLE: tuple[type[Exception], ...] = (
    asyncpg.DataError,  # SQLSTATE class 22: invalid text, untranslatable character, ...
    asyncpg_base.DataError,  # asyncpg's own "invalid input for query argument"
    asyncpg.IntegrityConstraintViolationError,  # class 23: a CHECK a value breaks
    asyncpg.ProgramLimitExceededError,  # class 54: a value too large or too deep
    UnicodeError,
)

#: Causes that are not about one record: the database connection or schema, configuration.
#: They end the run (status error); everything else fails only the record at hand.
RUN_LEVEL: tuple[type[Exception], ...] = (
    FaSyncError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)


def failure_json(exc: Exception, adjusted: list[Note] | None = None) -> dict[str, Any]:
    """The error as stored on the ledger row (``last_error``), cleaned so PostgreSQL takes it."""
    if isinstance(exc, ApiError):
        error = exc.as_json()
    else:
        kind = "database refused a value" if isinstance(exc, UNSTORABLE) else "internal error"
        error = {
            "service": "fa-sync",
            "status": None,
            "message": f"{kind}: {type(exc).__name__}: {str(exc)[:500]}",
            "body": None,
        }
    if adjusted:
        error["adjusted"] = adjusted
    cleaned, _ = clean_record(error)
    return dict(cleaned)
