"""Measure 3: FreeAgent's fixed windows used to the last request the rule can prove safe.

The simulator enforces FreeAgent's limits exactly (120 per "minute", 3,600 per "hour", fixed
windows counted at receipt), both windows scaled down 40 times together, and fa-sync is told the
same with its default headroom (2 per minute, 20 per hour) and latency allowance (5 s, scaled).
Eight workers send through the production client (ClientFactory, FreeAgentClient, RateBudget)
a backlog of eleven minutes' worth of requests.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from daemon.resources import ClientFactory
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from simulators.stack import Stack, register, simulators
from tests.secretkeys import sealing_box

WINDOW = 1.5  #: FreeAgent's minute, scaled 40 times
LIMIT = 120  #: per minute window, as FreeAgent
BACKLOG = 11  #: windows' worth of requests queued
WORKERS = 8


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings told FreeAgent's windows, scaled; headroom as shipped."""
    return settings.model_copy(
        update={
            "rate_minute_window": WINDOW,
            "rate_hour_window": WINDOW * 60,
            "rate_latency_allowance": 5.0 * WINDOW / 60,
        }
    )


@pytest.fixture
async def strict(pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    """A FreeAgent with fixed windows at the real limits; the client row says the same."""
    freeagent = FreeAgentState(per_minute=LIMIT, minute_window=WINDOW, hour_window=WINDOW * 60)
    async with simulators(freeagent=freeagent) as s:
        yield await register(pool, s, secrets=sealing_box(), per_minute=LIMIT, per_hour=3600)


def _per_window(freeagent: FreeAgentState) -> Counter[int]:
    """Requests FreeAgent admitted in each of its fixed windows (the simulator's own)."""
    epoch = freeagent._epoch  # where the simulator's windows start
    return Counter(
        math.floor((r.time - epoch) / WINDOW) for r in freeagent.requests if r.status != 429
    )


async def test_a_backlog_fills_every_fixed_window_without_a_429(
    strict: Stack, factory: ClientFactory
) -> None:
    """Busiest window >= 98 % of FreeAgent's limit over ten windows or more, and no 429."""
    client = await factory.freeagent(strict.client_id)
    left = LIMIT * BACKLOG

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.company()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(WORKERS))), timeout=60)
    windows = _per_window(strict.freeagent)
    full = [windows[i] for i in range(min(windows) + 1, max(windows))]  # not first, last
    assert strict.freeagent.count_429 == 0
    assert len(full) >= 10
    assert max(windows.values()) >= math.ceil(0.98 * LIMIT), sorted(windows.items())
