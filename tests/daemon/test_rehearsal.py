"""The rehearsal pool: code written for a pool runs unchanged, and nothing it writes is kept."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from daemon.db.rehearsal import rehearsal


async def test_writes_are_undone_and_a_refused_statement_undoes_only_itself(
    pool: asyncpg.Pool,
) -> None:
    """A failed statement does not abort the rest; at the end every write is rolled back."""
    await pool.execute("CREATE TABLE rehearsed (x int PRIMARY KEY)")
    async with rehearsal(pool) as db:
        await db.execute("INSERT INTO rehearsed VALUES (1)")
        with pytest.raises(asyncpg.UniqueViolationError):
            await db.execute("INSERT INTO rehearsed VALUES (1)")
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO rehearsed VALUES (2)")
            assert await db.fetchval("SELECT count(*) FROM rehearsed") == 2  # same task
        counts = await asyncio.gather(
            *(db.fetchval("SELECT count(*) FROM rehearsed") for _ in "abc")
        )
        assert counts == [2, 2, 2]
    assert await pool.fetchval("SELECT count(*) FROM rehearsed") == 0


async def test_an_error_in_the_block_still_rolls_back(pool: asyncpg.Pool) -> None:
    """Leaving the rehearsal by an exception keeps nothing either."""
    await pool.execute("CREATE TABLE rehearsed (x int)")
    with pytest.raises(RuntimeError):
        async with rehearsal(pool) as db:
            await db.execute("INSERT INTO rehearsed VALUES (1)")
            raise RuntimeError
    assert await pool.fetchval("SELECT count(*) FROM rehearsed") == 0
