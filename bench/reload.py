"""Measure 7: `UPDATE profile` (what `fa-sync profile set` runs) to the new schedule in force in
a running daemon: from the statement's return to the daemon's `schedule_set` log line for that
schedule, read from its stderr as it is written."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.stack import register, scratch_database, sims
from bench.table import Row, percentile
from daemon.db.pool import create_pool
from daemon.db.queries import QUERIES
from tests.replicas.harness import Cluster, Predicate


def schedule_set(schedule: str) -> Predicate:
    """The daemon's log line saying this schedule is in force."""
    return lambda e: e.get("event") == "schedule_set" and e.get("schedule") == schedule


async def measure(quick: bool) -> list[Row]:
    edits = 10 if quick else 50
    dsn = await scratch_database("reload")
    latencies: list[float] = []
    async with sims(customers=1) as stack:
        pool = await create_pool(dsn, max_size=2)
        cluster = Cluster(dsn=dsn, workdir=Path(tempfile.mkdtemp(prefix="fa-sync-bench-")))
        try:
            await register(pool, stack, schedule="0 0 1 1 *")
            await cluster.start_ready("a")
            for n in range(edits):
                schedule = f"{n % 60} {n // 60} 1 1 *"  # never due during the measure
                mark = cluster.mark()
                # profile_update: name, enabled, schedule, then 11 columns left as they are
                await pool.execute(
                    QUERIES["profile_update"], "bench-0", None, schedule, *[None] * 11
                )
                sent = time.perf_counter()
                await cluster.wait_for(
                    schedule_set(schedule),
                    since=mark,
                    within=120,
                )
                latencies.append(time.perf_counter() - sent)
            await cluster.stop_all()
        finally:
            await cluster.close()
            await pool.close()
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return [
        Row(
            f"reload latency: UPDATE profile -> schedule in force ({edits} edits)",
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms",
            "<= 1 s",
            f"max {max(latencies) * 1000:.0f} ms",
            p99 <= 1,
        )
    ]
