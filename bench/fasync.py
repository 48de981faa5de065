"""fa-sync's own export, run in this process (as `fa-sync contact export` does) and counted:
records, seconds, FreeAgent requests and PostgreSQL round trips.

Round trips: every pooled connection gets an asyncpg query logger (Connection.add_query_logger),
which is called once per statement sent: fetch, execute, executemany (one call per batch). A
statement not yet in the connection's statement cache (FA_SYNC_DB_STATEMENT_CACHE) costs one
more round trip, its prepare: those are counted where asyncpg looks the statement up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from bench.cpu import Cpu, measured
from bench.stack import Sims
from daemon.clients.transport import Transport
from daemon.context import RunOptions
from daemon.db.pool import create_pool
from daemon.db.records import RunTrigger
from daemon.logs import configure
from daemon.resources import ClientFactory
from daemon.runner import Runner
from daemon.settings import Settings
from tests.secretkeys import TEST_SECRET_KEY, sealing_box


@dataclass
class Export:
    """One fa-sync export and what it cost."""

    status: str
    exported: int  #: created + updated + linked
    created: int
    seconds: float
    queries: int  #: PostgreSQL statements sent during the export
    prepares: int  #: of those, statements prepared first (one more round trip each)
    cpu: Cpu  #: during the export: this process's and the machine's
    freeagent: dict[str, Any]  #: the simulator's stats afterwards

    @property
    def rate(self) -> float:
        return self.exported / self.seconds if self.seconds else 0.0


def bench_settings(**overrides: Any) -> Settings:
    """fa-sync's settings for a benchmark: concurrency 8, retries without waiting."""
    values: dict[str, Any] = {
        "export_concurrency": 8,
        "record_retry_base_seconds": 0,
        "secret_key": TEST_SECRET_KEY,
        "log_format": "console",
        "log_level": "ERROR",
        **overrides,
    }
    return Settings(_env_file=None, **values)


async def export(dsn: str, stack: Sims, profile_id: int, settings: Settings) -> Export:
    """One export of a profile, timed from claim to outcome; simulator counters reset first."""
    configure(log_format="console", level="ERROR")
    queries = 0

    def count(_: Any) -> None:
        nonlocal queries
        queries += 1

    async def init(conn: asyncpg.Connection) -> None:
        await original(conn)
        conn.add_query_logger(count)

    pool = await create_pool(
        dsn, min_size=0, max_size=settings.pool_size(), statement_cache=settings.db_statement_cache
    )
    original = pool._init
    pool._init = init
    await stack.reset()
    prepares = 0
    lookup = asyncpg.Connection._get_statement

    async def counted(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal prepares
        cached = {id(s) for s in self._stmt_cache.iter_statements()}
        statement = await lookup(self, query, *args, **kwargs)
        prepares += id(statement) not in cached  # not from the cache: it was prepared
        return statement

    asyncpg.Connection._get_statement = counted  # type: ignore[method-assign]
    try:
        async with aiohttp.ClientSession() as session:
            factory = ClientFactory(
                pool=pool,
                settings=settings,
                transport=Transport(session=session, settings=settings),
                secrets=sealing_box(),
            )
            runner = Runner(pool=pool, settings=settings, resources=factory)
            started = time.perf_counter()
            with measured() as cpu:
                outcome = await runner.fire(
                    profile_id, trigger=RunTrigger.CLI, options=RunOptions()
                )
            seconds = time.perf_counter() - started
    finally:
        asyncpg.Connection._get_statement = lookup  # type: ignore[method-assign]
        await pool.close()
    counts = outcome.counts
    return Export(
        status=str(outcome.status),
        exported=counts.created + counts.updated + counts.linked,
        created=counts.created,
        seconds=seconds,
        queries=queries,
        prepares=prepares,
        cpu=cpu,
        freeagent=(await stack.stats())["freeagent"],
    )
