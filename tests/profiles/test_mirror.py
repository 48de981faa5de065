"""Mirror and the delete policy: a customer deleted in Magento, and what becomes of its contact."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from daemon.context import RunOptions
from daemon.db.records import EntityStatus, Profile
from daemon.resources import ClientFactory
from daemon.runner import utcnow
from daemon.settings import Settings
from profiles.freeagent_contact_export.config import ContactExportSettings
from profiles.freeagent_contact_export.dryrun import dry_run
from profiles.freeagent_contact_export.removal import (
    decide_removal,
    effective_delete_policy,
    queue_deleted_customer,
)
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack
from tests.profiles.test_export_e2e import _customer, _plain_person

URL = "https://api.example/v2/contacts/1"


@pytest.fixture
def magento_state() -> MagentoState:
    """A small shop: these tests are about one customer at a time."""
    return MagentoState.seeded(customers=10, guest_orders=2)


@pytest.mark.parametrize(
    ("behaviour", "settings", "expected"),
    [
        ("upsert", {}, None),  # not mirror, no old key: deleted customers are not looked for
        ("mirror", {}, "none"),  # mirror alone: rows closed, contacts left alone
        ("mirror", {"delete_policy": "delete"}, "delete"),
        ("mirror", {"events": {"hide_deleted_customers": True}}, "hide"),  # deprecated alias
        ("upsert", {"events": {"hide_deleted_customers": True}}, "hide"),  # as it always did
        # an explicit policy wins over the deprecated key
        ("mirror", {"delete_policy": "none", "events": {"hide_deleted_customers": True}}, "none"),
        ("upsert", {"delete_policy": "delete"}, None),  # delete_policy acts under mirror only
    ],
)
def test_effective_delete_policy(behaviour: str, settings: dict[str, Any], expected: str) -> None:
    """Which policy is in force, from api_behaviour, delete_policy and the deprecated key."""
    cfg = ContactExportSettings.model_validate(settings)
    assert effective_delete_policy(behaviour, cfg) == expected


@pytest.mark.parametrize(
    ("policy", "url", "used_by", "action", "status"),
    [
        ("none", URL, None, "keep", EntityStatus.REMOVED),
        ("hide", URL, None, "hide", EntityStatus.HIDDEN),
        ("delete", URL, None, "delete", EntityStatus.DELETED),
        ("hide", None, None, "keep", EntityStatus.REMOVED),  # never exported: nothing to remove
        ("delete", URL, (7, "guest:a@b"), "keep", EntityStatus.REMOVED),  # shared: never touched
        ("hide", URL, (7, "customer:9"), "keep", EntityStatus.REMOVED),
    ],
)
def test_decide_removal(
    policy: Any, url: str | None, used_by: Any, action: str, status: EntityStatus
) -> None:
    """Each policy's action; a contact another live row uses is kept whatever the policy."""
    removal = decide_removal(policy, url=url, still_used_by=used_by)
    assert (removal.action, removal.status) == (action, status)
    if used_by:
        assert f"ledger row {used_by[0]}" in removal.reason


async def _mirror(pool: asyncpg.Pool, settings: dict[str, Any]) -> None:
    await pool.execute(
        "UPDATE profile SET api_behaviour = 'mirror', settings = $1::jsonb", settings
    )


async def _row(pool: asyncpg.Pool, customer_id: int) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer_id}"
    )
    assert row is not None
    return row


def _writes(state: FreeAgentState) -> list[tuple[str, str, int]]:
    return [
        (r.method, r.path, r.status)
        for r in state.requests
        if r.reached_handler and r.method in {"POST", "PUT", "DELETE"}
    ]


async def test_deleted_customer_with_invoices_is_hidden_and_nothing_else_written(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """delete: FreeAgent refuses (403 seen; any 4xx is handled alike, see the client's tests)
    for a contact with invoices -> Hidden; no other write."""
    refused = stack.freeagent.delete_refused_status
    await _mirror(pool, {"delete_policy": "delete"})
    customer = _customer(stack.magento, _plain_person)
    await run_profile(stack.profile_id)
    url = (await _row(pool, customer["id"]))["freeagent_url"]
    stack.freeagent.invoiced.add(int(url.rsplit("/", 1)[1]))
    stack.magento.delete_customer(customer["id"])
    stack.freeagent.reset_counters()
    outcome = await run_profile(stack.profile_id, full=True)
    assert outcome.error is None
    path = "/v2/contacts/" + url.rsplit("/", 1)[1]
    assert _writes(stack.freeagent) == [("DELETE", path, refused), ("PUT", path, 200)]
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == url)
    assert contact["status"] == "Hidden"
    row = await _row(pool, customer["id"])
    assert row["status"] == "hidden"
    assert "refused to delete" in row["metadata"]["removal"]["reason"]
    assert outcome.counts.removed == 1
    run = await pool.fetchrow("SELECT removed FROM profile_run WHERE id = $1", outcome.run_id)
    assert run["removed"] == 1


