"""Measure 2: fa-sync against the original's way (bench/seedstyle.py), limits off and at the
(scaled) real limit.

Limits off: both export the same store, each on a fresh simulator. At the limit: fa-sync
exports a backlog of a few windows; the seed style exports the same store for as long, waiting
out each 429 as Retry-After (scaled) says. Contacts per hour are per scaled hour.
"""

from __future__ import annotations

import time

from bench import limit
from bench.bare import Endpoints
from bench.fasync import bench_settings, export
from bench.ratio import QUICK, fa_sync_off
from bench.seedstyle import seed_export
from bench.stack import limits_off, register_one, scratch_database, sims
from bench.table import Row, ratio


async def seed_run(customers: int, freeagent: dict[str, object], **kwargs: float):  # type: ignore[no-untyped-def]
    async with sims(customers=customers, freeagent=freeagent) as stack:
        tokens = await stack.tokens(["seed"])
        ends = Endpoints(stack.freeagent, stack.magento, tokens["seed"][0])
        return await seed_export(ends, **kwargs)


async def measure(quick: bool) -> list[Row]:
    customers = QUICK if quick else 2_000
    seed = await seed_run(customers, limits_off())
    fa = await fa_sync_off(customers, "seed")
    rows = [
        Row(
            f"seed style, limits off ({customers:,} customers)",
            f"{ratio(fa.rate, seed.rate):.1f}x",
            ">= 20x",
            f"fa-sync {fa.rate:,.0f}/s; seed style {seed.rate:,.0f}/s "
            f"({seed.created:,} in {seed.seconds:.1f} s)",
            ratio(fa.rate, seed.rate) >= 20,
        )
    ]
    windows = 2 if quick else 6
    backlog = limit.PER_MINUTE * windows
    dsn = await scratch_database("seed_limit")
    async with sims(customers=backlog, freeagent=limit.simulator()) as stack:
        profile_id = await register_one(dsn, stack)
        started = time.perf_counter()
        at = await export(dsn, stack, profile_id, bench_settings(**limit.fa_sync()))
        spent = time.perf_counter() - started
    slow = await seed_run(backlog, limit.simulator(), retry_scale=1 / limit.SCALE, deadline=spent)
    fa_hour = at.created * limit.HOUR / at.seconds
    seed_hour = slow.created * limit.HOUR / slow.seconds
    fa_per = ratio(at.freeagent["requests"], at.created)
    seed_per = ratio(slow.requests, slow.created)
    rows += [
        Row(
            f"seed style at the limit: contacts/hour ({backlog} backlog, 1/{limit.SCALE} time)",
            f"{ratio(fa_hour, seed_hour):.2f}x",
            ">= 2x",
            f"fa-sync {fa_hour:,.0f}/h ({at.created} in {at.seconds:.1f} s); "
            f"seed style {seed_hour:,.0f}/h ({slow.created} in {slow.seconds:.1f} s, "
            f"{slow.throttled} x 429)",
            ratio(fa_hour, seed_hour) >= 2,
        ),
        Row(
            "requests per created contact at the limit (fa-sync / seed style)",
            f"{fa_per:.3f} / {seed_per:.2f}",
            "<= 1.02 / >= 2",
            f"fa-sync {at.freeagent['requests']} requests, {at.freeagent['count_429']} x 429; "
            f"seed style {slow.requests} requests",
            fa_per <= 1.02,
        ),
    ]
    return rows
