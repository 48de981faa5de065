"""Hostile Magento data through the whole collect -> export path, on real PostgreSQL.

Bad records never stop a profile and are never lost or bent silently: each one is exported,
or its ledger row says why not.
"""

from __future__ import annotations

import itertools
import unicodedata
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.fakes import FakeNow
from tests.secretkeys import sealing_box
from tests.strategies import DECOY_COMPANY, DECOY_FIRST, DECOY_LAST, hostile_customers

EXPORTED = ("created", "updated", "linked", "unchanged")
FUTURE = "2099-01-01 00:00:00"
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
    now = FakeNow()
    async with simulators(freeagent=FreeAgentState(wall_clock=now), magento=magento) as s:
        stack = await register(pool, s, secrets=sealing_box(), profile=f"hostile{n}")
        decoy_url = s.freeagent.add_contact(dict(DECOY))
        decoy_before = _contact(stack, decoy_url)
        for _ in range(3):
            outcome = await run_profile(stack.profile_id, clock=now)
            assert outcome.status != "error", outcome.error
            if not await _waiting(pool, stack):
                break
            # Customers of one identity (no e-mail, same name) create one after the other:
            # the later ones wait, with a message, until the first create has settled.
            now.advance(3600)
        await _every_record_accounted_for(pool, stack)
        rows = await _rows(pool, stack)
        for customer in good:
            row = rows[f"customer:{customer['id']}"]
            assert row["status"] == "created", row["last_error"]
            assert _contact(stack, row["freeagent_url"])["email"] == customer["email"]
        assert all(row["freeagent_url"] != decoy_url for row in rows.values())
        assert _contact(stack, decoy_url) == decoy_before


def _as_held(email: Any) -> str | None:
    """The e-mail fa-sync must send: Magento's, trimmed, without control/invisible characters.

    A lone surrogate served as raw UTF-8 is invalid bytes on the wire, which arrive as U+FFFD
    (what PHP's JSON_INVALID_UTF8_SUBSTITUTE sends too): either form compares equal here."""
    if not isinstance(email, str):
        return None
    kept = "".join(c for c in email if unicodedata.category(c) not in ("Cc", "Cs", "Cf"))
    return kept.strip() or None


def _same_email(sent: str, held: str) -> bool:
    def comparable(text: str) -> str:
        return text.replace("\ufffd", "").strip().lower()

    return comparable(sent) == comparable(held)


def _contact(stack: Stack, url: str) -> dict[str, Any]:
    return next(c for c in stack.freeagent.contacts_list() if c["url"] == url)


async def _rows(pool: asyncpg.Pool, stack: Stack) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM contact_entity WHERE profile_id = $1", stack.profile_id)
    return {r["source_key"]: dict(r) for r in rows}


async def _waiting(pool: asyncpg.Pool, stack: Stack) -> bool:
    """Rows released for a later run (waiting for another row's create), each with a reason."""
    rows = [
        r for r in (await _rows(pool, stack)).values() if r["status"] in ("pending", "creating")
    ]
    assert all((r["last_error"] or {}).get("message") for r in rows), rows
    return bool(rows)


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
                assert _same_email(contact.get("email") or "", email), (contact, email)
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


# --- targeted -----------------------------------------------------------------------------


@pytest.fixture
def magento_state() -> MagentoState:
    """A small store: these tests add the customers they are about."""
    return MagentoState.seeded(customers=3, guest_orders=0)


def _address(**fields: Any) -> dict[str, Any]:
    return {
        "firstname": "Ann",
        "lastname": "Lee",
        "street": ["1 High St"],
        "city": "Leeds",
        "postcode": "LS1 1AA",
        "country_id": "GB",
        "default_billing": True,
        **fields,
    }


async def _row(pool: asyncpg.Pool, customer: dict[str, Any]) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )
    assert row is not None, customer
    return dict(row)


async def test_nul_in_a_name_is_removed_noted_and_the_profile_goes_on(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any
) -> None:
    """One NUL is cleaned at collect and noted on the row; later customers still export."""
    nul = stack.magento.add_customer(email="nul@example.com", firstname="Nul", lastname="Smi\x00th")
    outcome = await run_profile(stack.profile_id)
    assert outcome.status != "error", outcome.error
    row = await _row(pool, nul)
    assert row["status"] == "created"
    assert row["source_data"]["lastname"] == "Smith"
    assert row["metadata"]["cleaned"] == [{"field": "lastname", "change": "removed 1 NUL"}]
    assert _contact(stack, row["freeagent_url"])["last_name"] == "Smith"
    assert any("removed 1 NUL" in m["message"] for m in outcome.counts.messages)
    later = stack.magento.add_customer(email="later@example.com", firstname="Lat", lastname="Er")
    await run_profile(stack.profile_id)
    assert (await _row(pool, later))["status"] == "created"


async def test_doubtful_emails_are_sent_as_held_never_dropped(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any
) -> None:
    """jane@localhost, a 65-character local part, non-ASCII: sent; FreeAgent's 422 is kept."""
    held = ["a" * 65 + "@example.com", "jöhn@bücher.de"]
    sent = [stack.magento.add_customer(email=e, firstname="Held", lastname="As") for e in held]
    local = stack.magento.add_customer(email="jane@localhost", firstname="Jane", lastname="Local")
    await run_profile(stack.profile_id)
    for customer, email in zip(sent, held, strict=True):
        row = await _row(pool, customer)
        assert row["status"] == "created", row["last_error"]
        assert _contact(stack, row["freeagent_url"])["email"] == email
    row = await _row(pool, local)
    assert row["status"] == "failed"
    assert row["last_error"]["status"] == 422
    assert "Email is invalid" in row["last_error"]["message"]


