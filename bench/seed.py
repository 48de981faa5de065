"""Measure 2: fa-sync against the original's way (bench/seedstyle.py), limits off and at the
(scaled) real limit.

Limits off: the seed style exports the store on a fresh simulator, stopped at a deadline if it
is slow (its lookups list the whole account, so each customer costs more than the one before);
fa-sync then exports the customers the seed style got through (the store's first N, built the
same way) on a fresh simulator and database, so both are timed on the same records.

At the limit: fa-sync exports a backlog of several minute windows (a whole hour's budget in the
full run) while the seed style exports the same store on a simulator of its own, until fa-sync
is done. The seed style waits out each 429 for Retry-After: its simulator reports Retry-After as
the live API would for full-size windows and it scales that back, so it waits as long as the
original would, neither shorter (polling) nor longer (whole seconds of a 3-second window).
Contacts per hour are per scaled hour: the lesser of the pace measured and what the hour's
3,600 requests buy at the requests each contact took. A run shorter than an hour never meets
the hour cap, but both sides fill their minute windows (120 a minute is twice 3,600 an hour),
so over an hour the cap binds on both; and fa-sync's last window, with its backlog spent, would
otherwise count against it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import limit
from bench.bare import Endpoints
from bench.fasync import Export, bench_settings, export
from bench.ratio import QUICK, fa_sync_off
from bench.seedstyle import SeedResult, seed_export
from bench.stack import limits_off, register_one, scratch_database, sims
from bench.table import Row, ratio

#: How long the seed style may take over the full run's 10,000 customers (it would need hours).
FULL_DEADLINE = 300.0
#: Minute windows of backlog at the limit: quick; the full run exports an hour's budget.
QUICK_WINDOWS = 5
PER_HOUR = 3600


async def seed_run(customers: int, freeagent: dict[str, Any], **kwargs: Any) -> SeedResult:
    async with sims(customers=customers, freeagent=freeagent) as stack:
        tokens = await stack.tokens(["seed"])
        ends = Endpoints(stack.freeagent, stack.magento, tokens["seed"][0])
        return await seed_export(ends, **kwargs)


async def limits_off_row(quick: bool) -> Row:
    customers = QUICK if quick else 10_000
    seed = await seed_run(customers, limits_off(), deadline=None if quick else FULL_DEADLINE)
    fa = await fa_sync_off(seed.customers, "seed")
    if seed.finished:
        scope = f"{customers:,} customers"
        stopped = ""
    else:
        scope = f"first {seed.customers:,} of {customers:,} customers"
        stopped = (
            f"; the seed style stopped at its {seed.seconds:.0f} s deadline, so both are "
            f"timed on the {seed.customers:,} it got through; it slows as the account grows "
            f"(all {customers:,} need {lookup_pages(customers):,} list pages)"
        )
    figure = ratio(fa.rate, seed.rate)
    return Row(
        f"seed style, limits off ({scope})",
        f"{figure:.2f}x",
        ">= 20x",
        f"fa-sync {per_second(fa.rate)}/s ({fa.exported:,} in {fa.seconds:.1f} s); seed style "
        f"{per_second(seed.rate)}/s ({seed.exported:,} in {seed.seconds:.1f} s, {seed.requests:,} "
        f"requests: {seed.pages:,} list pages, {seed.created:,} POSTs, {seed.updated} PUT)"
        f"{stopped}",
        figure >= 20,
    )


def lookup_pages(customers: int) -> int:
    """List pages the seed style reads exporting this many new customers into an empty
    account: the n-th (from 0) finds nothing after ceil(n / 100) pages, at least one."""
    return sum(max(1, -(-n // 100)) for n in range(customers))


def per_second(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


def per_hour(created: int, seconds: float, admitted: int) -> float:
    """Contacts per scaled hour: the pace measured, capped by what 3,600 requests buy."""
    pace = created * limit.HOUR / seconds if seconds else 0.0
    return min(pace, PER_HOUR * ratio(created, admitted))


async def at_limit(backlog: int) -> tuple[Export, SeedResult]:
    """Both sides at once, each with a simulator process and a FreeAgent user of its own: at
    the limit the budget sets the pace, not the CPU. The seed style stops when fa-sync is done."""
    dsn = await scratch_database("seed_limit")
    speaking = {**limit.simulator(), "retry_after_scale": limit.SCALE}
    async with (
        sims(customers=backlog, freeagent=limit.simulator()) as stack,
        sims(customers=backlog, freeagent=speaking) as other,
    ):
        profile_id = await register_one(dsn, stack)
        tokens = await other.tokens(["seed"])
        ends = Endpoints(other.freeagent, other.magento, tokens["seed"][0])
        stop = asyncio.Event()
        seed = asyncio.create_task(seed_export(ends, retry_scale=1 / limit.SCALE, stop=stop))
        try:
            fa = await export(dsn, stack, profile_id, bench_settings(**limit.fa_sync()))
        finally:
            stop.set()
        return fa, await seed


async def at_limit_rows(quick: bool) -> list[Row]:
    windows = QUICK_WINDOWS if quick else round(limit.HOUR / limit.MINUTE)
    backlog = limit.PER_MINUTE * QUICK_WINDOWS if quick else PER_HOUR
    fa, seed = await at_limit(backlog)
    fa_sent, fa_429 = fa.freeagent["requests"], fa.freeagent["count_429"]
    fa_hour = per_hour(fa.created, fa.seconds, fa_sent - fa_429)
    seed_hour = per_hour(seed.created, seed.seconds, seed.requests - seed.throttled)
    fa_per, seed_per = ratio(fa_sent, fa.created), ratio(seed.requests, seed.created)
    span = f"{backlog:,} backlog, {windows} minute windows, 1/{limit.SCALE} time"
    return [
        Row(
            f"seed style at the limit: contacts/hour ({span})",
            f"{ratio(fa_hour, seed_hour):.2f}x",
            ">= 2x",
            f"fa-sync {fa_hour:,.0f}/h ({fa.created:,} in {fa.seconds:.1f} s); seed style "
            f"{seed_hour:,.0f}/h ({seed.created:,} in {seed.seconds:.1f} s, {seed.throttled} x "
            f"429 waited out); per hour: the lesser of that pace and 3,600 requests' worth",
            ratio(fa_hour, seed_hour) >= 2,
        ),
        Row(
            "requests per created contact at the limit (fa-sync / seed style)",
            f"{fa_per:.3f} / {seed_per:.2f}",
            "<= 1.02 / >= 2",
            f"fa-sync {fa_sent:,} requests, {fa_429} x 429; seed style {seed.requests:,} "
            f"requests ({seed.pages:,} list pages, {seed.throttled} x 429)",
            fa_per <= 1.02 and seed_per >= 2,
        ),
    ]


async def measure(quick: bool) -> list[Row]:
    return [await limits_off_row(quick), *await at_limit_rows(quick)]
