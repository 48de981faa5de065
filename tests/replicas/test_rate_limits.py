"""Two daemons, two profiles, one FreeAgent user: one shared budget, and 429s cost no record.

One scenario per module. The simulator enforces a small per-user limit on a short window that
matches FA_SYNC_RATE_MINUTE_WINDOW, and both profiles export through the same client row, so
every request of both daemons draws on one budget. Phase one exports with fa-sync as the only
sender; phase two injects a storm of 429s and adds customers. Each test states one rule.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from daemon.db.pool import create_pool
from daemon.db.queries import QUERIES
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.replicas.checks import ExportCheck, check_export, settled
from tests.replicas.harness import (
    FAST,
    HOUR,
    MINUTE,
    Cluster,
    event_is,
    play_once,
)
from tests.secretkeys import sealing_box

#: Requests per MINUTE window, for the simulator and the client row alike.
PER_MINUTE = 24
#: 429s injected in phase two, each with Retry-After: 1.
STORM = 12


@dataclass(frozen=True)
class Phase:
    """One phase's outcome."""

    count_429: int  #: 429s the simulator sent during the phase
    busiest_window: int  #: most API requests one simulator window admitted
    final: ExportCheck
    failed_rows: int


@dataclass(frozen=True)
class Budgeted:
    quiet: Phase  #: fa-sync the only sender
    storm: Phase  #: after STORM injected 429s


async def _second_profile(pool: asyncpg.Pool, stack: Stack) -> None:
    """Another profile on the same FreeAgent client row (so the same user) and Magento."""
    await pool.fetchrow(
        QUERIES["profile_insert"],
        "second",
        "freeagent_contact_export",
        stack.client_id,
        stack.connection_id,
        "* * * * * *",
        {},
    )


def _busiest_window(freeagent: FreeAgentState, since: int) -> int:
    """API requests (token endpoint excluded) admitted per simulator window, at most."""
    per_window = Counter(
        math.floor(r.time / MINUTE)
        for r in freeagent.requests[since:]
        if r.user is not None and r.status != 429
    )
    return max(per_window.values(), default=0)


async def _phase(cluster: Cluster, pool: asyncpg.Pool, stack: Stack, since: int) -> Phase:
    before = stack.freeagent.count_429
    await cluster.settle(
        lambda: settled(pool, stack.magento), on=event_is("run_finished"), within=90
    )
    failed = await pool.fetchval("SELECT count(*) FROM contact_entity WHERE status = 'failed'")
    return Phase(
        stack.freeagent.count_429 - before,
        _busiest_window(stack.freeagent, since),
        await check_export(pool, stack.freeagent),
        failed,
    )


def _add_customers(magento: MagentoState, count: int) -> None:
    for n in range(count):
        magento.add_customer(
            email=f"storm.{n}@example.com", firstname="Storm", lastname=f"Customer{n}"
        )


async def _play(dsn: str, workdir: Path) -> Budgeted:
    pool = await create_pool(dsn, max_size=4)
    freeagent = FreeAgentState(per_minute=PER_MINUTE, minute_window=MINUTE, hour_window=HOUR)
    magento = MagentoState.seeded(customers=30, guest_orders=4)
    cluster = Cluster(dsn=dsn, workdir=workdir, settings=FAST)
    try:
        async with simulators(freeagent=freeagent, magento=magento) as s:
            stack = await register(
                pool, s, secrets=sealing_box(), schedule="* * * * * *", per_minute=PER_MINUTE
            )
            await _second_profile(pool, stack)
            await asyncio.gather(cluster.start_ready("a"), cluster.start_ready("b"))
            quiet = await _phase(cluster, pool, stack, since=0)
            since = len(freeagent.requests)
            freeagent.inject_429(STORM, retry_after=1)
            _add_customers(magento, 10)
            storm = await _phase(cluster, pool, stack, since=since)
            await cluster.stop_all()
        return Budgeted(quiet, storm)
    finally:
        await cluster.close()
        await pool.close()


@pytest.fixture(scope="module")
def budgeted(
    pg_server_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Budgeted:
    """The scenario, played once for the module's tests."""
    return play_once(pg_server_dsn, template_db, tmp_path_factory.mktemp("rate"), _play)


def test_shared_budget_keeps_two_daemons_and_two_profiles_under_the_limit(
    budgeted: Budgeted,
) -> None:
    """With fa-sync the only sender, FreeAgent never answers 429, though the budget was full."""
    assert budgeted.quiet.count_429 == 0
    # The daemons pressed against the limit: it was the budget, not idleness, that kept them in.
    assert budgeted.quiet.busiest_window >= PER_MINUTE * 3 // 4
    assert budgeted.quiet.final.problems == []


def test_every_record_succeeds_after_a_429_storm(budgeted: Budgeted) -> None:
    """A storm of 429s slows the export; no record fails and none is duplicated."""
    assert budgeted.storm.count_429 >= STORM
    assert budgeted.storm.failed_rows == 0
    assert budgeted.storm.final.problems == []
    assert budgeted.quiet.final.duplicates == {}
    assert budgeted.storm.final.duplicates == {}
