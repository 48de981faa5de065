"""Measure 2b: a shop whose FreeAgent account already holds its contacts (moving from another
connector, or a ledger started afresh): what linking them costs in FreeAgent writes.

fa-sync exports the shop once (limits off), the ledger and the contact index are then emptied
as on a new install, a hundredth of the customers change in Magento, and fa-sync exports again.
Every contact is found by its e-mail and linked; only the changed ones need a write. Counted
by the simulator: writes (POST/PUT/DELETE that reached it) against contacts linked.
"""

from __future__ import annotations

import asyncpg

from bench.fasync import bench_settings, export
from bench.ratio import off_settings
from bench.stack import limits_off, register_one, scratch_database, sims
from bench.table import Row, ratio

QUICK = 500


async def _start_afresh(dsn: str) -> None:
    """The ledger, the contact index and the watermarks gone; FreeAgent keeps its contacts."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE contact_entity, freeagent_contact, profile_state")
    finally:
        await conn.close()


async def measure(quick: bool) -> list[Row]:
    customers = QUICK if quick else 10_000
    changed = max(1, customers // 100)
    dsn = await scratch_database("relink")
    settings = bench_settings(**off_settings())
    async with sims(customers=customers, freeagent=limits_off()) as stack:
        profile_id = await register_one(dsn, stack)
        first = await export(dsn, stack, profile_id, settings)
        await _start_afresh(dsn)
        await stack.touch(changed)
        again = await export(dsn, stack, profile_id, settings)
    writes = int(again.freeagent["writes"])
    linked = again.exported
    per_record = ratio(writes, linked)
    return [
        Row(
            f"relinking a shop FreeAgent already holds ({customers:,} customers, "
            f"{changed:,} changed)",
            f"{per_record:.3f}",
            f"<= {1.02 * changed / max(linked, 1):.3f}",
            f"{writes:,} writes for {linked:,} contacts linked ({again.status}; "
            f"{again.created:,} created); the first export wrote {first.created:,}. "
            "Writes per contact linked; the target is the changed customers' share, 2 % over",
            writes <= 1.02 * changed,
        )
    ]
