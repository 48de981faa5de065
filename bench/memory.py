"""Measure 5: peak RSS of `fa-sync contact export` (a child process of its own, limits off)
at two store sizes; the simulators run in another process."""

from __future__ import annotations

import os

from bench.child import ChildRun, daemon_env, fa_sync_cli
from bench.ratio import off_settings
from bench.stack import autovacuum_stand_in, limits_off, register, scratch_database, sims
from bench.table import Row, ratio
from daemon.db.pool import create_pool


async def peak(customers: int) -> tuple[ChildRun, int]:
    dsn = await scratch_database(f"memory_{customers}")
    async with sims(customers=customers, freeagent=limits_off()) as stack:
        pool = await create_pool(dsn, max_size=2)
        try:
            await register(pool, stack)
        finally:
            await pool.close()
        env = daemon_env(dsn, {**off_settings(), "export_concurrency": 8,
                               "record_retry_base_seconds": 0})  # fmt: skip
        async with autovacuum_stand_in(dsn):
            run = await fa_sync_cli(["contact", "export", "--profile", "bench-0", "--json"], env)
        created = (await stack.stats())["freeagent"]["contacts"]
    if run.returncode != 0:
        raise RuntimeError(f"fa-sync contact export ({customers}) exited {run.returncode}")
    return run, created


def sizes(quick: bool) -> tuple[int, int]:
    """The two store sizes: FA_SYNC_BENCH_MEMORY="small,large" overrides them. The large
    one is most of the full table's time: the export, not the simulators, which answer a
    keyset page from an index (simulators/magento_keyset.py)."""
    override = os.environ.get("FA_SYNC_BENCH_MEMORY")
    if override:
        small, large = (int(n) for n in override.split(","))
        return small, large
    return (200, 1_000) if quick else (10_000, 200_000)


async def measure(quick: bool) -> list[Row]:
    small_n, large_n = sizes(quick)
    small, small_created = await peak(small_n)
    large, large_created = await peak(large_n)
    growth = ratio(large.peak_rss_mib, small.peak_rss_mib)
    return [
        Row(
            f"memory: peak RSS {large_n:,} vs {small_n:,} customers",
            f"{growth:.2f}x",
            "<= 1.2x",
            f"{large.peak_rss_mib:.0f} MiB ({large_created:,} exported, {large.seconds:.0f} s) vs "
            f"{small.peak_rss_mib:.0f} MiB ({small_created:,}, {small.seconds:.0f} s)",
            growth <= 1.2,
        )
    ]
