"""Measure 3: how much of FreeAgent's limit fa-sync uses, over a backlog of many windows.

The simulator enforces 120 a minute and 3,600 an hour in windows scaled down together
(bench/limit.py), fa-sync is told the same windows. A backlog of `windows` full minutes is
exported; the simulator counts the requests it admitted in each of its fixed minute windows.
"""

from __future__ import annotations

import statistics

from bench import limit
from bench.fasync import bench_settings, export
from bench.stack import register_one, scratch_database, sims
from bench.table import Row, ratio


async def measure(quick: bool) -> list[Row]:
    windows = 3 if quick else 10
    backlog = limit.PER_MINUTE * windows + limit.PER_MINUTE // 2
    dsn = await scratch_database("utilisation")
    async with sims(customers=backlog, freeagent=limit.simulator()) as stack:
        profile_id = await register_one(dsn, stack)
        run = await export(dsn, stack, profile_id, bench_settings(**limit.fa_sync()))
    fa = run.freeagent
    counts = [w["count"] for w in fa["window_counts"]]
    # The first and last windows are partial (the run starts and ends inside them).
    inner = counts[1:-1] or counts
    busiest = max(counts, default=0)
    reads = ratio(fa["reads"], fa["requests"])
    return [
        Row(
            f"utilisation: busiest window ({backlog:,} backlog, {len(counts)} windows)",
            f"{busiest / limit.PER_MINUTE:.1%}",
            ">= 98%",
            f"{busiest}/{limit.PER_MINUTE}; median of inner windows "
            f"{statistics.median(inner) if inner else 0:g}; {run.created:,} created "
            f"in {run.seconds:.1f} s (minute = {limit.MINUTE:g} s)",
            busiest / limit.PER_MINUTE >= 0.98,
        ),
        Row(
            "utilisation: 429 answers",
            str(fa["count_429"]),
            "0",
            f"of {fa['requests']:,} requests",
            fa["count_429"] == 0,
        ),
        Row(
            "utilisation: reads share of requests",
            f"{reads:.1%}",
            "<= 2%",
            f"{fa['reads']} reads / {fa['requests']:,} requests",
            reads <= 0.02,
        ),
    ]