async def test_deleted_customer_without_history_is_deleted(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """delete: a contact FreeAgent lets go of is deleted, and leaves the contact index."""
    await _mirror(pool, {"delete_policy": "delete"})
    customer = _customer(stack.magento, _plain_person)
    await run_profile(stack.profile_id)
    url = (await _row(pool, customer["id"]))["freeagent_url"]
    stack.magento.delete_customer(customer["id"])
    await run_profile(stack.profile_id, full=True)
    assert url not in {c["url"] for c in stack.freeagent.contacts_list()}
    assert (await _row(pool, customer["id"]))["status"] == "deleted"
    indexed = await pool.fetchval("SELECT count(*) FROM freeagent_contact WHERE url = $1", url)
    assert indexed == 0


async def test_policy_none_closes_the_row_and_writes_nothing(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """mirror with delete_policy none: the row says removed, FreeAgent is not written."""
    await _mirror(pool, {})
    customer = _customer(stack.magento, _plain_person)
    await run_profile(stack.profile_id)
    stack.magento.delete_customer(customer["id"])
    stack.freeagent.reset_counters()
    await run_profile(stack.profile_id, full=True)
    assert _writes(stack.freeagent) == []
    row = await _row(pool, customer["id"])
    assert row["status"] == "removed"
    assert row["metadata"]["removal"]["policy"] == "none"


async def test_partial_listing_never_removes(pool: asyncpg.Pool, stack: Stack, run_profile) -> None:
    """A full pass that missed customers (total_count says more) judges no deletion."""
    await _mirror(pool, {"delete_policy": "delete"})
    customer = _customer(stack.magento, _plain_person)
    await run_profile(stack.profile_id)
    stack.magento.delete_customer(customer["id"])
    stack.magento.search_omits.add(min(stack.magento.customers))  # listing cut short
    stack.freeagent.reset_counters()
    outcome = await run_profile(stack.profile_id, full=True)
    assert _writes(stack.freeagent) == []
    row = await _row(pool, customer["id"])
    assert row["status"] != "deleted"
    assert not row["metadata"].get("deleted_in_magento")
    assert any("incomplete customer listing" in m["message"] for m in outcome.counts.messages)
    gets = [r.path for r in stack.magento.requests if r.path.startswith("/rest/V1/customers/")]
    assert not [p for p in gets if p.rsplit("/", 1)[1].isdigit()]  # nobody was even asked about


async def test_customer_magento_still_has_is_not_removed(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Absent from a complete listing but GET answers 200: not deleted."""
    await _mirror(pool, {"delete_policy": "hide"})
    customer = _customer(stack.magento, _plain_person)
    await run_profile(stack.profile_id)
    # Restricting the listing to other websites leaves the customer out of a complete pass.
    others = sorted(
        {c.get("website_id") for c in stack.magento.customers.values()}
        - {customer.get("website_id")}
    )
    if not others:
        pytest.skip("seed has one website")
    settings = {"delete_policy": "hide", "store": {"restrict": True, "website_ids": others}}
    await _mirror(pool, settings)
    stack.freeagent.reset_counters()
    await run_profile(stack.profile_id, full=True)
    assert _writes(stack.freeagent) == []
    assert not (await _row(pool, customer["id"]))["metadata"].get("deleted_in_magento")


async def test_shared_contact_is_never_hidden(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Two customers, one e-mail, one contact: deleting one keeps the contact for the other."""
    await _mirror(pool, {"delete_policy": "hide"})
    first = stack.magento.add_customer(email="pair@example.com", firstname="Ann", lastname="Lee")
    second = stack.magento.add_customer(
        email="pair@example.com", firstname="Ann", lastname="Lee", website_id=2
    )
    await run_profile(stack.profile_id)
    url = (await _row(pool, first["id"]))["freeagent_url"]
    assert (await _row(pool, second["id"]))["freeagent_url"] == url
    stack.magento.delete_customer(first["id"])
    stack.freeagent.reset_counters()
    await run_profile(stack.profile_id, full=True)
    assert _writes(stack.freeagent) == []
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == url)
    assert contact["status"] == "Active"
    row = await _row(pool, first["id"])
    assert row["status"] == "removed"
    assert "still used by ledger row" in row["metadata"]["removal"]["reason"]


async def test_dry_run_predicts_the_removal(
    pool: asyncpg.Pool, stack: Stack, run_profile, settings: Settings, factory: ClientFactory
) -> None:
    """The rehearsed run finds the deleted customer and hides its contact, as the real one."""
    await _mirror(pool, {"delete_policy": "hide"})
    customer = _customer(stack.magento, _plain_person)
    await run_profile(stack.profile_id)
    row_id = (await _row(pool, customer["id"]))["id"]
    stack.magento.delete_customer(customer["id"])
    report = await dry_run(
        pool=pool, settings=settings, resources=factory, profile_id=stack.profile_id,
        options=RunOptions(full=True), clock=utcnow,
    )  # fmt: skip
    assert [(r.entity_id, r.action) for r in report.records] == [(row_id, "hide")]
    assert report.totals["removed"] == 1
    assert (await _row(pool, customer["id"]))["status"] == "created"  # nothing kept
    outcome = await run_profile(stack.profile_id, full=True)
    assert outcome.counts.removed == report.totals["removed"]
    assert (await _row(pool, customer["id"]))["status"] == "hidden"


async def test_a_reported_deletion_is_confirmed_then_removed(
    pool: asyncpg.Pool, stack: Stack, run_profile, factory
) -> None:
    """A webhook's deleted customer is queued only once Magento answers 404 for it."""
    await _mirror(pool, {"delete_policy": "hide"})
    gone = _customer(stack.magento, _plain_person)
    alive = _customer(stack.magento, lambda c: _plain_person(c) and c["id"] != gone["id"])
    await run_profile(stack.profile_id)
    stack.magento.delete_customer(gone["id"])
    profile = Profile.from_row(await pool.fetchrow("SELECT * FROM profile"))
    magento = await factory.magento(stack.connection_id)
    assert await queue_deleted_customer(pool, magento, profile, alive["id"]) is None
    row_id = await queue_deleted_customer(pool, magento, profile, gone["id"])
    assert row_id == (await _row(pool, gone["id"]))["id"]
    await run_profile(stack.profile_id, collect=False)
    assert (await _row(pool, gone["id"]))["status"] == "hidden"
    assert (await _row(pool, alive["id"]))["status"] != "hidden"
