"""Telling an outage from a bad record: consecutive transient failures stop the run.

A record whose request still fails after the transport's retries (timeouts, 5xx) is normally
retried in a later run, counting one attempt. But when FreeAgent is down, every record fails
so, and burning each row's retry_max_attempts would dead-letter the whole queue. So the
failures are held back: a success in between writes them (one attempt each, as before); a
streak of `threshold` of them is an outage, which stops the run with those records untouched.
Creates answered with a 5xx count towards the streak too (their rows are already recorded as
settling by create.py and are not held); a create that timed out or lost its answer does not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from daemon.errors import ApiError, EndpointError, TransientApiError
from profiles.freeagent_contact_export.create import CreateSettling

Fail = Callable[..., Awaitable[None]]


class OutageDetector:
    """Holds transient record failures until a success, the end of a batch, or an outage."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold  #: settings.outage_after_failures; 0 or less: never
        self._held: list[tuple[Any, ApiError]] = []
        self._streak = 0  #: transient failures in a row, held or settling

    async def record_transient(
        self, row: Any, exc: TransientApiError, fail: Fail
    ) -> EndpointError | None:
        """Hold the failure; the EndpointError to stop the run with, if this is an outage."""
        settling = isinstance(exc, CreateSettling)  # its row is recorded already
        if self.threshold <= 0:
            if not settling:
                await fail(row, exc, permanent=False)
            return None
        if not settling:
            self._held.append((row, exc))
        elif exc.status is None:
            # A timeout or a dropped answer on a create: one slow or flaky exchange, not an
            # answer from a server that is down; the row settles, the streak is left alone.
            return None
        self._streak += 1
        if self._streak < self.threshold:
            return None
        return EndpointError(
            f"FreeAgent outage: {self._streak} records in a row failed after every retry "
            f"(last: {exc}); the run stops, the records are left for the next run",
            status=exc.status,
            body=exc.body,
            service=exc.service,
        )

    async def record_ok(self, fail: Fail) -> None:
        """A record went through: the held failures were about their records after all."""
        await self.flush(fail)

    async def flush(self, fail: Fail) -> None:
        """Write the held failures (one attempt each, retried in a later run)."""
        held, self._held, self._streak = self._held, [], 0
        for row, exc in held:
            await fail(row, exc, permanent=False)
