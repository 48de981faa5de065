"""The FreeAgent contact index: incremental refreshes, and the periodic sweep that drops
contacts FreeAgent no longer has (updated_since never reports a deletion, reference §6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from profiles.freeagent_contact_export.resolve import ContactIndex
from simulators.magento import MagentoState
from simulators.stack import Stack


@pytest.fixture
def magento_state() -> MagentoState:
    """No customers: these tests read FreeAgent only."""
    return MagentoState.seeded(customers=0, guest_orders=0)


async def _indexed(pool: asyncpg.Pool) -> set[str]:
    return {r["url"] for r in await pool.fetch("SELECT url FROM freeagent_contact")}


def _contact_id(url: str) -> int:
    return int(url.rsplit("/", 1)[1])


class _SkippingListing:
    """The real client, except that its listings skip some contacts, as page-number paging
    does when a contact on an earlier page is deleted mid-scan."""

    def __init__(self, real: Any, skipped: set[str]) -> None:
        self.real = real
        self.skipped = skipped

    async def iter_contacts(self, **options: Any) -> AsyncIterator[dict[str, Any]]:
        async for contact in self.real.iter_contacts(**options):
            if contact["url"] not in self.skipped:
                yield contact

    async def get_contact(self, url: str) -> dict[str, Any] | None:
        contact: dict[str, Any] | None = await self.real.get_contact(url)
        return contact


async def test_a_due_sweep_drops_contacts_deleted_in_freeagent(
    pool: asyncpg.Pool, stack: Stack, factory: Any
) -> None:
    """Incremental refreshes cannot see a deletion; the next refresh after the sweep interval
    is a sweep, and drops the deleted contact (and only it)."""
    urls = [stack.freeagent.add_contact({"organisation_name": f"Firm {i}"}) for i in range(3)]
    fa = await factory.freeagent(stack.client_id, profile_name="demo")
    index = ContactIndex(pool=pool, client_id=stack.client_id, freeagent=fa)
    await index.refresh()  # an empty index: read in full, a sweep
    assert await _indexed(pool) == set(urls)
    stack.freeagent.delete_contact(_contact_id(urls[0]))
    await index.refresh()  # incremental: updated_since says nothing of the deletion
    assert urls[0] in await _indexed(pool)
    await pool.execute("UPDATE freeagent_contact_sweep SET swept_at = swept_at - interval '25h'")
    await index.refresh()
    assert await _indexed(pool) == set(urls[1:])
    swept = await pool.fetchval(
        "SELECT swept_at > now() - interval '1h' FROM freeagent_contact_sweep"
    )
    assert swept


async def test_a_sweep_keeps_a_contact_its_listing_skipped(
    pool: asyncpg.Pool, stack: Stack, factory: Any
) -> None:
    """Not being listed is not proof of deletion: each unlisted contact is looked up, kept
    when FreeAgent still has it, dropped when it answers 404."""
    kept, deleted, listed = (
        stack.freeagent.add_contact({"organisation_name": name}) for name in ("Kept", "Gone", "On")
    )
    real = await factory.freeagent(stack.client_id, profile_name="demo")
    await ContactIndex(pool=pool, client_id=stack.client_id, freeagent=real).refresh()
    stack.freeagent.delete_contact(_contact_id(deleted))
    skipping = _SkippingListing(real, skipped={kept})
    stack.freeagent.reset_counters()
    await ContactIndex(pool=pool, client_id=stack.client_id, freeagent=skipping).refresh(full=True)
    assert await _indexed(pool) == {kept, listed}
    looked_up = sorted(r.path for r in stack.freeagent.requests if r.path != "/v2/contacts")
    assert looked_up == sorted(f"/v2/contacts/{_contact_id(u)}" for u in (kept, deleted))
