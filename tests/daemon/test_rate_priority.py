"""The rate budget's priority lane: while a priority request waits, ordinary ones yield.

Called at explicit instants (fa_rate_acquire's p_now), so windows pass without waiting.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from daemon.clients.ratelimit import NO_HEADROOM, Headroom, RateBudget, priority_lane

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KEY = "user:https://api.freeagent.com/v2/users/1"


async def _ordinary(pool: asyncpg.Pool, seconds: float) -> float:
    return float(
        await pool.fetchval(
            "SELECT fa_rate_acquire($1, 2, 100, 60, 3600, $2)", KEY, T0 + timedelta(seconds=seconds)
        )
    )


async def _priority(pool: asyncpg.Pool, seconds: float) -> float:
    return float(
        await pool.fetchval(
            "SELECT fa_rate_acquire_priority($1, 2, 100, 60, 3600, $2)",
            KEY,
            T0 + timedelta(seconds=seconds),
        )
    )


async def test_a_waiting_priority_request_gets_the_next_free_slot(pool: asyncpg.Pool) -> None:
    """Budget full: the priority request waits; when a slot frees, an ordinary request that
    asks first is told to wait, and the priority request takes the slot."""
    assert await _ordinary(pool, 0) == 0
    assert await _ordinary(pool, 1) == 0
    wait = await _priority(pool, 2)
    assert wait == pytest.approx(58, abs=0.01)  # the grant at 0 leaves the window at 60
    assert await _ordinary(pool, 60.5) > 0  # free by the counts, but the priority one waits
    assert await _priority(pool, 60.6) == 0
    assert await _ordinary(pool, 60.7) > 0  # and now the window is full again


async def test_without_a_priority_waiter_ordinary_requests_are_not_held(
    pool: asyncpg.Pool,
) -> None:
    """The hold lapses: a priority waiter that went away holds nobody back for long."""
    await _ordinary(pool, 0)
    await _ordinary(pool, 1)
    wait = await _priority(pool, 2)
    assert wait > 0
    assert await _ordinary(pool, 2 + wait + 1.5) == 0  # past its turn and the margin
    assert await _ordinary(pool, 200) == 0  # and no hold is left afterwards


async def test_priority_lane_context_selects_the_priority_grant(pool: asyncpg.Pool) -> None:
    """Requests acquired inside priority_lane() hold ordinary senders back; outside, not."""
    budget = RateBudget(pool, KEY, 1, 100, 30.0, 3600.0, headroom=NO_HEADROOM)
    assert await budget.try_acquire() == 0
    assert await budget.try_acquire() > 0  # an ordinary waiter sets no hold
    held = await pool.fetchval("SELECT priority_until FROM rate_budget WHERE budget_key = $1", KEY)
    assert held is None
    with priority_lane():
        assert await budget.try_acquire() > 0
    held = await pool.fetchval("SELECT priority_until FROM rate_budget WHERE budget_key = $1", KEY)
    assert held is not None


async def test_a_lane_take_passes_an_ordinary_caller_sleeping_in_this_process(
    pool: asyncpg.Pool,
) -> None:
    """take() in the lane neither queues behind an ordinary caller of the same process that
    sleeps out a wait (holding the batching lock), nor stops at the backlog's limit: it
    spends the lane's allowance of the headroom, one request."""
    parked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        assert seconds > 0
        parked.set()
        await asyncio.Event().wait()  # the ordinary caller stays asleep

    room = Headroom(0.0, 1, 0, 1, 0, 0)  # backlog 1/min, lane 2/min
    budget = RateBudget(pool, KEY, 2, 100, 60.0, 3600.0, headroom=room, sleep=sleep)
    (await budget.take()).answered(True)
    ordinary = asyncio.create_task(budget.take())
    await parked.wait()
    try:
        with priority_lane():
            (await asyncio.wait_for(budget.take(), 10)).answered(True)
        assert not ordinary.done()
        counted = await pool.fetch(
            "SELECT n FROM rate_event WHERE budget_key = $1 ORDER BY id", KEY
        )
        assert [r["n"] for r in counted] == [1, 1]
    finally:
        ordinary.cancel()


@pytest.mark.parametrize(
    ("headroom", "expected"),
    [
        # Defaults: one of the two spare requests a minute, ten of the twenty an hour.
        # The backlog leaves 60 of the hour to the lane.
        (Headroom(5.0, 2, 20, 1, 10, 60), ((118, 3520), (119, 3590))),
        # No headroom to spend: the lane gets the configured limit, never more.
        (Headroom(5.0, 0, 0, 1, 10, 0), ((120, 3600), (120, 3600))),
        (Headroom(5.0, 2, 20, 0, 0, 0), ((118, 3580), (118, 3580))),
    ],
)
def test_priority_limits_spend_headroom_but_never_pass_the_limit(
    headroom: Headroom, expected: tuple[tuple[int, int], tuple[int, int]]
) -> None:
    """The lane may go above the backlog's limits by its allowance and reserve, never above
    FreeAgent's."""
    budget = RateBudget(None, KEY, 120, 3600, headroom=headroom)  # type: ignore[arg-type]
    assert (budget.backlog_limits, budget.priority_limits) == expected
