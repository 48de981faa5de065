"""One request budget per FreeAgent user, with headroom, against FreeAgent's fixed windows.

The simulator enforces 120 requests per user per fixed window and counts token-endpoint
requests too (the harsher reading of the reference). Windows are scaled from 60 s to 3 s, the
latency allowance with them (5 s -> 0.25 s), and the limit to what the machine can send.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from daemon import cli_admin
from daemon.clients.ratelimit import Headroom, RateBudget, user_key
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.secretkeys import sealing_box

WINDOW = 3.0  #: "minute"
HOUR = WINDOW * 60
#: FreeAgent's 120/min scaled with the window to what the test machine can send (~20/s),
#: so that the budget, not the machine, is what keeps the export under the limit.
PER_WINDOW = 30
CUSTOMERS = 90


@pytest.fixture
def settings(settings: Settings, database_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The suite's settings with FreeAgent's windows scaled down 50 times, and the database
    URL (also in the environment, for the CLI command run in this process)."""
    monkeypatch.setenv("DATABASE_URL", database_dsn)
    return settings.model_copy(
        update={
            "database_url": SecretStr(database_dsn),
            "rate_minute_window": WINDOW,
            "rate_hour_window": HOUR,
            "rate_latency_allowance": 0.25,
            "rate_headroom_per_minute": 1,
        }
    )


@pytest.fixture
async def limited(pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    """FreeAgent enforcing PER_WINDOW per fixed window per user; the client row says the same."""
    freeagent = FreeAgentState(per_minute=PER_WINDOW, minute_window=WINDOW, hour_window=HOUR)
    magento = MagentoState.seeded(customers=CUSTOMERS, guest_orders=0)
    async with simulators(freeagent=freeagent, magento=magento) as s:
        yield await register(pool, s, secrets=sealing_box(), per_minute=PER_WINDOW)


def _busiest_window(freeagent: FreeAgentState) -> int:
    """Most requests (token endpoint included) one fixed simulator window received."""
    first = freeagent.requests[0].time
    per_window = Counter(math.floor((r.time - first) / WINDOW) for r in freeagent.requests)
    return max(per_window.values(), default=0)


async def _authorize(stack: Stack, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fa-sync client authorize demo-freeagent --code CODE`, in this process."""
    monkeypatch.setattr(cli_admin, "settings", lambda: settings)
    code = stack.freeagent.new_code("demo-client", "urn:ietf:wg:oauth:2.0:oob")
    command = cli_admin.client_authorize.__wrapped__  # type: ignore[attr-defined]
    await command("demo-freeagent", code=code, refresh_token=None)


async def test_authorize_then_export_at_the_real_limit_gets_no_429(
    pool: asyncpg.Pool,
    limited: Stack,
    settings: Settings,
    run_profile,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`client authorize` and the export draw from one budget with headroom: no 429."""
    await run_profile(limited.profile_id, export=False)  # Magento read beforehand
    await _authorize(limited, settings, monkeypatch)
    outcome = await run_profile(limited.profile_id, collect=False)  # at once, same window
    assert outcome.error is None
    assert limited.freeagent.count_429 == 0
    # The export pressed against the limit: it was the budget that kept it in.
    assert _busiest_window(limited.freeagent) >= PER_WINDOW * 3 // 4
    exported = await pool.fetchval(
        "SELECT count(*) FROM contact_entity WHERE status IN ('created', 'updated', 'linked')"
    )
    assert exported >= CUSTOMERS - 5  # a few seeds share an e-mail or are skipped


async def test_requests_before_users_me_move_into_the_users_budget(pool: asyncpg.Pool) -> None:
    """What was counted under the provisional client key is counted for the user once known."""
    budget = RateBudget(pool, "client:7", 3, 100, 60.0, 3600.0)
    for _ in range(2):
        assert await budget.try_acquire() == 0
    await budget.adopt_user("https://api.example/v2/users/1")
    assert budget.key == user_key("https://api.example/v2/users/1")
    assert await budget.try_acquire() == 0
    assert await budget.try_acquire() > 0  # 2 moved + 1 = the limit of 3


async def test_grant_stays_counted_for_the_latency_allowance(pool: asyncpg.Pool) -> None:
    """A grant is spent for window + allowance, and the limit is lowered by the headroom."""
    budget = RateBudget(pool, "user:x", 5, 100, 60.0, 3600.0, headroom=Headroom(5.0, 2, 0))
    grants = [await budget.try_acquire() == 0 for _ in range(5)]
    assert grants.count(True) == 3
    wait = await budget.try_acquire()
    assert 60.0 < wait <= 65.0
