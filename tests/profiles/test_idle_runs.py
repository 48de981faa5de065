"""What a run costs when little changed: no FreeAgent request when nothing is due, rarely
changing reads kept across runs, and the stages waiting for the daemon's run slots."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from daemon.context import RunOptions, RunSlots
from daemon.db.queries import QUERIES
from daemon.db.records import RunTrigger
from daemon.resources import ClientFactory
from daemon.runner import Runner
from daemon.settings import Settings
from simulators.stack import Stack

DEADLINE = 30.0


def _freeagent(stack: Stack) -> Counter[str]:
    return Counter(f"{r.method} {r.path}" for r in stack.freeagent.requests)


def _magento(stack: Stack) -> Counter[str]:
    return Counter(r.path.rsplit("/V1/", 1)[-1] for r in stack.magento.requests)


def _touch(stack: Stack) -> None:
    customer_id = min(stack.magento.customers)
    name = stack.magento.customers[customer_id].get("lastname") or "X"
    stack.magento.update_customer(customer_id, lastname=f"{name}x")


async def test_a_run_with_nothing_due_sends_freeagent_nothing(stack: Stack, run_profile) -> None:
    """Once exported, a run finding no change asks FreeAgent nothing (not even users/me)."""
    first = await run_profile(stack.profile_id)
    assert first.counts.created > 0
    before = sum(_freeagent(stack).values())
    idle = await run_profile(stack.profile_id)
    assert idle.status == "complete"
    assert sum(_freeagent(stack).values()) == before


async def test_a_change_is_still_exported_after_idle_runs(stack: Stack, run_profile) -> None:
    """A customer saved after an idle run is due again and reaches FreeAgent."""
    await run_profile(stack.profile_id)
    await run_profile(stack.profile_id)
    _touch(stack)
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.updated == 1


async def test_users_me_and_store_lists_are_read_once_across_runs(
    stack: Stack, run_profile
) -> None:
    """users/me, storeViews and storeConfigs: one read for three runs that each export."""
    for _ in range(3):
        _touch(stack)
        assert (await run_profile(stack.profile_id)).status == "complete"
    assert _freeagent(stack)["GET /v2/users/me"] == 1
    magento = _magento(stack)
    assert (magento["store/storeViews"], magento["store/storeConfigs"]) == (1, 1)


async def test_a_reauthorised_client_reads_users_me_again(
    pool: asyncpg.Pool, stack: Stack, run_profile, secret_box: Any
) -> None:
    """New tokens (a new token_version) may act for another user: users/me is read again."""
    _touch(stack)
    await run_profile(stack.profile_id)
    access, refresh = stack.freeagent.issue_tokens("demo-client")
    await pool.execute(
        QUERIES["client_save_tokens"], stack.client_id, secret_box.seal(access),
        datetime.now(UTC) + timedelta(hours=1), secret_box.seal(refresh), None,
    )  # fmt: skip
    _touch(stack)
    await run_profile(stack.profile_id)
    assert _freeagent(stack)["GET /v2/users/me"] == 2


async def test_no_cache_age_reads_them_in_every_run(
    pool: asyncpg.Pool, stack: Stack, settings: Settings, factory: ClientFactory
) -> None:
    """FA_SYNC_CONFIG_CACHE_SECONDS=0: every exporting run reads users/me and store configs."""
    uncached = settings.model_copy(update={"config_cache_seconds": 0})
    fresh = ClientFactory(pool=pool, settings=uncached, transport=factory.transport,
                          secrets=factory.secrets)  # fmt: skip
    runner = Runner(pool=pool, settings=uncached, resources=fresh)
    for _ in range(2):
        _touch(stack)
        await runner.fire(stack.profile_id, trigger=RunTrigger.CLI, options=RunOptions())
    assert _freeagent(stack)["GET /v2/users/me"] == 2
    assert _magento(stack)["store/storeConfigs"] == 2


class _Gate:
    """An export slot held shut until opened; says when a run waits at it."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.open = asyncio.Event()

    async def __aenter__(self) -> None:
        self.waiting.set()
        await self.open.wait()

    async def __aexit__(self, *_: object) -> None:
        return None


async def test_a_run_is_claimed_and_collected_before_it_waits_for_an_export_slot(
    pool: asyncpg.Pool, stack: Stack, settings: Settings, factory: ClientFactory
) -> None:
    """With every export slot taken a due fire still starts (claimed, Magento read) and sends
    FreeAgent nothing until a slot frees; then it exports."""
    gate = _Gate()
    runner = Runner(pool=pool, settings=settings, resources=factory,
                    slots=RunSlots(export=gate))  # fmt: skip
    fire = asyncio.create_task(runner.fire(stack.profile_id, trigger=RunTrigger.SCHEDULE))
    await asyncio.wait_for(gate.waiting.wait(), DEADLINE)
    run = await pool.fetchrow(QUERIES["run_active"], stack.profile_id)
    assert run is not None and run["owner"] == settings.replica_id
    assert _magento(stack)["customers/search"] >= 1
    assert sum(_freeagent(stack).values()) == 0
    gate.open.set()
    outcome = await asyncio.wait_for(fire, DEADLINE)
    assert outcome.counts.created > 0


async def test_a_run_with_nothing_due_takes_no_export_slot(
    pool: asyncpg.Pool, stack: Stack, settings: Settings, factory: ClientFactory, run_profile
) -> None:
    """An idle fire completes while every export slot is taken."""
    await run_profile(stack.profile_id)
    gate = _Gate()
    runner = Runner(pool=pool, settings=settings, resources=factory,
                    slots=RunSlots(export=gate))  # fmt: skip
    outcome = await asyncio.wait_for(
        runner.fire(stack.profile_id, trigger=RunTrigger.SCHEDULE), DEADLINE
    )
    assert outcome.status == "complete" and not gate.waiting.is_set()
