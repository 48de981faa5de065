"""Replicas claiming overlapping fires in one statement each never deadlock.

Two replicas batch the same due fires in different orders. Each statement inserts its runs one
by one and waits on a conflicting row another transaction has not committed yet; inserted in
the callers' orders, A would wait on B's row while B waits on A's, and PostgreSQL would fail
both statements (every fire in them) with a deadlock.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from daemon.db.queries import QUERIES

FIRE = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


async def _profiles(pool: asyncpg.Pool, n: int) -> list[int]:
    return [
        int(
            await pool.fetchval(
                "INSERT INTO profile (name, type) VALUES ($1, 'freeagent_contact_export')"
                " RETURNING id",
                f"shop-{i}",
            )
        )
        for i in range(n)
    ]


async def _claim(conn: asyncpg.Connection, profiles: list[int], owner: str) -> list[int]:
    rows = await conn.fetch(
        QUERIES["run_claim_many"], profiles, ["schedule"] * len(profiles),
        [FIRE] * len(profiles), owner, 30.0,
    )  # fmt: skip
    return [row["profile_id"] for row in rows]


async def _blocked(pool: asyncpg.Pool, n: int) -> None:
    """Until n backends wait for a lock: PostgreSQL's own state, which nothing announces, so
    it is polled (bounded by the caller's wait_for)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    while await pool.fetchval(query) < n:  # noqa: ASYNC110 (nothing to await instead)
        await asyncio.sleep(0.01)


async def test_overlapping_batched_claims_in_opposite_orders_do_not_deadlock(
    pool: asyncpg.Pool,
) -> None:
    first, middle, last = await _profiles(pool, 3)
    async with pool.acquire() as holder, pool.acquire() as a, pool.acquire() as b:
        hold = holder.transaction()
        await hold.start()
        await _claim(holder, [first], "holder")  # uncommitted: both replicas will wait on it
        await a.execute("SET deadlock_timeout = '100ms'")
        await b.execute("SET deadlock_timeout = '100ms'")
        claims = [
            asyncio.create_task(_claim(a, [last, first, middle], "a")),
            asyncio.create_task(_claim(b, [middle, first, last], "b")),
        ]
        await asyncio.wait_for(_blocked(pool, 2), 10)
        await hold.rollback()
        got = await asyncio.wait_for(asyncio.gather(*claims, return_exceptions=True), 10)
    assert not [g for g in got if isinstance(g, BaseException)], got
    claimed = sorted(p for g in got if isinstance(g, list) for p in g)
    assert claimed == [first, middle, last]  # each fire claimed once, by one replica
