"""The connection budget: bounded runs, bounded acquires, no pool wedge (issue 7, item 5)."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.db.pool import create_pool
from daemon.errors import ConfigError, DatabaseError
from daemon.process import Daemon, open_services
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from simulators.freeagent_faults import Faults
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.secretkeys import TEST_SECRET_KEY

PROFILES = 8
CUSTOMERS = 8
DEADLINE = 90.0


def test_a_pool_smaller_than_the_budget_is_refused_at_start() -> None:
    """FA_SYNC_DB_POOL_SIZE below runs x (concurrency + 1) + reserve is a ConfigError."""
    settings = Settings(_env_file=None, max_concurrent_runs=3, export_concurrency=4)  # type: ignore[call-arg]
    assert settings.pool_size() == 3 * 5 + 4
    with pytest.raises(ConfigError, match="FA_SYNC_DB_POOL_SIZE=10 is too small"):
        settings.model_copy(update={"db_pool_size": 10}).pool_size()


async def test_a_starved_pool_fails_with_a_clear_error_instead_of_waiting(
    database_dsn: str,
) -> None:
    """Pool-level queries wait at most acquire_timeout, then DatabaseError names the pool."""
    pool = await create_pool(database_dsn, max_size=1, acquire_timeout=0.2)
    try:
        async with pool.acquire():
            with pytest.raises(DatabaseError, match=r"within 0.2 s \(pool size 1\)"):
                await pool.fetchval("SELECT 1")
    finally:
        await pool.close()


def _magento() -> MagentoState:
    state = MagentoState()
    for i in range(CUSTOMERS):
        state.add_customer(email=f"c{i}@example.com", firstname=f"Cust{i}", lastname="Budget")
    return state


async def _wait_outcomes(daemon: Daemon, count: int) -> None:
    async with daemon.runs_changed:
        await daemon.runs_changed.wait_for(lambda: len(daemon.outcomes) >= count)


async def test_eight_profiles_exporting_at_once_all_complete_without_a_wedge(
    database_dsn: str, tmp_path: Path
) -> None:
    """8 profiles x 4 concurrent slow creates on one daemon: all complete, each customer
    exported once, and stop drains cleanly (the old pool of 12 wedged here)."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_dsn,
        request_log_dir=tmp_path / "logs",
        export_concurrency=4,
        http_retry_max_wait=0.05,
        record_retry_base_seconds=0.0,
        replica_id="budget-replica",
        secret_key=TEST_SECRET_KEY,
        db_acquire_timeout=DEADLINE,
    )
    async with AsyncExitStack() as exits:
        stacks: list[Stack] = []
        for _ in range(PROFILES):
            slow = FreeAgentState(faults=Faults(write_latency=0.3))
            stacks.append(
                await exits.enter_async_context(simulators(freeagent=slow, magento=_magento()))
            )
        services = await exits.enter_async_context(open_services(settings, migrate_schema=False))
        for i, stack in enumerate(stacks):
            await register(
                services.pool,
                stack,
                secrets=services.factory.secrets,
                profile=f"shop{i}",
                schedule="0 3 1 1 *",
            )
        daemon = Daemon(services)
        stop = asyncio.Event()
        serving = asyncio.create_task(daemon.serve(stop))
        fired_at = datetime.now(UTC)
        for stack in stacks:
            await daemon.fire(stack.profile_id, fired_at)
        await asyncio.wait_for(_wait_outcomes(daemon, PROFILES), DEADLINE)
        stop.set()
        await asyncio.wait_for(serving, DEADLINE)
    assert [o.status for o in daemon.outcomes] == ["complete"] * PROFILES
    for stack in stacks:
        emails = Counter(c["email"] for c in stack.freeagent.contacts_list())
        assert emails == Counter(f"c{i}@example.com" for i in range(CUSTOMERS))
