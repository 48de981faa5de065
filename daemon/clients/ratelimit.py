"""The FreeAgent request budget, shared through PostgreSQL by every replica and profile.

FreeAgent counts requests per authorising user (120/min, 3600/h). Several profiles, and
several daemon replicas, may act for one user; a per-process limiter would let each of
them spend the whole budget. So the count lives in the database (`fa_rate_acquire`, a
sliding log under a row lock) and a 429 blocks the key for everyone (`rate_block`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from daemon.db.pool import translated
from daemon.db.queries import QUERIES

Sleep = Callable[[float], Awaitable[None]]


class RateBudget:
    """One user's request budget: `acquire()` before each request, `block()` after a 429."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        key: str,
        per_minute: int,
        per_hour: int,
        minute_window: float = 60.0,
        hour_window: float = 3600.0,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.pool = pool
        self.key = key  #: FreeAgentClientRow.budget_key: one budget per authorising user
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.minute_window = minute_window  #: 60 s in production; tests shorten it
        self.hour_window = hour_window
        self._sleep = sleep

    async def try_acquire(self) -> float:
        """Take one request if the budget allows: 0.0 when granted, else seconds to wait."""
        async with translated(f"rate budget {self.key}"):
            wait = await self.pool.fetchval(
                QUERIES["rate_acquire"],
                self.key,
                self.per_minute,
                self.per_hour,
                float(self.minute_window),
                float(self.hour_window),
            )
        return float(wait or 0.0)

    async def acquire(self) -> None:
        """Wait until the shared budget grants one request (this sleep is the throttle)."""
        while (wait := await self.try_acquire()) > 0:
            await self._sleep(wait)

    async def block(self, seconds: float) -> None:
        """FreeAgent answered 429: pause every sender of this user for Retry-After seconds."""
        async with translated(f"rate budget {self.key}"):
            await self.pool.execute(QUERIES["rate_block"], self.key, float(max(0.0, seconds)))
