"""End to end: a FreeAgent contact deleted there after fa-sync wrote it (404, or 410 Gone).

Magento simulator -> fa-sync -> FreeAgent simulator, on real PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from simulators.magento import MagentoState
from simulators.stack import Stack


@pytest.fixture
def magento_state() -> MagentoState:
    """A small shop: these tests follow one customer."""
    return MagentoState.seeded(customers=3, guest_orders=0)


async def _row(pool: asyncpg.Pool, customer: dict[str, Any]) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )


async def _indexed(pool: asyncpg.Pool) -> set[str]:
    return {r["url"] for r in await pool.fetch("SELECT url FROM freeagent_contact")}


async def _exported_then_deleted_in_freeagent(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any, gone_status: int
) -> tuple[dict[str, Any], str]:
    """One customer exported, then its contact deleted by a person in FreeAgent, which from
    then on answers gone_status for it."""
    customer = stack.magento.add_customer(
        email="gina.gone@example.com", firstname="Gina", lastname="Gone"
    )
    await run_profile(stack.profile_id)
    old = (await _row(pool, customer))["freeagent_url"]
    assert old in await _indexed(pool)
    stack.freeagent.gone_status = gone_status
    stack.freeagent.delete_contact(int(old.rsplit("/", 1)[1]))
    return customer, old


@pytest.mark.parametrize("gone_status", [404, 410])
async def test_a_contact_deleted_in_freeagent_is_created_again(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any, gone_status: int
) -> None:
    """The update of a contact FreeAgent answers 404 or 410 for creates a new one: the row
    records it (metadata.replaced), and the dead URL leaves the contact index."""
    customer, old = await _exported_then_deleted_in_freeagent(pool, stack, run_profile, gone_status)
    stack.magento.update_customer(customer["id"], lastname="Back")
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.created == 1 and outcome.counts.failed == 0
    row = await _row(pool, customer)
    assert row["status"] == "created", row["last_error"]
    assert row["metadata"]["replaced"] == old
    new = row["freeagent_url"]
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == new)
    assert new != old and contact["last_name"] == "Back"
    indexed = await _indexed(pool)
    assert old not in indexed and new in indexed


@pytest.mark.parametrize("gone_status", [404, 410])
async def test_update_behaviour_does_not_recreate_a_deleted_contact(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any, gone_status: int
) -> None:
    """api_behaviour update never creates: a contact deleted in FreeAgent is not made again;
    the row is skipped saying why, and the dead URL leaves the index."""
    customer, old = await _exported_then_deleted_in_freeagent(pool, stack, run_profile, gone_status)
    await pool.execute("UPDATE profile SET api_behaviour = 'update'")
    stack.magento.update_customer(customer["id"], lastname="Back")
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.created == 0
    assert not [c for c in stack.freeagent.contacts_list() if c.get("email") == customer["email"]]
    row = await _row(pool, customer)
    assert row["status"] == "skipped"
    assert "not recreated" in row["last_error"]["reason"]
    assert old not in await _indexed(pool)


@pytest.mark.parametrize("gone_status", [404, 410])
async def test_hiding_the_contact_of_a_deleted_customer_that_is_already_gone(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any, gone_status: int
) -> None:
    """A customer deleted in Magento whose contact FreeAgent no longer has (404 or 410 to the
    hide): the row is closed as removed, saying so, and the contact leaves the index."""
    await pool.execute(
        "UPDATE profile SET settings = $1", {"events": {"hide_deleted_customers": True}}
    )
    customer, old = await _exported_then_deleted_in_freeagent(pool, stack, run_profile, gone_status)
    stack.magento.delete_customer(customer["id"])
    await run_profile(stack.profile_id, full=True)
    row = await _row(pool, customer)
    assert row["status"] == "removed", row["last_error"]
    assert "already gone" in row["metadata"]["removal"]["reason"]
    assert old not in await _indexed(pool)
