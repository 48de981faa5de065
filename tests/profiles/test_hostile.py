"""Hostile Magento data through the whole collect -> export path, on real PostgreSQL.

Bad records never stop a profile and are never lost or bent silently: each one is exported,
or its ledger row says why not.
"""

from __future__ import annotations

import itertools
import unicodedata
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.strategies import DECOY_COMPANY, DECOY_FIRST, DECOY_LAST, hostile_customers

EXPORTED = ("created", "updated", "linked", "unchanged")
_profiles = itertools.count(1)

#: What an unrelated FreeAgent contact looks like; hostile customers share its names.
DECOY = {
    "organisation_name": DECOY_COMPANY,
    "first_name": DECOY_FIRST,
    "last_name": DECOY_LAST,
    "address1": "9 Elm Road",
}


def _good(n: int, i: int) -> dict[str, Any]:
    return {
        "email": f"good{n}.{i}@example.com",
        "firstname": "Good",
        "lastname": f"Customer{i}",
        "addresses": [
            {
                "firstname": "Good",
                "lastname": f"Customer{i}",
                "street": ["1 High Street"],
                "city": "Leeds",
                "postcode": "LS1 1AA",
                "country_id": "GB",
                "default_billing": True,
            }
        ],
    }


async def _world(pool: asyncpg.Pool, run_profile: Any, records: list[dict[str, Any]]) -> None:
    """A fresh pair of simulators and profile: hostile customers, two good ones, a decoy."""
    n = next(_profiles)
    magento = MagentoState(escape_unicode=n % 2 == 0, keep_nulls=n % 3 == 0)
    for record in records:
        magento.add_raw_customer(record)
    good = [magento.add_customer(**_good(n, i)) for i in range(2)]
    async with simulators(freeagent=FreeAgentState(), magento=magento) as s:
        stack = await register(pool, s, profile=f"hostile{n}")
        decoy_url = s.freeagent.add_contact(dict(DECOY))
        decoy_before = _contact(stack, decoy_url)
        outcome = await run_profile(stack.profile_id)
        assert outcome.status != "error", outcome.error
        await _every_record_accounted_for(pool, stack)
        rows = await _rows(pool, stack)
        for customer in good:
            row = rows[f"customer:{customer['id']}"]
            assert row["status"] == "created", row["last_error"]
            assert _contact(stack, row["freeagent_url"])["email"] == customer["email"]
        assert all(row["freeagent_url"] != decoy_url for row in rows.values())
        assert _contact(stack, decoy_url) == decoy_before


def _as_held(email: Any) -> str | None:
    """The e-mail fa-sync must send: Magento's, trimmed, without control/invisible characters."""
    if not isinstance(email, str):
        return None
    kept = "".join(c for c in email if unicodedata.category(c) not in ("Cc", "Cs", "Cf"))
    return kept.strip() or None


def _contact(stack: Stack, url: str) -> dict[str, Any]:
    return next(c for c in stack.freeagent.contacts_list() if c["url"] == url)


async def _rows(pool: asyncpg.Pool, stack: Stack) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM contact_entity WHERE profile_id = $1", stack.profile_id)
    return {r["source_key"]: dict(r) for r in rows}


async def _every_record_accounted_for(pool: asyncpg.Pool, stack: Stack) -> None:
    """Every Magento customer is exported with its e-mail, or failed/skipped with a message."""
    rows = await _rows(pool, stack)
    contacts = {c["url"]: c for c in stack.freeagent.contacts_list()}
    for customer in stack.magento.customers.values():
        row = rows[f"customer:{customer['id']}"]
        if row["status"] in EXPORTED:
            contact = contacts[row["freeagent_url"]]
            email = _as_held(customer.get("email"))
            if email is not None:
                assert (contact.get("email") or "").lower() == email.lower()
        else:
            assert row["status"] in ("failed", "skipped"), row
            error = row["last_error"] or {}
            assert error.get("message") or error.get("reason"), row


@settings(
    max_examples=18,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=st.lists(hostile_customers(), min_size=1, max_size=6))
async def test_hostile_customers_never_stop_the_run_nor_vanish(
    pool: asyncpg.Pool, run_profile: Any, records: list[dict[str, Any]]
) -> None:
    """Any hostile customers: the run is not an error, each is exported or has a reason."""
    await _world(pool, run_profile, records)
