"""Dry run: the real export rehearsed, nothing sent, nothing kept; its totals are the real run's."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from daemon.context import RunOptions
from daemon.resources import ClientFactory
from daemon.runner import utcnow
from daemon.settings import Settings
from profiles.freeagent_contact_export.dry_freeagent import DryRunFreeAgent, predicted_refusal
from profiles.freeagent_contact_export.dryrun import DryRunReport, dry_run
from simulators.magento_seed_cases import PLACES, guest_spec
from simulators.stack import Stack

#: What a run writes, but the shared rate budget and the tokens (a dry run's reads are real).
KEPT_TABLES = (
    "contact_entity", "freeagent_contact", "profile_run", "profile", "profile_state",
    "profile_breaker",
)  # fmt: skip
#: The run counts a dry run must predict.
COUNTED = ("created", "updated", "linked", "unchanged", "skipped", "failed", "retrying")


async def _rehearse(
    pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, stack: Stack
) -> DryRunReport:
    return await dry_run(
        pool=pool, settings=settings, resources=factory, profile_id=stack.profile_id,
        options=RunOptions(full=True), clock=utcnow,
    )  # fmt: skip


async def _database(pool: asyncpg.Pool) -> list[Any]:
    """Ledger, index, runs, watermarks, breaker."""
    return [
        [dict(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        for table in KEPT_TABLES
    ]


def _person(first: str, last: str, email: str, city: str, **extra: Any) -> dict[str, Any]:
    address = {
        "firstname": first, "lastname": last, "street": ["1 High Street"], "city": city,
        "postcode": "LS1 1AA", "country_id": "GB", "telephone": "0113 000000",
        "default_billing": True, "default_shipping": True,
    }  # fmt: skip
    return {"firstname": first, "lastname": last, "email": email, "addresses": [address], **extra}


async def test_dry_run_totals_equal_the_real_runs_and_nothing_is_kept(
    pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, stack: Stack, run_profile
) -> None:
    """On a world that does not change in between, the dry run's totals are the real run's."""
    magento = stack.magento
    mover = magento.add_customer(**_person("Lena", "Mover", "lena@example.co.uk", "Leeds"))
    stranger = magento.add_customer(**_person("Ada", "Same", "ada@example.co.uk", "Bath"))
    await run_profile(stack.profile_id)
    # The world changes: one customer moves, two websites get one new e-mail, a customer
    # who is already a FreeAgent contact registers, one e-mail is no address at all.
    magento.update_customer(
        mover["id"], addresses=[_person("Lena", "Mover", "x", "York")["addresses"][0]]
    )
    magento.add_customer(**_person("Tomas", "Novak", "shared@example.cz", "Brno", website_id=1))
    magento.add_customer(**_person("Tomas", "Novak", "shared@example.cz", "Brno", website_id=2))
    stack.freeagent.add_contact(
        {"first_name": "Old", "last_name": "Client", "email": "old.client@example.com"}
    )
    magento.add_customer(**_person("Old", "Client", "old.client@example.com", "Hull"))
    magento.add_raw_customer(_person("Not", "Anemail", "not an email", "Hull", website_id=1))
    magento.update_customer(stranger["id"], dob="1980-01-01")  # not on the contact
    magento.add_guest_order(**guest_spec("shared@example.cz", PLACES[0], "Tomas", "Novak"))
    # Stale configuration data: a warning for both runs' messages (the live user is fine).
    stale = {"user": {"email": "old@example.com", "permission_level": 2}}
    await pool.execute("UPDATE freeagent_client SET config_data = $1", stale)
    before = await _database(pool)
    stack.freeagent.reset_counters()

    dry = await _rehearse(pool, settings, factory, stack)

    assert stack.freeagent.write_count() == 0
    assert await _database(pool) == before
    real = await run_profile(stack.profile_id, full=True)
    assert {k: dry.totals[k] for k in COUNTED} == {k: getattr(real.counts, k) for k in COUNTED}
    assert dry.status == str(real.status)
    counts = {k: dry.totals[k] for k in ("created", "updated", "linked", "failed")}
    assert counts == {"created": 1, "updated": 2, "linked": 2, "failed": 1}
    assert dry.totals["unchanged"] == 1  # saved in Magento, nothing FreeAgent holds changed
    by_key = {r.source_key: r for r in dry.records}
    assert any("permission level 2" in m for m in dry.messages)
    assert dry.messages == [f"{m['level']}: {m['message']}" for m in real.counts.messages
                            if "entity_id" not in m]  # fmt: skip
    moved = by_key[f"customer:{mover['id']}"]
    assert moved.action == "update" and "town: Leeds → York" in moved.detail


def test_only_certain_refusals_are_predicted() -> None:
    """The dry run fails a record only when FreeAgent certainly refuses it."""
    named = {"first_name": "A", "last_name": "B"}
    assert predicted_refusal({**named, "email": "no address"}, {})
    assert predicted_refusal({**named, "locale": "fr_FR"}, {})
    assert predicted_refusal({"first_name": "A"}, {})
    # Unusual but possibly accepted: left to FreeAgent, and to the real run.
    assert predicted_refusal({**named, "email": "jane@localhost"}, {}) is None


def test_a_client_method_not_known_to_read_is_refused() -> None:
    """A write added to the real client later can never slip through a dry run."""
    client = DryRunFreeAgent(real=object())
    with pytest.raises(AttributeError, match="not known to be read-only"):
        _ = client.merge_contacts
