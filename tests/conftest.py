"""Shared fixtures: a real PostgreSQL database per test, cloned from a migrated template.

FA_SYNC_TEST_DSN points at a server to use (e.g. postgresql://postgres@127.0.0.1:5432/postgres);
unset, an embedded server (pgserver) is started in .fa-sync/test-pgdata.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from daemon.db.embedded import start_embedded
from daemon.db.pool import create_pool, dsn_with_database, migrate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """DSN of the maintenance database of the server the tests use."""
    dsn = os.environ.get("FA_SYNC_TEST_DSN")
    if dsn:
        yield dsn
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    dsn, server = start_embedded(ROOT / ".fa-sync" / f"test-pgdata-{worker}")
    yield dsn
    server.cleanup()


async def _build_template(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    pool = await create_pool(dsn_with_database(server_dsn, name), max_size=1)
    try:
        await migrate(pool)
    finally:
        await pool.close()


@pytest.fixture(scope="session")
def template_db(pg_server_dsn: str) -> Iterator[str]:
    """A database with schema.sql applied once per session; each test clones it."""
    name = f"fa_sync_tpl_{os.getpid()}"
    asyncio.run(_build_template(pg_server_dsn, name))
    yield name
    asyncio.run(_drop(pg_server_dsn, name))


async def _drop(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """DSN of a fresh database cloned from the template, dropped after the test."""
    name = f"fa_sync_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await conn.close()
    yield dsn_with_database(pg_server_dsn, name)
    await _drop(pg_server_dsn, name)


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on this test's own database."""
    p = await create_pool(database_dsn, max_size=8)
    yield p
    await p.close()
