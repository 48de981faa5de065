"""Fixtures for the HTTP clients: simulators on 127.0.0.1, a transport that records its
backoff sleeps instead of sleeping, and FreeAgent clients registered in the test database.

The `pool` fixture (a fresh PostgreSQL database per test) comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from daemon.clients.freeagent import FreeAgentClient
from daemon.clients.magento import MagentoClient
from daemon.clients.oauth import TokenStore
from daemon.clients.ratelimit import RateBudget
from daemon.clients.transport import RequestLog, Transport
from daemon.db.queries import QUERIES
from daemon.db.records import FreeAgentClientRow, MagentoConnectionRow
from daemon.settings import Settings
from simulators import freeagent as fa_sim
from simulators import magento as mg_sim
from tests.secretkeys import sealing_box

#: Seals what the fixtures store, as the CLI would (the tests' key).
BOX = sealing_box()


@dataclass
class SleepRecorder:
    """Stands in for asyncio.sleep in the transport: records each backoff, returns at once.

    `then` runs after a recorded sleep: a test can end an outage "while we wait".
    """

    waits: list[float] = field(default_factory=list)
    then: Callable[[], None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.then is not None:
            self.then()


@dataclass
class FreeAgentRig:
    """One simulated FreeAgent and a client registered for it in the database."""

    state: fa_sim.FreeAgentState
    server: TestServer
    row: FreeAgentClientRow
    tokens: TokenStore
    budget: RateBudget
    client: FreeAgentClient
    transport: Transport

    def requests(self, method: str, path: str) -> int:
        """How many requests the simulator saw for this method and path."""
        return sum(1 for r in self.state.requests if r.method == method and r.path == path)


@pytest.fixture
def settings() -> Settings:
    """Short timeouts and a few attempts; backoff sleeps are recorded, not slept."""
    return Settings(
        _env_file=None,
        http_timeout=5.0,
        http_retry_attempts=4,
        http_retry_max_wait=0.01,
        request_log_dir="logs",
    )


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def transport(
    session: aiohttp.ClientSession, settings: Settings, sleeps: SleepRecorder
) -> Transport:
    return Transport(session=session, settings=settings, sleep=sleeps)


async def register_client(
    pool: asyncpg.Pool,
    state: fa_sim.FreeAgentState,
    base_url: str,
    *,
    name: str = "demo",
    access_expires_in: float = 3600.0,
    per_minute: int = 120,
    rate_limit_test: bool = False,
) -> FreeAgentClientRow:
    """Insert a client row holding a pair the simulator issued, as `client authorize` would."""
    row = await pool.fetchrow(
        QUERIES["client_insert"],
        name,
        "custom",
        base_url,
        "demo-client",
        BOX.seal("demo-secret"),
        "urn:ietf:wg:oauth:2.0:oob",
        per_minute,
        3600,
        rate_limit_test,
    )
    access, refresh = state.issue_tokens("demo-client")
    now = datetime.now(UTC)
    await pool.execute(
        QUERIES["client_save_tokens"],
        row["id"],
        BOX.seal(access),
        now + timedelta(seconds=access_expires_in),
        BOX.seal(refresh),
        now + timedelta(days=3650),
    )
    stored = FreeAgentClientRow.from_row(await pool.fetchrow(QUERIES["client_get"], row["id"]))
    return BOX.opened(stored)


MakeFreeAgent = Callable[..., Awaitable[FreeAgentRig]]


@pytest.fixture
def make_freeagent(pool: asyncpg.Pool, aiohttp_server: Any, transport: Transport) -> MakeFreeAgent:
    """Build a simulator (from a state) and a FreeAgentClient wired to it."""

    async def make(
        state: fa_sim.FreeAgentState | None = None,
        *,
        request_log: RequestLog | None = None,
        minute_window: float = 60.0,
        **row_options: Any,
    ) -> FreeAgentRig:
        state = state or fa_sim.FreeAgentState()
        server = await aiohttp_server(fa_sim.create_app(state))
        base_url = str(server.make_url("/v2/"))
        state.base_url = base_url.removesuffix("/v2/")
        row = await register_client(pool, state, base_url, **row_options)
        used = transport.with_log(request_log) if request_log else transport
        tokens = TokenStore(pool, used, row.id, secrets=BOX)
        budget = RateBudget(
            pool,
            row.budget_key,
            *row.rate_limits,
            minute_window,
            3600.0,
        )
        client = FreeAgentClient(transport=used, client_row=row, tokens=tokens, budget=budget)
        return FreeAgentRig(state, server, row, tokens, budget, client, used)

    return make


@pytest.fixture
async def freeagent(make_freeagent: MakeFreeAgent) -> FreeAgentRig:
    """A default simulated FreeAgent with a registered, authorised client."""
    return await make_freeagent()


@dataclass
class MagentoRig:
    """One simulated Magento and a client for it."""

    state: mg_sim.MagentoState
    server: TestServer
    client: MagentoClient


MakeMagento = Callable[..., Awaitable[MagentoRig]]


def magento_connection(
    base_url: str,
    *,
    oauth: bool = False,
    store_code: str | None = None,
    token: str = mg_sim.DEMO_BEARER_TOKEN,
) -> MagentoConnectionRow:
    """A connection row: Bearer with `token`, or the demo integration's OAuth 1 credentials."""
    if not oauth:
        return MagentoConnectionRow(1, "shop", base_url, store_code, token)
    consumer = mg_sim.MagentoState().oauth_consumers[mg_sim.DEMO_CONSUMER_KEY]
    return MagentoConnectionRow(
        1,
        "shop",
        base_url,
        store_code,
        consumer.access_token,
        consumer_key=mg_sim.DEMO_CONSUMER_KEY,
        consumer_secret=consumer.consumer_secret,
        access_token_secret=consumer.token_secret,
    )


@pytest.fixture
def make_magento(aiohttp_server: Any, transport: Transport) -> MakeMagento:
    """Build a simulated Magento (from a state) and a MagentoClient for it."""

    async def make(state: mg_sim.MagentoState | None = None, **connection: Any) -> MagentoRig:
        state = state or mg_sim.MagentoState.seeded(30)
        server = await aiohttp_server(mg_sim.create_app(state))
        row = magento_connection(str(server.make_url("")).rstrip("/"), **connection)
        return MagentoRig(state, server, MagentoClient(transport=transport, connection=row))

    return make
