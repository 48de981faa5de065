"""FA_SYNC_CONTACT_SWEEP_HOURS: how often a run's index refresh sweeps out contacts FreeAgent no
longer has (the daemon's setting reaches the export's contact index)."""

from __future__ import annotations

import asyncpg
import pytest

from daemon.settings import Settings
from simulators.magento import MagentoState
from simulators.stack import Stack


@pytest.fixture
def magento_state() -> MagentoState:
    return MagentoState.seeded(customers=3, guest_orders=0)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A sweep at most every hour, not every 24."""
    return settings.model_copy(update={"contact_sweep_hours": 1.0})


async def test_a_run_sweeps_the_index_as_often_as_the_setting_says(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Two hours after the last sweep (due under 1 h, not under the 24 h default), the next
    run with work refreshes the index as a sweep: the contact deleted in FreeAgent leaves the
    index, and only it."""
    assert (await run_profile(stack.profile_id)).status == "complete"
    urls = {r["url"] for r in await pool.fetch("SELECT url FROM freeagent_contact")}
    assert len(urls) == 3
    gone = sorted(urls)[0]
    stack.freeagent.delete_contact(int(gone.rsplit("/", 1)[1]))
    await pool.execute("UPDATE freeagent_contact_sweep SET swept_at = swept_at - interval '2h'")
    # Another customer changes, so the run has work and refreshes the index (an idle run
    # asks FreeAgent nothing).
    key = await pool.fetchval(
        "SELECT source_key FROM contact_entity WHERE freeagent_url <> $1 LIMIT 1", gone
    )
    stack.magento.update_customer(int(key.split(":")[1]), lastname="Changed")
    assert (await run_profile(stack.profile_id)).status == "complete"
    left = {r["url"] for r in await pool.fetch("SELECT url FROM freeagent_contact")}
    assert left == urls - {gone}
