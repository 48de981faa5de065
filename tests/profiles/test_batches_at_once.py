"""Two batches export at once (one sending, the next deciding): rows of one e-mail still run
one after the other, oldest first, whichever batch each is in."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from simulators.magento import MagentoState
from simulators.stack import Stack


@pytest.fixture
def magento_state() -> MagentoState:
    state = MagentoState()
    for website in (1, 2):  # one person, two accounts: the second shares the first's contact
        state.add_customer(
            email="ann@example.com", firstname="Ann", lastname="Lee", website_id=website
        )
    state.add_customer(email="bob@example.com", firstname="Bob", lastname="Lee")
    return state


async def test_the_same_person_in_consecutive_batches_shares_one_contact(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Batches of one row: Ann's second account is in the batch after her first, deciding
    while the first is being created. It waits for that create and shares its contact; it
    is not sent to wait out a settle window, and no second contact is made."""
    await pool.execute("UPDATE profile SET batch_size = 1")
    outcome = await asyncio.wait_for(run_profile(stack.profile_id), 60)
    assert outcome.status == "complete", outcome.error
    assert (outcome.counts.created, outcome.counts.linked, outcome.counts.retrying) == (2, 1, 0)
    rows = await pool.fetch("SELECT status::text, email FROM contact_entity ORDER BY id")
    assert [r["status"] for r in rows] == ["created", "linked", "created"]
    posts = [r for r in stack.freeagent.requests if r.method == "POST"]
    assert len(posts) == 2
