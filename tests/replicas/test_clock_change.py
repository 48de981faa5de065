"""A real `fa-sync run` whose clock is set to the autumn change keeps firing through it.

The daemon's clock starts at FA_SYNC_CLOCK_START (a few seconds before Europe/London's
clocks go back on 2026-10-25 at 01:00 UTC) and runs at real speed; the profile fires every
two seconds in Europe/London, so the run crosses into the repeated hour within the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from daemon.scheduler import next_fire_time, parse_cron
from simulators.magento import MagentoState
from simulators.stack import register, simulators
from tests.replicas.harness import Cluster, event_is, fast_freeagent
from tests.secretkeys import sealing_box

SCHEDULE = "*/2 * * * * *"
ZONE = "Europe/London"
#: Europe/London leaves summer time: 02:00 BST becomes 01:00 GMT.
CHANGE = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
START = datetime(2026, 10, 25, 0, 59, 50, tzinfo=UTC)
#: Fires wanted after the change (in the second pass of the repeated hour).
AFTER_CHANGE = 4


async def _scheduled(pool: asyncpg.Pool, profile_id: int) -> list[datetime]:
    rows = await pool.fetch(
        "SELECT scheduled_for FROM profile_run WHERE profile_id = $1 AND trigger = 'schedule'"
        " ORDER BY id",
        profile_id,
    )
    return [r["scheduled_for"] for r in rows]


@pytest.mark.slow
async def test_daemon_keeps_firing_through_the_repeated_hour(
    pool: asyncpg.Pool, cluster_factory: Callable[..., Cluster]
) -> None:
    """Fires before and after 01:00 UTC each leave a row at a cron fire time, strictly
    increasing; SIGTERM then stops the daemon with exit code 0."""
    async with simulators(
        freeagent=fast_freeagent(), magento=MagentoState.seeded(customers=3, guest_orders=0)
    ) as s:
        stack = await register(pool, s, secrets=sealing_box(), schedule=SCHEDULE)
        await pool.execute("UPDATE profile SET timezone = $1 WHERE id = $2", ZONE, stack.profile_id)
        cluster = cluster_factory(clock_start=START.isoformat())
        await cluster.start_ready("a")

        async def crossed() -> bool:
            fires = await _scheduled(pool, stack.profile_id)
            return sum(1 for f in fires if f >= CHANGE) >= AFTER_CHANGE

        await cluster.settle(crossed, on=event_is("run_finished", "run_skipped"), within=60)
        assert await cluster.terminate("a", within=30) == 0
    fires = await _scheduled(pool, stack.profile_id)
    schedule = parse_cron(SCHEDULE, ZONE)
    assert fires == sorted(set(fires)), "strictly increasing, one row per fire"
    assert any(f < CHANGE for f in fires), "fired before the change too"
    for earlier, later in itertools.pairwise(fires):
        # Each row is the next cron fire after the one before: none skipped, none invented.
        assert next_fire_time(schedule, earlier) == later
