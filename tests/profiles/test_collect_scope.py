"""Collect, end to end: which guest buyers a profile reads, and when a listing may move the
watermark (Magento simulator -> fa-sync -> FreeAgent simulator, on real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from profiles.freeagent_contact_export.collect import guest_record
from profiles.freeagent_contact_export.models import Buyer, MagentoGuestOrder
from simulators.magento import MagentoState
from simulators.stack import Stack


async def _set_settings(pool: asyncpg.Pool, settings: dict[str, Any]) -> None:
    await pool.execute("UPDATE profile SET settings = $1", settings)


async def _ledger(pool: asyncpg.Pool, like: str) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM contact_entity WHERE source_key LIKE $1", like)
    return {r["source_key"]: r for r in rows}


def _messages(outcome: Any) -> list[str]:
    return [m["message"] for m in outcome.counts.messages]


#: The simulator's store views of website 1 (base) and website 2 (eu: fr, de).
WEBSITE_1, WEBSITE_2 = {1}, {2, 3}


def _guest_emails(magento: MagentoState, stores: set[int] | None = None) -> set[str]:
    """E-mails of guest orders placed on these store views (None: any)."""
    return {
        o["customer_email"].lower()
        for o in magento.orders.values()
        if o.get("customer_is_guest") and (stores is None or o["store_id"] in stores)
    }


def _hours_ago(hours: int) -> str:
    """A Magento timestamp (UTC text) this many hours back: after the seed, before now."""
    return (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


# -- the store restriction and guest buyers ---------------------------------------------------


async def test_store_restriction_exports_only_chosen_websites_guests_included(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """With store restriction on, neither customers nor guest buyers of other websites are
    collected: a guest's order store decides its website."""
    stack.magento.add_guest_order(customer_email="uk-guest@example.com", store_id=1)
    stack.magento.add_guest_order(customer_email="fr-guest@example.com", store_id=2)
    stack.magento.add_guest_order(customer_email="de-guest@example.com", store_id=3)
    await _set_settings(
        pool, {"store": {"restrict": True, "website_ids": [2]}, "include_guests": True}
    )
    await run_profile(stack.profile_id)
    websites = {r["website_id"] for r in await pool.fetch("SELECT website_id FROM contact_entity")}
    assert websites == {2}
    expected = {c["id"] for c in stack.magento.customers.values() if c.get("website_id") == 2}
    customers = await _ledger(pool, "customer:%")
    assert {r["magento_customer_id"] for r in customers.values()} == expected
    guests = {r["email"] for r in (await _ledger(pool, "guest:%")).values()}
    assert guests == _guest_emails(stack.magento, WEBSITE_2)
    assert {"fr-guest@example.com", "de-guest@example.com"} <= guests
    assert not guests & _guest_emails(stack.magento, WEBSITE_1)


