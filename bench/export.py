"""Export benchmark: throughput and write economy of one profile against the simulators.

Prints ratios measured in one run (machines here are shared and noisy):
  writes per customer on the first export (1.0 is ideal: one POST each),
  writes per customer on a second export over unchanged data (0 is the target),
  FreeAgent requests per customer, customers exported per second, peak memory.

    .venv/bin/python bench/export.py --customers 2000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet

# ruff: noqa: T201  (a benchmark prints its figures)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.clients.transport import Transport
from daemon.context import RunOptions
from daemon.db.embedded import start_embedded
from daemon.db.pool import create_pool, migrate, recreate_database
from daemon.db.records import RunTrigger
from daemon.logs import configure
from daemon.loop import run as run_loop
from daemon.resources import ClientFactory
from daemon.runner import Runner
from daemon.secretbox import SecretBox
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import register, simulators


async def bench(customers: int, dsn: str | None) -> None:
    configure(log_format="console", level="ERROR")
    server = None
    if dsn is None:
        dsn, server = start_embedded(Path(".fa-sync/bench-pgdata"))
    db = await recreate_database(dsn, "fa_sync_bench")
    pool = await create_pool(db, max_size=12)
    await migrate(pool)
    # FreeAgent's windows shrunk 600x so the limiter, not the clock, is what is measured.
    settings = Settings(
        _env_file=None,
        rate_minute_window=0.1,
        rate_hour_window=6.0,  # type: ignore[call-arg]
        rate_latency_allowance=5.0 / 600,  # the grant-to-receipt allowance, shrunk alike
        record_retry_base_seconds=0,
        export_concurrency=8,
        secret_key=Fernet.generate_key().decode(),  # a scratch database: a throwaway key
    )
    fa = FreeAgentState(minute_window=0.1, hour_window=6.0)
    mg = MagentoState.seeded(customers=customers, guest_orders=customers // 10)
    async with aiohttp.ClientSession() as session, simulators(freeagent=fa, magento=mg) as stack:
        box = SecretBox.from_settings(settings)
        await register(pool, stack, secrets=box, profile="bench")
        factory = ClientFactory(
            pool=pool,
            settings=settings,
            transport=Transport(session=session, settings=settings),
            secrets=box,
        )
        runner = Runner(pool=pool, settings=settings, resources=factory)
        started = time.perf_counter()
        first = await runner.fire(stack.profile_id, trigger=RunTrigger.CLI, options=RunOptions())
        elapsed = time.perf_counter() - started
        exported = first.counts.created + first.counts.updated + first.counts.linked
        writes_first, requests_first = fa.write_count(), len(fa.requests)
        fa.reset_counters()
        second = await runner.fire(
            stack.profile_id, trigger=RunTrigger.CLI, options=RunOptions(full=True)
        )
        rows = first.counts.collected
        print(f"customers+guests collected       {rows}")
        print(f"first export                     {first.status}: {first.counts.as_dict()}")
        print(
            f"writes per record, first export  {writes_first / max(exported, 1):.3f}  (1.0 ideal)"
        )
        print(f"requests per record, first       {requests_first / max(rows, 1):.3f}")
        unchanged = fa.write_count() / max(rows, 1)
        print(f"writes per record, unchanged     {unchanged:.3f}  (0 target)  [{second.status}]")
        print(f"records per second               {exported / elapsed:.1f}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS                         {peak:.0f} MiB")
    await pool.close()
    if server is not None:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--dsn", default=None, help="PostgreSQL server DSN (default: embedded)")
    args = parser.parse_args()
    run_loop(bench(args.customers, args.dsn))


if __name__ == "__main__":
    main()
