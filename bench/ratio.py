"""Measure 1: fa-sync's export against the bare client, limits off; PostgreSQL round trips.

Each side gets a simulator process of its own with the same store (a fresh FreeAgent each, so
both create every contact): the bare client first, then fa-sync (in this process, as
`fa-sync contact export` runs it, timed from claim to outcome). Both run in this process, on
one event loop (uvloop, like fa-sync's own processes: daemon/loop.py), so the ratio compares the
clients and not their loops.
"""

from __future__ import annotations

from bench.bare import Endpoints, bare_export
from bench.cpu import cores, measured
from bench.fasync import Export, bench_settings, export
from bench.stack import OFF_HOUR, OFF_MINUTE, limits_off, register_one, scratch_database, sims
from bench.table import Row, ratio

QUICK = 500


def off_settings() -> dict[str, float]:
    """fa-sync told the same windows as the simulator (limits off)."""
    return {
        "rate_minute_window": OFF_MINUTE,
        "rate_hour_window": OFF_HOUR,
        "rate_latency_allowance": OFF_MINUTE / 10,
    }


#: fa-sync's export by store size, measured once per run and shared by the measures.
_OFF: dict[int, Export] = {}


async def fa_sync_off(customers: int, name: str) -> Export:
    """fa-sync exporting `customers` with limits off, on a database and simulator of its own
    (once per size and run: bench/seed.py compares against the same export)."""
    if customers not in _OFF:
        _OFF[customers] = await _fa_sync_off(customers, name)
    return _OFF[customers]


async def _fa_sync_off(customers: int, name: str) -> Export:
    dsn = await scratch_database(name)
    async with sims(customers=customers, freeagent=limits_off()) as stack:
        profile_id = await register_one(dsn, stack)
        return await export(dsn, stack, profile_id, bench_settings(**off_settings()))


async def measure(quick: bool) -> list[Row]:
    customers = QUICK if quick else 10_000
    async with sims(customers=customers, freeagent=limits_off()) as stack:
        tokens = await stack.tokens(["bare"])
        with measured() as bare_cpu:
            bare = await bare_export(Endpoints(stack.freeagent, stack.magento, tokens["bare"][0]))
    fa = await fa_sync_off(customers, "ratio")
    trips = fa.queries + fa.prepares
    fa_per_record = fa.cpu.machine / max(fa.exported, 1)
    bare_per_record = bare_cpu.machine / max(bare.created, 1)
    per_contact = ratio(trips, fa.created)
    # What the cores allow fa-sync if its own process cost what the bare client's does:
    # PostgreSQL, the simulators and the kernel's share of each record, as measured, stay.
    rest = (fa.cpu.machine - fa.cpu.own) / max(fa.exported, 1)
    bare_own = bare_cpu.own / max(bare.created, 1)
    ceiling = ratio(cores(), rest + bare_own)
    return [
        Row(
            f"bare-client ratio ({customers:,} customers, limits off)",
            f"{ratio(fa.rate, bare.rate):.2f}x",
            ">= 0.5x",
            f"fa-sync {fa.rate:,.0f}/s ({fa.exported:,} in {fa.seconds:.1f} s, {fa.status}); "
            f"bare {bare.rate:,.0f}/s ({bare.created:,} in {bare.seconds:.1f} s)",
            ratio(fa.rate, bare.rate) >= 0.5,
        ),
        Row(
            "CPU per exported record (fa-sync / bare client, machine-wide)",
            f"{ratio(fa_per_record, bare_per_record):.1f}x",
            "",
            f"fa-sync {fa.cpu.per(fa.exported)}; bare {bare_cpu.per(bare.created)} "
            "(machine: PostgreSQL, simulators and all share the cores); "
            f"fa-sync's {fa.cpu.split(fa.exported)}; bare's {bare_cpu.split(bare.created)}",
        ),
        Row(
            "ceiling: fa-sync's process as cheap as the bare client's",
            f"{ratio(ceiling, bare.rate):.2f}x",
            "",
            f"{cores()} cores / ({1000 * rest:.2f} ms of PostgreSQL, simulators and kernel "
            f"+ {1000 * bare_own:.2f} ms own) per record = {ceiling:,.0f}/s; "
            f"bare {bare.rate:,.0f}/s",
        ),
        Row(
            "PostgreSQL round trips per created contact",
            f"{per_contact:.1f}",
            "<= 3",
            f"{trips:,} round trips ({fa.queries:,} statements + {fa.prepares:,} prepares) / "
            f"{fa.created:,} created (asyncpg query logger)",
            per_contact <= 3,
        ),
    ]
