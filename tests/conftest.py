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
from typing import Any

import asyncpg
import pytest

from daemon.db.embedded import start_embedded
from daemon.db.pool import create_pool, drop_database, migrate, recreate_database
from tests.secretkeys import TEST_SECRET_KEY

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
    pool = await create_pool(await recreate_database(server_dsn, name), max_size=1)
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
    asyncio.run(drop_database(pg_server_dsn, name))


@pytest.fixture
async def database_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """DSN of a fresh database cloned from the template, dropped after the test."""
    name = f"fa_sync_t_{uuid.uuid4().hex[:12]}"
    yield await recreate_database(pg_server_dsn, name, template=template_db)
    await drop_database(pg_server_dsn, name)


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on this test's own database."""
    p = await create_pool(database_dsn, max_size=8)
    yield p
    await p.close()


# -- the simulated stack --------------------------------------------------------------------

import aiohttp  # noqa: E402

from daemon.clients.transport import Transport  # noqa: E402
from daemon.context import RunOptions  # noqa: E402
from daemon.db.records import RunTrigger  # noqa: E402
from daemon.resources import ClientFactory  # noqa: E402
from daemon.runner import Runner, RunOutcome  # noqa: E402
from daemon.secretbox import SecretBox  # noqa: E402
from daemon.settings import Settings  # noqa: E402
from simulators.freeagent import FreeAgentState  # noqa: E402
from simulators.magento import MagentoState  # noqa: E402
from simulators.stack import Stack, register, simulators  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for tests: no .env, fast retries, logs under tmp_path."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "pg",
        request_log_dir=tmp_path / "logs",
        http_retry_attempts=6,
        http_retry_max_wait=0.05,
        record_retry_base_seconds=0.0,
        lease_seconds=10.0,
        replica_id="test-replica",
        secret_key=TEST_SECRET_KEY,
    )


@pytest.fixture
def secret_box(settings: Settings) -> SecretBox:
    """The box the tests' settings make: secrets written by fixtures are sealed with it."""
    return SecretBox.from_settings(settings)


@pytest.fixture
async def factory(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[ClientFactory]:
    """API clients over one aiohttp session, as the daemon builds them."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        transport = Transport(session=session, settings=settings)
        yield ClientFactory(
            pool=pool,
            settings=settings,
            transport=transport,
            secrets=SecretBox.from_settings(settings),
        )


@pytest.fixture
def freeagent_state() -> FreeAgentState:
    return FreeAgentState()


@pytest.fixture
def magento_state() -> MagentoState:
    return MagentoState.seeded(customers=30, guest_orders=8)


@pytest.fixture
async def stack(
    pool: asyncpg.Pool,
    freeagent_state: FreeAgentState,
    magento_state: MagentoState,
    secret_box: SecretBox,
) -> AsyncIterator[Stack]:
    """Both simulators on loopback and a profile `demo` pointing at them."""
    async with simulators(freeagent=freeagent_state, magento=magento_state) as s:
        yield await register(pool, s, secrets=secret_box)


@pytest.fixture
def run_profile(pool: asyncpg.Pool, settings: Settings, factory: ClientFactory):  # type: ignore[no-untyped-def]
    """Run a profile once (the CLI's run-once path) and return its outcome."""

    async def go(profile_id: int, clock: Any = None, **options: object) -> RunOutcome:
        extra = {"clock": clock} if clock is not None else {}
        runner = Runner(pool=pool, settings=settings, resources=factory, **extra)
        return await runner.fire(profile_id, trigger=RunTrigger.CLI, options=RunOptions(**options))  # type: ignore[arg-type]

    return go
