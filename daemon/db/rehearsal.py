"""A rehearsal: the daemon's own code run against the database, then every write undone.

`rehearsal(pool)` holds one connection in a transaction that is always rolled back, and
yields a pool look-alike over it. Code written for a pool (pool.fetch, pool.execute,
`async with pool.acquire() as conn, conn.transaction()`) runs unchanged, so a dry run takes
the same decisions as the real run instead of a second, drifting copy of them.

Two rules of PostgreSQL shape it:

* One connection serves one statement at a time, and the code under rehearsal is concurrent
  (gather, a lease keeper): statements and acquires take turns under one asyncio lock. An
  acquired connection is used only by its holder (the identity lock's contract), so the
  holder never waits for the lock it holds.
* A failed statement aborts the whole transaction, and the code under rehearsal catches some
  of them (a value PostgreSQL refuses fails that record only). Every statement and every
  acquire therefore runs in its own savepoint, so a refused statement undoes itself alone.

While a rehearsal runs, its uncommitted rows are held like any other transaction's. So that
this holds back nothing but the rehearsed profile: a dry run holds its profile's rehearsal lock,
and the fires of that profile are skipped, saying so, until it ends (fa_rehearse_profile); the
identity locks of the people it decides are waited for and let go at once, not held to the end
(fa_identity_lock, told by fa_sync.rehearsal), or every other profile of the FreeAgent client
would wait at those people. Writes to the rehearsed profile's ledger from elsewhere (a Magento
event, an operator's `match link` or `queue retry`) are refused at once with ProfileRehearsed
(`unrehearsed`), never left waiting for the rehearsal's rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from daemon.db.queries import QUERIES
from daemon.errors import ProfileRehearsed


class _Rollback(Exception):
    """Raised to leave the rehearsal's transaction by rolling it back."""


class RehearsalPool:
    """The subset of asyncpg.Pool the daemon uses, over one connection in one transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._turn = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[asyncpg.Connection]:
        """Our turn on the connection, in a savepoint. Re-entrant for the task holding an
        acquired connection (a pooled query under a held connection would otherwise wait
        for itself: with a real pool it would take a second connection)."""
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            async with self._conn.transaction():
                yield self._conn
            return
        async with self._turn:
            self._holder = task
            try:
                async with self._conn.transaction():
                    yield self._conn
            finally:
                self._holder = None

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._savepoint() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self._savepoint() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self._savepoint() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self._savepoint() as conn:
            return str(await conn.execute(query, *args))

    async def executemany(self, query: str, args: Any) -> None:
        async with self._savepoint() as conn:
            await conn.executemany(query, args)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """The connection, for its holder alone until released (in a savepoint)."""
        async with self._savepoint() as conn:
            yield conn

    def get_max_size(self) -> int:
        return 1


@asynccontextmanager
async def rehearsal(pool: asyncpg.Pool) -> AsyncIterator[RehearsalPool]:
    """A pool look-alike whose every write is rolled back when the block ends."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                # Identity locks are waited for, not held (schema.sql fa_identity_lock).
                await conn.execute(QUERIES["rehearsal_begin"])
                yield RehearsalPool(conn)
                raise _Rollback
        except _Rollback:
            pass


@asynccontextmanager
async def unrehearsed(
    pool: asyncpg.Pool, profile_id: int, refused: str
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction for writes to a profile's ledger, or ProfileRehearsed(refused) at once
    while a dry run of the profile holds its rows: waiting for them would last as long as the
    dry run, minutes on a large shop, with nothing said. The check holds dry runs of the
    profile off until the writes are committed."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(QUERIES["profile_not_rehearsed"], profile_id):
            raise ProfileRehearsed(refused)
        yield conn
