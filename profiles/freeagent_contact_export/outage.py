"""Telling an outage from a bad record: consecutive transient failures stop the run.

A record whose request still fails after the transport's retries (timeouts, 5xx) is normally
retried in a later run, counting one attempt. But when FreeAgent is down, every record fails
so, and burning each row's retry_max_attempts would dead-letter the whole queue. So the
failures are held back: a success in between writes them (one attempt each, as before); a
streak of `threshold` of them is an outage, which stops the run with those records untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from daemon.errors import ApiError, EndpointError, TransientApiError

Fail = Callable[..., Awaitable[None]]


class OutageDetector:
    """Holds transient record failures until a success, the end of a batch, or an outage."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold  #: settings.outage_after_failures; 0 or less: never
        self._held: list[tuple[Any, ApiError]] = []

    async def record_transient(
        self, row: Any, exc: TransientApiError, fail: Fail
    ) -> EndpointError | None:
        """Hold the failure; the EndpointError to stop the run with, if this is an outage."""
        if self.threshold <= 0:
            await fail(row, exc, permanent=False)
            return None
        self._held.append((row, exc))
        if len(self._held) < self.threshold:
            return None
        return EndpointError(
            f"FreeAgent outage: {len(self._held)} records in a row failed after every retry "
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
        held, self._held = self._held, []
        for row, exc in held:
            await fail(row, exc, permanent=False)
