"""What every measure needs: the simulators in their own process, a scratch database, profiles.

PostgreSQL: FA_SYNC_TEST_DSN or DATABASE_URL (a server DSN; each measure makes its own
database on it), else the embedded server in .fa-sync/bench-pgdata, as bench/export.py does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from daemon.db.pool import create_pool, drop_database, migrate, recreate_database
from daemon.db.queries import QUERIES
from simulators.stack import DEMO_CLIENT_SECRET, DEMO_MAGENTO_TOKEN
from tests.secretkeys import TEST_SECRET_KEY, sealing_box

ROOT = Path(__file__).resolve().parent.parent
#: Simulator windows for "limits off": 120 a minute and 3,600 an hour still apply, but the
#: windows are so short (12,000 requests/s) that no client here reaches them.
OFF_MINUTE, OFF_HOUR = 0.01, 0.3
UNLIMITED_IP = 10**9


def limits_off() -> dict[str, Any]:
    """FreeAgentState fields for a simulator whose limits nothing here reaches."""
    return {
        "minute_window": OFF_MINUTE,
        "hour_window": OFF_HOUR,
        "per_ip_per_minute": UNLIMITED_IP,
    }


_server: dict[str, Any] = {}


def server_dsn() -> str:
    """The PostgreSQL server to make scratch databases on (embedded when none is given)."""
    dsn = os.environ.get("FA_SYNC_TEST_DSN") or os.environ.get("DATABASE_URL")
    if dsn:
        return dsn
    if "dsn" not in _server:
        from daemon.db.embedded import start_embedded

        _server["dsn"], _server["handle"] = start_embedded(ROOT / ".fa-sync" / "bench-pgdata")
    return str(_server["dsn"])


_made: list[str] = []


async def scratch_database(name: str) -> str:
    """A fresh, migrated database of this run (concurrent runs do not share it); its DSN."""
    full = f"fa_sync_bench_{name}_{os.getpid()}"
    dsn = await recreate_database(server_dsn(), full)
    _made.append(full)
    pool = await create_pool(dsn, max_size=2)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    return dsn


async def drop_scratch_databases() -> None:
    """Drop the databases this run made."""
    while _made:
        await drop_database(server_dsn(), _made.pop())


#: Seconds between the stand-in's VACUUM ANALYZE passes.
VACUUM_EVERY = 20.0


@asynccontextmanager
async def autovacuum_stand_in(dsn: str) -> AsyncIterator[None]:
    """VACUUM ANALYZE the ledger tables every VACUUM_EVERY seconds while the block runs, when
    the server's autovacuum is off (test servers switch it off), so that the ledger is
    measured as production runs it. (When each claim read and sorted the whole queue, a
    200,000-customer first sync without it slowed from 13,000 to 2,000 exports a minute by the
    50,000th; claims now read their batch off an index and need no statistics.)"""
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SHOW autovacuum") == "on":
            yield
            return
        task = asyncio.create_task(_vacuum_every(conn), name="autovacuum-stand-in")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    finally:
        await conn.close()


async def _vacuum_every(conn: asyncpg.Connection) -> None:
    while True:
        await asyncio.sleep(VACUUM_EVERY)
        await conn.execute("VACUUM ANALYZE contact_entity, freeagent_contact")


@dataclass
class Sims:
    """The simulator process: its URLs and a session for its control server."""

    proc: asyncio.subprocess.Process
    freeagent: str  #: FreeAgent API root ending /v2/
    magento: str
    control: str
    session: aiohttp.ClientSession = field(repr=False)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.control + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def stats(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/stats"))

    async def reset(self) -> None:
        await self.call("POST", "/reset", {})

    async def tokens(self, clients: list[str]) -> dict[str, list[str]]:
        return dict(await self.call("POST", "/tokens", {"clients": clients}))

    async def touch(self, count: int) -> None:
        await self.call("POST", "/touch", {"count": count})


@asynccontextmanager
async def sims(
    *, customers: int, guest_orders: int = 0, freeagent: dict[str, Any] | None = None
) -> AsyncIterator[Sims]:
    """Start `python -m bench.simserver` and stop it (SIGKILL: it holds nothing) afterwards."""
    config = {"customers": customers, "guest_orders": guest_orders, "freeagent": freeagent or {}}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.simserver", json.dumps(config),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 600)
        if not line:
            raise RuntimeError("the simulator process exited before serving")
        urls = json.loads(line)
        async with aiohttp.ClientSession() as session:
            yield Sims(proc, urls["freeagent"], urls["magento"], urls["control"], session)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def register(
    pool: asyncpg.Pool,
    stack: Sims,
    *,
    profiles: int = 1,
    schedule: str = "0 0 1 1 *",
    per_minute: int = 120,
    per_hour: int = 3600,
    settings: dict[str, Any] | None = None,
) -> list[int]:
    """`profiles` profiles bench-0.., each with a FreeAgent app (and so a user) of its own and
    one shared Magento connection; secrets sealed with the tests' key. Their ids."""
    box = sealing_box()
    names = [f"bench-{n}" for n in range(profiles)]
    tokens = await stack.tokens(names)
    connection = await pool.fetchrow(
        QUERIES["connection_insert"], "bench-magento", stack.magento, None,
        box.seal(DEMO_MAGENTO_TOKEN), None, None, None,
    )  # fmt: skip
    ids = []
    expires = datetime.now(UTC) + timedelta(hours=1)
    for name in names:
        client = await pool.fetchrow(
            QUERIES["client_insert"], f"{name}-freeagent", "custom", stack.freeagent, name,
            box.seal(DEMO_CLIENT_SECRET), "urn:ietf:wg:oauth:2.0:oob", per_minute, per_hour,
            False,
        )  # fmt: skip
        access, refresh = tokens[name]
        await pool.execute(
            QUERIES["client_save_tokens"], client["id"], box.seal(access), expires,
            box.seal(refresh), None,
        )  # fmt: skip
        row = await pool.fetchrow(
            QUERIES["profile_insert"], name, "freeagent_contact_export", client["id"],
            connection["id"], schedule, settings or {},
        )  # fmt: skip
        ids.append(row["id"])
    return ids


SECRET_KEY = TEST_SECRET_KEY


async def register_one(dsn: str, stack: Sims) -> int:
    """One bench profile on the scratch database `dsn` (a short-lived pool); its id."""
    pool = await create_pool(dsn, max_size=2)
    try:
        [profile_id] = await register(pool, stack)
    finally:
        await pool.close()
    return profile_id
