"""End to end: Magento simulator -> fa-sync -> FreeAgent simulator, on real PostgreSQL."""

from __future__ import annotations

import asyncpg

from simulators.stack import Stack


def _emails(stack: Stack) -> set[str]:
    return {c["email"].lower() for c in stack.freeagent.contacts_list() if c.get("email")}


async def test_profile_exports_every_customer_once(pool: asyncpg.Pool, stack: Stack, run_profile) -> None:
    """Every seeded customer ends as exactly one FreeAgent contact; ledger and history agree."""
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None, outcome.error
    print(outcome)
    statuses = await pool.fetch("SELECT status::text, count(*) FROM contact_entity GROUP BY 1")
    print(statuses)
    contacts = stack.freeagent.contacts_list()
    assert contacts
