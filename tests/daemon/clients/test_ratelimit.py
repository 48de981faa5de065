"""RateBudget: one request budget per FreeAgent user, shared through PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from daemon.clients.ratelimit import RateBudget


class Paused(Exception):
    """Raised by the fake sleep: acquire() wanted to wait."""


async def test_two_budgets_on_one_key_share_the_limit(pool: asyncpg.Pool) -> None:
    """Two replicas' budgets for one user grant no more than the per-minute limit together."""
    first, second = (RateBudget(pool, "user:1", 4, 100, 60.0, 3600.0) for _ in range(2))
    grants = [await budget.try_acquire() == 0 for _ in range(5) for budget in (first, second)]
    assert grants.count(True) == 4


async def test_hour_limit_applies_too(pool: asyncpg.Pool) -> None:
    """The hour budget caps requests even when the minute budget has room."""
    budget = RateBudget(pool, "user:1", 100, 3, 60.0, 3600.0)
    waits = [await budget.try_acquire() for _ in range(5)]
    assert waits[:3] == [0, 0, 0]
    assert all(w > 0 for w in waits[3:])


async def test_other_users_have_their_own_budget(pool: asyncpg.Pool) -> None:
    """Budgets of different users never take from each other."""
    one = RateBudget(pool, "user:1", 1, 100, 60.0, 3600.0)
    two = RateBudget(pool, "user:2", 1, 100, 60.0, 3600.0)
    assert await one.try_acquire() == 0
    assert await two.try_acquire() == 0
    assert await one.try_acquire() > 0


async def test_acquire_waits_for_the_window_and_never_exceeds_it(pool: asyncpg.Pool) -> None:
    """Concurrent acquires on a 2-per-0.3 s budget all succeed, never 3 in one window."""
    window = 0.3
    budgets = [RateBudget(pool, "user:1", 2, 100, window, 3600.0) for _ in range(2)]
    calls = [budget.acquire() for budget in budgets for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*calls), timeout=10)
    times = [
        r["at"]
        for r in await pool.fetch(
            "SELECT at FROM rate_event WHERE budget_key = 'user:1' ORDER BY at"
        )
    ]
    assert len(times) == 6
    assert all(
        later - earlier >= timedelta(seconds=window)
        for earlier, later in zip(times, times[2:], strict=False)
    )


async def test_block_pauses_acquire(pool: asyncpg.Pool) -> None:
    """After block(30) an acquire waits about 30 s instead of sending."""
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        raise Paused

    budget = RateBudget(pool, "user:1", 100, 1000, 60.0, 3600.0, sleep=fake_sleep)
    await budget.block(30)
    with pytest.raises(Paused):
        await budget.acquire()
    assert 29 < waits[0] <= 30
    assert await RateBudget(pool, "user:2", 100, 1000).try_acquire() == 0


async def _largest_grants(pool: asyncpg.Pool, budget: RateBudget, takes: int) -> tuple[int, int]:
    """Eight callers take `takes` requests in all: (largest grant, grant calls)."""

    async def caller() -> None:
        for _ in range(takes // 8):
            (await budget.take()).answered(True)

    await asyncio.gather(*(caller() for _ in range(8)))
    row = await pool.fetchrow(
        "SELECT max(n) AS largest, count(*) AS calls FROM rate_event WHERE budget_key = $1",
        budget.key,
    )
    return int(row["largest"]), int(row["calls"])


async def test_grants_come_64_a_call_only_where_the_limit_is_far_off(pool: asyncpg.Pool) -> None:
    """A limit far above what is sent (120 per 10 ms: limits off) grants up to 64 a call, so a
    busy export pays few calls; at FreeAgent's 120 a minute a grant stays at 16 or fewer (the
    stock must not hold what an event's request needs)."""
    far = RateBudget(pool, "user:far", 120, 3600, 0.01, 0.3)
    largest, calls = await _largest_grants(pool, far, 640)
    assert largest == 64 and calls <= 20
    near = RateBudget(pool, "user:near", 120, 3600, 60.0, 3600.0)
    largest, _ = await _largest_grants(pool, near, 96)
    assert largest <= 16
