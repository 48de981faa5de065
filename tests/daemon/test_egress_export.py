"""Many shops on one address: their users' limits add up to more than FreeAgent's per-IP cap.

The simulator enforces each user's limit and the per-IP limit (reference addendum) in fixed
windows scaled from 60 s to 3 s; fa-sync is told the same, with the latency allowance scaled
too. Each profile has a FreeAgent app, and so a user and a company, of its own; every request
comes from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from daemon.db.pool import create_pool
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.secretkeys import sealing_box

WINDOW = 3.0  #: "minute"
PER_USER = 30  #: each user's limit per window (as test_budget: what the machine can send)
SHOPS = 3
IP_CAP = 40  #: per window, below SHOPS * PER_USER
CUSTOMERS = 50


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """Room for three runs at once (each holds a connection per export worker, plus one)."""
    p = await create_pool(database_dsn, max_size=20)
    yield p
    await p.close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings told the simulator's windows and its per-IP cap."""
    return settings.model_copy(
        update={
            "rate_minute_window": WINDOW,
            "rate_hour_window": WINDOW * 60,
            "rate_latency_allowance": 5.0 * WINDOW / 60,
            "rate_headroom_per_minute": 1,
            "rate_egress_per_minute": IP_CAP,
            "rate_egress_headroom_per_minute": 1,
        }
    )


@pytest.fixture
async def shops(pool: asyncpg.Pool) -> AsyncIterator[tuple[Stack, list[int]]]:
    """One Magento store and SHOPS profiles, each exporting to a FreeAgent user of its own."""
    apps = {f"shop-{n}": f"secret-{n}" for n in range(SHOPS)}
    freeagent = FreeAgentState(
        per_minute=PER_USER, minute_window=WINDOW, hour_window=WINDOW * 60,
        per_ip_per_minute=IP_CAP, company_per_user=True, clients=apps,
    )  # fmt: skip
    magento = MagentoState.seeded(customers=CUSTOMERS, guest_orders=0)
    async with simulators(freeagent=freeagent, magento=magento) as stack:
        ids = []
        for app in apps:
            await register(pool, stack, secrets=sealing_box(), profile=app, app=app,
                           per_minute=PER_USER)  # fmt: skip
            ids.append(stack.profile_id)
        yield stack, ids


def _admitted_per_window(freeagent: FreeAgentState) -> Counter[int]:
    """Requests the simulator admitted in each of its fixed windows (the per-IP windows)."""
    epoch = freeagent._epoch
    return Counter(
        math.floor((r.time - epoch) / WINDOW) for r in freeagent.requests if r.status != 429
    )


async def test_shops_sharing_an_address_stay_under_its_cap(
    pool: asyncpg.Pool,
    shops: tuple[Stack, list[int]],
    run_profile,  # type: ignore[no-untyped-def]
) -> None:
    """Three users whose limits add up to 90 a window, one address allowed 40: no 429, and
    the busiest window carries most of the 40."""
    stack, ids = shops
    for profile_id in ids:  # Magento read first, so the exports press at the same time
        await run_profile(profile_id, export=False)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(run_profile(p, collect=False) for p in ids)), timeout=60
    )
    assert [o.error for o in outcomes] == [None] * SHOPS
    assert stack.freeagent.count_429 == 0
    windows = _admitted_per_window(stack.freeagent)
    assert max(windows.values()) >= IP_CAP * 3 // 4, sorted(windows.items())
    exported = await pool.fetchval(
        "SELECT count(*) FROM contact_entity WHERE status IN ('created', 'updated', 'linked')"
    )
    assert exported >= SHOPS * (CUSTOMERS - 5)  # a few seeds share an e-mail or are skipped