async def test_customer_without_email_is_created_never_linked_by_name(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any
) -> None:
    """No e-mail + a company or name an existing contact has: a new contact, the other untouched."""
    decoy_url = stack.freeagent.add_contact(dict(DECOY))
    decoy = _contact(stack, decoy_url)
    company = stack.magento.add_raw_customer(
        {"firstname": "Jo", "lastname": "Bloggs", "website_id": 1, "store_id": 1,
         "addresses": [_address(id=901, company=DECOY_COMPANY)]}
    )  # fmt: skip
    person = stack.magento.add_raw_customer(
        {"firstname": DECOY_FIRST, "lastname": DECOY_LAST, "email": None,
         "addresses": [_address(id=902, firstname=DECOY_FIRST, lastname=DECOY_LAST)]}
    )  # fmt: skip
    outcome = await run_profile(stack.profile_id)
    assert outcome.status != "error", outcome.error
    for customer in (company, person):
        row = await _row(pool, customer)
        assert row["status"] == "created", row["last_error"]
        assert row["freeagent_url"] != decoy_url
    assert _contact(stack, decoy_url) == decoy


async def test_future_dated_customer_does_not_hide_later_changes(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any
) -> None:
    """An updated_at in 2099 leaves the watermark at now; the next incremental run sees edits."""
    stack.magento.add_customer(
        email="future@example.com",
        firstname="Fu",
        lastname="Ture",
        updated_at=FUTURE,
    )
    first = await run_profile(stack.profile_id)
    mark = await pool.fetchval(
        "SELECT magento_watermark FROM profile_state WHERE profile_id = $1", stack.profile_id
    )
    assert mark.year < 2099
    assert any("in the future" in m["message"] for m in first.counts.messages)
    edited = next(c for c in stack.magento.customers.values() if c["updated_at"] != FUTURE)
    stack.magento.update_customer(edited["id"], lastname="Edited")
    await run_profile(stack.profile_id)
    row = await _row(pool, edited)
    assert row["source_data"]["lastname"] == "Edited"
    assert _contact(stack, row["freeagent_url"])["last_name"] == "Edited"


async def test_a_watermark_already_pinned_ahead_is_healed(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any
) -> None:
    """A watermark left in the future by an older version makes the next collect a full one."""
    await run_profile(stack.profile_id)
    await pool.execute(
        "UPDATE profile_state SET magento_watermark = '2099-01-01' WHERE profile_id = $1",
        stack.profile_id,
    )
    edited = next(iter(stack.magento.customers.values()))
    stack.magento.update_customer(edited["id"], lastname="Healed")
    await run_profile(stack.profile_id)
    assert (await _row(pool, edited))["source_data"]["lastname"] == "Healed"
    mark = await pool.fetchval(
        "SELECT magento_watermark FROM profile_state WHERE profile_id = $1", stack.profile_id
    )
    assert mark.year < 2099


async def test_a_record_that_crashes_the_mapping_fails_alone(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception for one record fails that record with its type; others export."""
    from profiles.freeagent_contact_export import export

    real = export.build_contact_payload

    def explode(buyer: Any, *args: Any) -> Any:
        if buyer.last_name == "Boom":
            raise RuntimeError("mapping bug")
        return real(buyer, *args)

    monkeypatch.setattr(export, "build_contact_payload", explode)
    boom = stack.magento.add_customer(email="boom@example.com", firstname="Big", lastname="Boom")
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "warning", outcome.error
    row = await _row(pool, boom)
    assert row["status"] == "failed" and row["attempts"] == 1
    assert row["last_error"]["message"] == "internal error: RuntimeError: mapping bug"
    assert outcome.counts.created == len(stack.magento.customers) - 1


async def test_a_record_postgresql_refuses_is_stored_as_skipped_with_the_reason(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should cleaning miss something, the refused record is skipped with why; the rest go on."""
    from profiles.freeagent_contact_export import collect

    monkeypatch.setattr(collect, "clean_record", lambda value: (value, []), raising=False)
    bad = stack.magento.add_customer(email="bad@example.com", firstname="B", lastname="A\x00d")
    outcome = await run_profile(stack.profile_id)
    assert outcome.status != "error", outcome.error
    row = await _row(pool, bad)
    assert row["status"] == "skipped"
    assert "not storable" in row["last_error"]["reason"]
    assert outcome.counts.created == len(stack.magento.customers) - 1


async def test_values_cut_or_left_out_are_noted_on_the_row(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any
) -> None:
    """A name cut to 255 characters and an unknown country are listed in metadata.adjusted."""
    long = stack.magento.add_customer(
        email="long@example.com", firstname="Long", lastname="X" * 300,
        addresses=[_address(country_id="ZZ")],
    )  # fmt: skip
    await run_profile(stack.profile_id)
    row = await _row(pool, long)
    assert row["status"] == "created"
    assert row["metadata"]["adjusted"] == [
        {"field": "last_name", "change": "cut from 300 to 255 characters"},
        {"field": "country", "change": "country_id 'ZZ' is not a known country: left out"},
    ]
