"""Connecting to PostgreSQL: the pool, migrations, and translation of asyncpg errors.

asyncpg's exceptions stop here: callers see DatabaseError/ConfigError with readable messages.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from daemon.db.queries import QUERIES, schema_sql
from daemon.errors import ConfigError, DatabaseError

#: Advisory lock key held while applying schema.sql, so replicas starting together migrate once.
MIGRATE_LOCK = 0x6661_7379_6E63  # "fasync"


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSONB in and out as Python objects; every query can pass dicts and lists directly.
    for typ in ("jsonb", "json"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Nothing beyond asyncpg's own release step (which rolls back an open transaction).

    asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release: one round trip per pool-level query, four per exported contact. fa-sync
    leaves no session state on pooled connections (advisory locks and settings are
    transaction-scoped, LISTEN has its own connection, no cursor outlives its transaction),
    so there is nothing to undo.
    """
    del conn


#: Prepared statements kept per pooled connection (asyncpg's own default).
DEFAULT_STATEMENT_CACHE = 100

#: Longest wait for a pooled connection when the caller does not say (seconds).
DEFAULT_ACQUIRE_TIMEOUT = 30.0


class BudgetedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no stubs
    """An asyncpg pool whose every acquire is bounded, including the implicit one inside
    `pool.fetchval()` and friends: a starved pool fails loudly instead of wedging the process.

    asyncpg routes `acquire()`, `async with pool.acquire()` and every pool-level query through
    `_acquire(timeout)`, so that one method is where the default timeout goes.
    """

    acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg API)
        limit = self.acquire_timeout if timeout is None else timeout
        try:
            return await super()._acquire(limit)
        except TimeoutError as exc:
            raise DatabaseError(
                f"no database connection free within {limit:g} s "
                f"(pool size {self.get_max_size()}); see FA_SYNC_DB_POOL_SIZE"
            ) from exc


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT,
    statement_cache: int = DEFAULT_STATEMENT_CACHE,
) -> asyncpg.Pool:
    """A pool whose connections speak JSON and whose acquires time out.

    `statement_cache`: prepared statements kept per connection (FA_SYNC_DB_STATEMENT_CACHE).
    With 0 every parameterised statement costs two round trips (prepare, execute) but works
    behind any PgBouncer in transaction mode, where a prepared statement does not survive a
    server-connection switch unless PgBouncer (1.21+, max_prepared_statements) tracks it."""
    pool = BudgetedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        reset=_reset_connection,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        statement_cache_size=statement_cache,
        command_timeout=60,
    )
    pool.acquire_timeout = acquire_timeout
    try:
        await pool
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
    return pool


async def migrate(pool: asyncpg.Pool) -> None:
    """Apply schema.sql (idempotent) under an advisory lock, unless this very file was applied
    already. Every daemon migrates at start, often beside running replicas: re-running the DDL
    would take table locks (DROP TRIGGER, CREATE INDEX) that deadlock with their ledger writes."""
    sql = schema_sql()
    digest = hashlib.sha256(sql.encode()).hexdigest()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["advisory_xact_lock"], MIGRATE_LOCK)
        if await conn.fetchval(QUERIES["schema_recorded"]) and (
            await conn.fetchval(QUERIES["schema_digest"]) == digest
        ):
            return
        await conn.execute(sql)
        await conn.execute(QUERIES["schema_digest_set"], digest)


def translate(exc: asyncpg.PostgresError, *, what: str) -> Exception:
    """Turn a constraint violation into a sentence a person can act on."""
    if isinstance(exc, asyncpg.CheckViolationError):
        name = getattr(exc, "constraint_name", None)
        return ConfigError(f"{what}: {name}" if name and " " in name else f"{what}: {exc.message}")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConfigError(f"{what}: already exists ({exc.detail or exc.message})")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ConfigError(f"{what}: still referenced or refers to a missing row ({exc.detail})")
    if isinstance(exc, asyncpg.NotNullViolationError | asyncpg.InvalidTextRepresentationError):
        return ConfigError(f"{what}: {exc.message}")
    if isinstance(exc, asyncpg.RaiseError):
        return ConfigError(exc.message)
    return DatabaseError(f"{what}: {exc.message if hasattr(exc, 'message') else exc}")


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Run a block, translating PostgreSQL errors into fa-sync errors."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise translate(exc, what=what) from exc


def row_dict(row: Any) -> dict[str, Any]:
    """A record as a plain dict (for JSON output)."""
    return dict(row) if row is not None else {}


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database (keeps ?host= for unix sockets)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _quoted(name: str) -> str:
    # DDL cannot take a database name as a parameter; accept plain identifiers only.
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"database name {name!r}: expected letters, digits and underscores")
    return f'"{name}"'


async def recreate_database(server_dsn: str, name: str, *, template: str | None = None) -> str:
    """Drop (if present) and create a scratch database; return its DSN.

    For the demo, the benchmarks and the tests: never pointed at a user's data.
    """
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
        clone = f" TEMPLATE {_quoted(template)}" if template else ""
        await conn.execute(f"CREATE DATABASE {_quoted(name)}{clone}")
    finally:
        await conn.close()
    return dsn_with_database(server_dsn, name)


async def drop_database(server_dsn: str, name: str) -> None:
    """Drop a scratch database, disconnecting whoever still uses it."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
    finally:
        await conn.close()
