"""Both simulators on loopback plus the rows that point fa-sync at them.

Used by `fa-sync demo` and the end-to-end tests: the same code a user runs against the real
services, pointed at stand-ins by configuration (a `custom` FreeAgent environment and a
Magento connection on 127.0.0.1).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware

from daemon.db.queries import QUERIES
from daemon.secretbox import SecretBox
from simulators.freeagent import FreeAgentState
from simulators.freeagent import create_app as create_freeagent
from simulators.magento import MagentoState
from simulators.magento import create_app as create_magento

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_MAGENTO_TOKEN = "demo-magento-token"


@dataclass
class Stack:
    """Running simulators and the ids of the rows that use them."""

    freeagent: FreeAgentState
    magento: MagentoState
    freeagent_url: str  #: API root ending /v2/
    magento_url: str
    client_id: int = 0
    connection_id: int = 0
    profile_id: int = 0
    runners: list[web.AppRunner] = field(default_factory=list)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def simulators(
    *,
    freeagent: FreeAgentState | None = None,
    magento: MagentoState | None = None,
    customers: int = 50,
    guest_orders: int = 10,
    freeagent_middlewares: Sequence[Middleware] = (),
) -> AsyncIterator[Stack]:
    """Start both simulators on free loopback ports.

    freeagent_middlewares: run inside the FreeAgent simulator's own, next to its handlers
    (a test rewriting an answer FreeAgent might give, e.g. users/me in another shape).
    """
    fa = freeagent or FreeAgentState()
    mg = magento or MagentoState.seeded(customers, guest_orders)
    fa_app = create_freeagent(fa)
    fa_app.middlewares.extend(freeagent_middlewares)
    fa_runner, fa_root = await _serve(fa_app)
    mg_runner, mg_root = await _serve(create_magento(mg))
    fa.base_url = fa_root
    stack = Stack(fa, mg, f"{fa_root}/v2/", mg_root, runners=[fa_runner, mg_runner])
    try:
        yield stack
    finally:
        for runner in stack.runners:
            await runner.cleanup()


async def register(
    pool: asyncpg.Pool,
    stack: Stack,
    *,
    secrets: SecretBox,
    profile: str = "demo",
    schedule: str = "*/15 * * * *",
    settings: dict[str, Any] | None = None,
    enabled: bool = True,
    app: str = DEMO_CLIENT_ID,
    **limits: int,
) -> Stack:
    """Insert a FreeAgent client (authorised), a Magento connection and a profile using them;
    secrets sealed with the box, as the CLI stores them. app: the simulator's client id the
    tokens are issued to (each app is a FreeAgent user of its own); it must be registered."""
    client = await pool.fetchrow(
        QUERIES["client_insert"],
        f"{profile}-freeagent",
        "custom",
        stack.freeagent_url,
        app,
        secrets.seal(stack.freeagent.clients[app]),
        "urn:ietf:wg:oauth:2.0:oob",
        limits.get("per_minute", 120),
        limits.get("per_hour", 3600),
        False,
    )
    access, refresh = stack.freeagent.issue_tokens(app)
    now = datetime.now(UTC)
    await pool.execute(
        QUERIES["client_save_tokens"],
        client["id"],
        secrets.seal(access),
        now + timedelta(seconds=stack.freeagent.access_token_ttl),
        secrets.seal(refresh),
        None,
    )
    connection = await pool.fetchrow(
        QUERIES["connection_insert"],
        f"{profile}-magento",
        stack.magento_url,
        None,
        secrets.seal(DEMO_MAGENTO_TOKEN),
        None,
        None,
        None,
    )
    row = await pool.fetchrow(
        QUERIES["profile_insert"],
        profile,
        "freeagent_contact_export",
        client["id"],
        connection["id"],
        schedule,
        json.loads(json.dumps(settings or {})),
    )
    if not enabled:
        await pool.execute(QUERIES["profile_update"], profile, False, *([None] * 12))
    stack.client_id, stack.connection_id, stack.profile_id = (
        client["id"],
        connection["id"],
        row["id"],
    )
    return stack