async def test_restricted_guests_are_skipped_when_store_views_cannot_be_read(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Without the store views no order can be placed in a website: guests are skipped with
    a warning, never exported unfiltered; the chosen website's customers still are."""
    stack.magento.add_guest_order(customer_email="uk-guest@example.com", store_id=1)
    stack.magento.denied_resources.add("Magento_Backend::stores")
    await _set_settings(
        pool,
        {
            "store": {"restrict": True, "website_ids": [2], "locales_from_magento": False},
            "include_guests": True,
        },
    )
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None
    assert await _ledger(pool, "guest:%") == {}
    assert any(m.startswith("guests skipped: Magento's store views") for m in _messages(outcome))
    customers = await _ledger(pool, "customer:%")
    assert customers and {r["website_id"] for r in customers.values()} == {2}


# -- guest e-mails ---------------------------------------------------------------------------


async def test_guest_order_without_customer_email_uses_the_billing_email(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """An order lacking customer_email is keyed and exported by its billing address's e-mail,
    as the export reads it."""
    order = stack.magento.add_guest_order(customer_email="Billing.Only@Example.com")
    del stack.magento.orders[order["entity_id"]]["customer_email"]
    await run_profile(stack.profile_id)
    row = (await _ledger(pool, "guest:billing.only@example.com")).popitem()[1]
    assert row["email"] == "billing.only@example.com"
    assert row["status"] in ("created", "linked")
    emails = {(c.get("email") or "").lower() for c in stack.freeagent.contacts_list()}
    assert "billing.only@example.com" in emails


async def test_guest_order_without_any_email_is_kept_as_skipped(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """An order with neither customer_email nor a billing e-mail is not dropped silently: a
    skipped ledger row keyed by the order says why, and so does the run."""
    order = stack.magento.add_guest_order(customer_email="gone@example.com")
    stored = stack.magento.orders[order["entity_id"]]
    del stored["customer_email"]
    del stored["billing_address"]["email"]
    outcome = await run_profile(stack.profile_id)
    key = f"guest:#order-{order['entity_id']}"
    row = (await _ledger(pool, key))[key]
    assert row["status"] == "skipped"
    assert order["increment_id"] in row["last_error"]["reason"]
    assert "has no e-mail" in row["last_error"]["reason"]
    assert any(order["increment_id"] in m for m in _messages(outcome))
    assert await _ledger(pool, "guest:gone@%") == {}


@pytest.mark.parametrize(
    ("order", "key"),
    [
        # the order's own e-mail wins
        ({"customer_email": "A@x.com", "billing_address": {"email": "b@x.com"}}, "guest:a@x.com"),
        # none on the order: the billing address's
        ({"billing_address": {"email": "B@x.com"}}, "guest:b@x.com"),
        # a checkout placeholder is no address: the billing one, as the export reads it
        ({"customer_email": "-", "billing_address": {"email": "b@x.com"}}, "guest:b@x.com"),
        # neither: kept as skipped, keyed by the order
        ({"customer_email": " ", "billing_address": {}}, "guest:#order-5"),
    ],
)
def test_guest_records_are_keyed_by_the_email_the_export_sends(
    order: dict[str, Any], key: str
) -> None:
    """A guest's key is the e-mail Buyer.from_guest_order reads; without any, the order."""
    entry = guest_record({"entity_id": 5, "increment_id": "000000005", **order})
    assert not isinstance(entry, str) and entry.key == key
    buyer = Buyer.from_guest_order(MagentoGuestOrder.model_validate(entry.data))
    if entry.skip is None:
        assert f"guest:{(buyer.email or '').strip().lower()}" == key
    else:
        assert buyer.email is None and "000000005" in entry.skip


# -- Sales access ------------------------------------------------------------------------------


async def test_missing_sales_access_skips_guests_and_keeps_the_run(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """An integration without the Sales ACL (401 on /V1/orders): customers are collected and
    exported, guests are skipped with a warning naming the grant, watermarks are saved."""
    stack.magento.denied_resources.add("Magento_Sales::actions_view")
    await _set_settings(pool, {"include_guests": True})
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None
    assert any(
        m.startswith("guests skipped: the integration lacks Sales access")
        and "Magento_Sales::actions_view" in m
        for m in _messages(outcome)
    )
    assert await _ledger(pool, "guest:%") == {}
    assert len(await _ledger(pool, "customer:%")) == len(stack.magento.customers)
    state = await pool.fetchrow("SELECT * FROM profile_state WHERE profile_id = $1", 1)
    assert state is not None and state["magento_watermark"] is not None
    assert state["guest_watermark"] is None


# -- listings Magento cuts short ----------------------------------------------------------------


async def test_short_pages_do_not_end_the_customer_listing(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Pages shorter than asked while total_count says more remain: every customer and guest
    buyer is still collected, and the listing counts as complete (the watermark moves)."""
    stack.magento.page_cap = 7
    await pool.execute("UPDATE profile SET collection_size = 25")
    outcome = await run_profile(stack.profile_id)
    customers = await _ledger(pool, "customer:%")
    assert {r["magento_customer_id"] for r in customers.values()} == set(stack.magento.customers)
    guests = {r["email"] for r in (await _ledger(pool, "guest:%")).values()}
    assert guests == _guest_emails(stack.magento)
    assert not [m for m in _messages(outcome) if "watermark not advanced" in m]
    state = await pool.fetchrow("SELECT * FROM profile_state")
    assert state["magento_watermark"] is not None and state["guest_watermark"] is not None


async def test_a_listing_missing_counted_records_keeps_the_watermark(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """An incremental listing that left out a customer Magento counts does not advance the
    watermark (a run warning says so), so the customer is read once it is listed again."""
    await run_profile(stack.profile_id)
    before = await pool.fetchval("SELECT magento_watermark FROM profile_state")
    hidden, later = sorted(stack.magento.customers)[2:4]
    stack.magento.update_customer(hidden, lastname="Renamed", updated_at=_hours_ago(2))
    stack.magento.update_customer(later, lastname="Other", updated_at=_hours_ago(1))
    stack.magento.search_omits.add(hidden)
    outcome = await run_profile(stack.profile_id)
    assert any(m.startswith("customer watermark not advanced") for m in _messages(outcome))
    assert await pool.fetchval("SELECT magento_watermark FROM profile_state") == before
    stack.magento.search_omits.clear()
    await run_profile(stack.profile_id)
    row = (await _ledger(pool, f"customer:{hidden}"))[f"customer:{hidden}"]
    assert row["source_data"]["lastname"] == "Renamed"


async def test_a_guest_listing_missing_counted_orders_keeps_the_guest_watermark(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """The same for guest orders: an order Magento counts but does not list holds the guest
    watermark."""
    await run_profile(stack.profile_id)
    before = await pool.fetchval("SELECT guest_watermark FROM profile_state")
    first = stack.magento.add_guest_order(
        customer_email="hidden@example.com", created_at=_hours_ago(2)
    )
    stack.magento.add_guest_order(customer_email="shown@example.com", created_at=_hours_ago(1))
    stack.magento.order_search_omits.add(first["entity_id"])
    outcome = await run_profile(stack.profile_id)
    assert any(m.startswith("guest watermark not advanced") for m in _messages(outcome))
    assert await pool.fetchval("SELECT guest_watermark FROM profile_state") == before
    stack.magento.order_search_omits.clear()
    await run_profile(stack.profile_id)
    assert await _ledger(pool, "guest:hidden@example.com")
