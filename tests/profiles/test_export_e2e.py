"""End to end: Magento simulator -> fa-sync -> FreeAgent simulator, on real PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from daemon.secretbox import SecretBox
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.fakes import FakeNow
from tests.secretkeys import sealing_box


async def _ledger(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM contact_entity ORDER BY id")]


def _contacts_by_email(stack: Stack) -> Counter[str]:
    return Counter(c["email"].lower() for c in stack.freeagent.contacts_list() if c.get("email"))


async def _assert_exported_once(pool: asyncpg.Pool, stack: Stack) -> list[dict[str, Any]]:
    """Every exportable ledger row points at a live contact; no e-mail has two contacts."""
    rows = await _ledger(pool)
    contacts = {c["url"]: c for c in stack.freeagent.contacts_list()}
    exportable = [r for r in rows if r["status"] != "skipped"]
    assert exportable, "nothing was exported"
    for row in exportable:
        assert row["status"] in ("created", "updated", "linked", "unchanged"), row
        assert row["freeagent_url"] in contacts, row
    by_email = _contacts_by_email(stack)
    assert max(by_email.values()) == 1, [e for e, n in by_email.items() if n > 1]
    assert {r["email"].lower() for r in exportable} == set(by_email)
    return rows


def _customer(magento: MagentoState, predicate: Any) -> dict[str, Any]:
    """The first customer matching predicate whose e-mail no other customer has (customers
    sharing an e-mail share a contact, and which of them writes it first varies)."""
    emails = Counter(c["email"].lower() for c in magento.customers.values())
    return next(
        c for c in magento.customers.values() if predicate(c) and emails[c["email"].lower()] == 1
    )


def _plain_person(c: dict[str, Any]) -> bool:
    """An ordinary named customer (not one of the awkward seeds)."""
    first, last = c.get("firstname", ""), c.get("lastname", "")
    return first.isascii() and first.isalpha() and last.isascii() and last.isalpha()


async def test_profile_exports_every_customer_once(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Every seeded customer ends as exactly one FreeAgent contact; ledger and history agree."""
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None
    rows = await _assert_exported_once(pool, stack)
    run = await pool.fetchrow("SELECT * FROM profile_run WHERE id = $1", outcome.run_id)
    assert run["status"] in ("complete", "warning")
    assert run["created"] == len(stack.freeagent.contacts_list())
    assert run["collected"] == len(rows)
    assert run["finished_at"] is not None


async def test_contact_fields_are_mapped_from_the_customer(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Names, e-mail, billing address and country name reach FreeAgent as the reference says."""
    customer = _customer(
        stack.magento,
        lambda c: (
            any(
                a.get("default_billing") and a.get("country_id") == "GB" and a.get("city")
                for a in c.get("addresses", [])
            )
            and _plain_person(c)
        ),
    )
    billing = next(a for a in customer["addresses"] if a.get("default_billing"))
    await run_profile(stack.profile_id)
    url = await pool.fetchval(
        "SELECT freeagent_url FROM contact_entity WHERE source_key = $1",
        f"customer:{customer['id']}",
    )
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == url)
    assert contact["first_name"] == customer["firstname"].strip()
    assert contact["last_name"] == customer["lastname"].strip()
    assert contact["email"] == customer["email"].strip()  # as held: FreeAgent validates it
    assert contact["address1"] == billing["street"][0].strip()
    assert contact["town"] == billing["city"].strip()
    assert contact["postcode"] == billing["postcode"].strip()
    assert contact["country"] == "United Kingdom"


async def test_existing_contact_with_same_email_is_linked_not_duplicated(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A FreeAgent contact that already has the customer's e-mail is linked and updated."""
    customer = _customer(stack.magento, lambda c: _plain_person(c) and c.get("addresses"))
    existing = stack.freeagent.add_contact(
        {"first_name": "Old", "last_name": "Name", "email": customer["email"].upper()}
    )
    await run_profile(stack.profile_id)
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )
    assert row["freeagent_url"] == existing
    assert _contacts_by_email(stack)[customer["email"].lower()] == 1
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == existing)
    assert contact["first_name"] == customer["firstname"].strip()


async def test_second_run_over_unchanged_customers_sends_no_writes(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Unchanged customers send no request that writes."""
    await run_profile(stack.profile_id)
    stack.freeagent.reset_counters()
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None
    assert stack.freeagent.write_count() == 0
    assert outcome.counts.created == outcome.counts.updated == 0


async def test_full_pass_over_unchanged_customers_sends_no_writes(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Even a full re-collect sends nothing when payloads equal what FreeAgent accepted."""
    await run_profile(stack.profile_id)
    stack.freeagent.reset_counters()
    await run_profile(stack.profile_id, full=True)
    assert stack.freeagent.write_count() == 0


async def test_changed_customer_is_updated_with_put(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A customer changed in Magento is sent again as a PUT to its stored contact URL."""
    await run_profile(stack.profile_id)
    customer = _customer(stack.magento, _plain_person)
    url = await pool.fetchval(
        "SELECT freeagent_url FROM contact_entity WHERE source_key = $1",
        f"customer:{customer['id']}",
    )
    stack.magento.update_customer(customer["id"], lastname="Renamed")
    stack.freeagent.reset_counters()
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.updated == 1 and outcome.counts.created == 0
    writes = [(r.method, r.path) for r in stack.freeagent.requests if r.method in ("POST", "PUT")]
    assert writes == [("PUT", "/v2/contacts/" + url.rsplit("/", 1)[1])]
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == url)
    assert contact["last_name"] == "Renamed"


@pytest.fixture
def now() -> FakeNow:
    """fa-sync's and FreeAgent's wall clock, moved past settle windows by hand."""
    return FakeNow()


@pytest.fixture
def faulty_freeagent(now: FakeNow) -> FreeAgentState:
    state = FreeAgentState(error_rate=0.15, seed=3, wall_clock=now)
    state.inject_429(8, retry_after=1)
    return state


async def test_429_burst_and_5xx_faults_still_export_everyone(
    pool: asyncpg.Pool,
    faulty_freeagent: FreeAgentState,
    magento_state: MagentoState,
    run_profile,
    now: FakeNow,
) -> None:
    """Rate limiting and server errors delay the export; they lose and duplicate nothing."""
    from simulators.stack import register, simulators

    magento_state.error_rate = 0.1
    async with simulators(freeagent=faulty_freeagent, magento=magento_state) as s:
        stack = await register(pool, s, secrets=sealing_box())
        for _ in range(6):  # rows whose retries ran out, or whose creates settle, go next run
            await run_profile(stack.profile_id, clock=now)
            now.advance(3600)
            left = await pool.fetchval(
                "SELECT count(*) FROM contact_entity WHERE status IN ('pending', 'creating')"
            )
            if left == 0:
                break
        assert faulty_freeagent.count_429 >= 8
        await _assert_exported_once(pool, stack)


@pytest.fixture
def dropping_freeagent(now: FakeNow) -> FreeAgentState:
    return FreeAgentState(drop_after_create_rate=0.3, seed=5, wall_clock=now)


async def test_creates_whose_answer_is_lost_are_not_duplicated(
    pool: asyncpg.Pool,
    dropping_freeagent: FreeAgentState,
    magento_state: MagentoState,
    run_profile,
    now: FakeNow,
) -> None:
    """A create stored by FreeAgent whose 201 never arrived is reconciled, not repeated."""
    from simulators.stack import register, simulators

    async with simulators(freeagent=dropping_freeagent, magento=magento_state) as s:
        stack = await register(pool, s, secrets=sealing_box())
        await run_profile(stack.profile_id, clock=now)
        assert any(r.dropped for r in dropping_freeagent.requests)
        now.advance(3600)  # past the settle window: looked up, adopted, never re-sent
        await run_profile(stack.profile_id, clock=now)
        await _assert_exported_once(pool, stack)


async def test_customer_without_name_or_company_is_skipped_with_reason(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Nothing FreeAgent could accept is sent; the row says why."""
    nameless = stack.magento.add_customer(email="nobody@example.com", firstname=" ", lastname=" ")
    await run_profile(stack.profile_id)
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{nameless['id']}"
    )
    assert row["status"] == "skipped"
    assert "name" in row["last_error"]["reason"]
    assert "nobody@example.com" not in _contacts_by_email(stack)


async def test_import_links_existing_contacts_and_creates_none(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Import links customers to FreeAgent contacts by e-mail and never creates one."""
    customer = _customer(stack.magento, _plain_person)
    url = stack.freeagent.add_contact(
        {"organisation_name": "Existing Ltd", "email": customer["email"]}
    )
    outcome = await run_profile(stack.profile_id, import_only=True)
    assert outcome.counts.linked == 1
    assert len(stack.freeagent.contacts_list()) == 1
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )
    assert row["freeagent_url"] == url


async def test_update_behaviour_never_creates(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """api_behaviour=update skips customers without a FreeAgent contact."""
    await pool.execute("UPDATE profile SET api_behaviour = 'update'")
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.created == 0
    assert stack.freeagent.contacts_list() == []


async def test_create_behaviour_leaves_existing_contacts_alone(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """api_behaviour=create links an existing contact without changing it."""
    customer = _customer(stack.magento, _plain_person)
    url = stack.freeagent.add_contact(
        {"first_name": "Keep", "last_name": "Me", "email": customer["email"]}
    )
    await pool.execute("UPDATE profile SET api_behaviour = 'create'")
    await run_profile(stack.profile_id)
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == url)
    assert contact["first_name"] == "Keep"


async def test_rejected_record_fails_with_freeagents_words_and_others_continue(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A 422 lands on the ledger row as FreeAgent's own message, at once; the rest is exported."""
    bad = _customer(stack.magento, _plain_person)
    stack.freeagent.rejected_emails.add(bad["email"].lower())
    outcome = await run_profile(stack.profile_id)
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{bad['id']}"
    )
    assert row["status"] == "failed"
    assert row["attempts"] == 1  # validation errors are not retried blindly
    assert "Email is invalid" in row["last_error"]["message"]
    assert row["last_error"]["status"] == 422
    assert outcome.status == "warning" and outcome.counts.failed == 1
    assert outcome.counts.created == len(stack.freeagent.contacts_list())


async def test_long_names_are_truncated_not_rejected(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Strings over FreeAgent's limits are cut by the mapping, so the contact is accepted."""
    long = stack.magento.add_customer(
        email="long@example.com", firstname="Long", lastname="X" * 300
    )
    await run_profile(stack.profile_id)
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{long['id']}"
    )
    assert row["status"] == "created", row["last_error"]


async def test_failed_rows_are_listed_and_requeued(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Dead letters stay on the ledger with their history until `queue retry` re-queues them."""
    from daemon.db.queries import QUERIES

    bad = _customer(stack.magento, _plain_person)
    stack.freeagent.rejected_emails.add(bad["email"].lower())
    await run_profile(stack.profile_id)
    failed = await pool.fetch(QUERIES["entity_list"], None, "failed", 100)
    assert [r["source_key"] for r in failed] == [f"customer:{bad['id']}"]
    assert failed[0]["attempt_history"][-1]["error"]["status"] == 422
    stack.freeagent.rejected_emails.clear()
    requeued = await pool.fetch(QUERIES["entity_retry"], None, "failed", None)
    assert len(requeued) == 1
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.created == 1 and outcome.counts.failed == 0


async def test_field_removed_in_magento_is_cleared_in_freeagent(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A managed field the customer no longer has is blanked, not left stale."""
    customer = stack.magento.add_customer(
        email="clear.me@example.com",
        firstname="Clara",
        lastname="Clear",
        addresses=[
            {
                "firstname": "Clara",
                "lastname": "Clear",
                "company": "Clear Co",
                "street": ["1 Road"],
                "city": "Leeds",
                "postcode": "LS1 1AA",
                "country_id": "GB",
                "telephone": "0113 000",
                "default_billing": True,
            }
        ],
    )
    await run_profile(stack.profile_id)
    url = await pool.fetchval(
        "SELECT freeagent_url FROM contact_entity WHERE source_key = $1",
        f"customer:{customer['id']}",
    )
    address = dict(stack.magento.customers[customer["id"]]["addresses"][0])
    address.pop("company")
    address.pop("telephone")
    stack.magento.update_customer(customer["id"], addresses=[address])
    await run_profile(stack.profile_id)
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == url)
    assert "organisation_name" not in contact
    assert "phone_number" not in contact
    assert contact["first_name"] == "Clara"


@pytest.mark.parametrize(
    ("country_id", "spelling"),
    [
        ("CZ", "Czech Republic"),  # FreeAgent's EU list, not "Czechia" (reference addendum)
        ("KR", "South Korea"),  # not ISO's "Korea, Republic of"
        ("VN", "Vietnam"),  # not "Viet Nam"
        ("TR", "Turkey"),  # not "Türkiye"
        ("RU", "Russia"),  # not "Russian Federation"
        ("IR", "Iran"),  # not "Iran, Islamic Republic of"
    ],
)
async def test_czech_customer_is_exported_with_freeagents_spelling(
    pool: asyncpg.Pool, stack: Stack, run_profile, country_id: str, spelling: str
) -> None:
    """A customer in CZ is created with "Czech Republic", the spelling of FreeAgent's list
    (reference addendum), and one outside the EU with the common English name; the strict
    simulator refuses "Czechia" and ISO's formal names with 422."""
    address = {
        "firstname": "Jana", "lastname": "Novak", "street": ["Vodickova 1"], "city": "Praha",
        "postcode": "110 00", "country_id": country_id, "default_billing": True,
    }  # fmt: skip
    customer = stack.magento.add_customer(
        email="jana.novak@example.cz", firstname="Jana", lastname="Novak", addresses=[address]
    )
    await run_profile(stack.profile_id)
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )
    assert row["status"] == "created", row["last_error"]
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == row["freeagent_url"])
    assert contact["country"] == spelling


async def test_create_answered_in_xml_is_recorded_not_repeated(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """FreeAgent has answered XML despite Accept JSON ([F579]): a create so answered is stored
    once, its URL taken from Location, and later runs do not create it again."""
    await run_profile(stack.profile_id)
    stack.freeagent.faults.xml_responses, stack.freeagent.faults.xml_methods = (
        1,
        frozenset({"POST"}),
    )
    customer = stack.magento.add_customer(email="xml@example.com", firstname="Ex", lastname="Ml")
    await run_profile(stack.profile_id)
    await run_profile(stack.profile_id, full=True)
    assert stack.freeagent.faults.xml_responses == 0
    assert _contacts_by_email(stack)["xml@example.com"] == 1
    row = await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )
    assert row["freeagent_url"] in {c["url"] for c in stack.freeagent.contacts_list()}


async def test_reads_answered_in_xml_are_retried_and_the_run_completes(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """XML despite Accept JSON ([F579]) to users/me and the contact listing is transient: each
    read is asked again, and the run exports every customer as usual."""
    stack.freeagent.faults.xml_responses, stack.freeagent.faults.xml_methods = (
        3,
        frozenset({"GET"}),
    )
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None
    assert stack.freeagent.faults.xml_responses == 0
    await _assert_exported_once(pool, stack)


async def _set_settings(pool: asyncpg.Pool, settings: dict[str, Any]) -> None:
    await pool.execute("UPDATE profile SET settings = $1", settings)


async def test_deleted_customer_hides_its_contact_when_enabled(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Delete Customers Externally: a customer gone from Magento has its contact hidden."""
    await _set_settings(pool, {"events": {"hide_deleted_customers": True}})
    customer = _customer(stack.magento, _plain_person)
    await run_profile(stack.profile_id)
    url = await pool.fetchval(
        "SELECT freeagent_url FROM contact_entity WHERE source_key = $1",
        f"customer:{customer['id']}",
    )
    stack.magento.delete_customer(customer["id"])
    await run_profile(stack.profile_id, full=True)
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == url)
    assert contact["status"] == "Hidden"
    others = [c for c in stack.freeagent.contacts_list() if c["url"] != url]
    assert all(c["status"] == "Active" for c in others)


async def test_new_customers_are_not_queued_when_the_event_is_off(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Add New Customer To Export Queue = no: only customers already on the ledger update."""
    await run_profile(stack.profile_id)
    await _set_settings(pool, {"events": {"queue_new_customers": False}})
    newcomer = stack.magento.add_customer(
        email="new@example.com", firstname="New", lastname="Comer"
    )
    await run_profile(stack.profile_id)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM contact_entity WHERE source_key = $1",
            f"customer:{newcomer['id']}",
        )
        == 0
    )
    assert "new@example.com" not in _contacts_by_email(stack)


async def test_store_restriction_exports_only_chosen_websites(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """With store restriction on, customers of other websites are not collected."""
    await _set_settings(
        pool, {"store": {"restrict": True, "website_ids": [1]}, "include_guests": False}
    )
    await run_profile(stack.profile_id)
    websites = {r["website_id"] for r in await pool.fetch("SELECT website_id FROM contact_entity")}
    assert websites == {1}
    expected = {c["id"] for c in stack.magento.customers.values() if c.get("website_id") == 1}
    collected = {
        r["magento_customer_id"]
        for r in await pool.fetch("SELECT magento_customer_id FROM contact_entity")
    }
    assert collected == expected


async def test_store_mapping_sets_the_invoice_locale(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Store Mapping: a customer of the French store view gets FreeAgent locale fr."""
    french = stack.magento.add_customer(
        email="marie@example.fr", firstname="Marie", lastname="Curie", store_id=2, website_id=2
    )
    await _set_settings(pool, {"store": {"locales": {"2": "fr_FR"}}, "contact": {"locale": "en"}})
    await run_profile(stack.profile_id)
    by_email = {c.get("email"): c for c in stack.freeagent.contacts_list()}
    assert by_email["marie@example.fr"]["locale"] == "fr"
    assert by_email[_customer(stack.magento, _plain_person)["email"].lower()]["locale"] == "en"
    assert french["store_id"] == 2


async def test_guest_buyers_become_one_contact_per_email(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Guest checkouts are exported once per e-mail; a guest who is also a customer shares one."""
    await run_profile(stack.profile_id)
    guests = {
        o["customer_email"].lower()
        for o in stack.magento.orders.values()
        if o.get("customer_is_guest")
    }
    by_email = _contacts_by_email(stack)
    assert guests and all(by_email[e] == 1 for e in guests)
    shared = await pool.fetch(
        "SELECT * FROM contact_entity WHERE source_key LIKE 'guest:%' AND status = 'linked'"
    )
    customer_emails = {c["email"].lower() for c in stack.magento.customers.values()}
    assert all(r["email"] in customer_emails for r in shared)


async def test_replace_mode_collects_every_customer_each_run(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """collect_mode=replace re-reads all customers; unchanged ones still send nothing."""
    await pool.execute("UPDATE profile SET collect_mode = 'replace'")
    first = await run_profile(stack.profile_id)
    stack.freeagent.reset_counters()
    second = await run_profile(stack.profile_id)
    assert second.counts.collected == first.counts.collected
    assert stack.freeagent.write_count() == 0


async def test_customers_sharing_an_email_share_the_oldest_ones_contact(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """One e-mail on two websites: one contact, from the older customer; the other links."""
    emails = Counter(c["email"].lower() for c in stack.magento.customers.values())
    email = next(e for e, n in emails.items() if n > 1)
    first, second = sorted(
        (c for c in stack.magento.customers.values() if c["email"].lower() == email),
        key=lambda c: c["id"],
    )
    await run_profile(stack.profile_id)
    rows = {r["source_key"]: r for r in await pool.fetch("SELECT * FROM contact_entity")}
    owner, sharer = rows[f"customer:{first['id']}"], rows[f"customer:{second['id']}"]
    assert owner["status"] == "created"
    assert sharer["status"] == "linked" and sharer["freeagent_url"] == owner["freeagent_url"]
    assert sharer["metadata"]["shared_with"] == f"customer:{first['id']}"
    (contact,) = [c for c in stack.freeagent.contacts_list() if c.get("email") == email]
    first_billing = next(a for a in first["addresses"] if a.get("default_billing"))
    assert contact["town"] == first_billing["city"].strip()


async def test_magento_with_bearer_disabled_works_over_oauth1_signatures(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Magento 2.4.4+ refuses integration tokens as Bearer by default; signed requests work."""
    from simulators.magento_state import DEMO_CONSUMER_KEY

    creds = stack.magento.oauth_consumers[DEMO_CONSUMER_KEY]
    stack.magento.bearer_enabled = False
    await pool.execute(
        """UPDATE magento_connection SET access_token = $1, consumer_key = $2,
                  consumer_secret = $3, access_token_secret = $4""",
        sealing_box().seal(creds.access_token),
        DEMO_CONSUMER_KEY,
        sealing_box().seal(creds.consumer_secret),
        sealing_box().seal(creds.token_secret),
    )
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None
    await _assert_exported_once(pool, stack)
    assert all(r.status == 200 for r in stack.magento.requests)


async def test_magento_bearer_refused_is_a_clear_run_error(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A refused integration token fails the run with Magento's words, nothing half-done."""
    stack.magento.bearer_enabled = False
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "error"
    assert "isn't authorized" in (outcome.error or "")
    assert "standalone Bearer" in (outcome.error or "")
    assert stack.freeagent.contacts_list() == []


async def test_freeagent_user_without_contact_permission_is_refused(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A FreeAgent user below permission level 3 cannot see e-mails: the export refuses to run."""
    stack.freeagent.permission_level = 2
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "error"
    assert "permission level 2" in (outcome.error or "")
    assert stack.freeagent.write_count() == 0


#: users/me without a permission_level at all.
NO_LEVEL = object()


def _users_me_level(level: object) -> Middleware:
    """FreeAgent answering users/me with this permission_level (NO_LEVEL: none)."""

    @web.middleware
    async def rewrite(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path != "/v2/users/me" or not isinstance(response, web.Response):
            return response
        user = json.loads(response.body or b"{}")["user"]  # type: ignore[arg-type]
        user.pop("permission_level")
        if level is not NO_LEVEL:
            user["permission_level"] = level
        return web.json_response({"user": user})

    return rewrite


@pytest.mark.parametrize(
    ("level", "refused"),
    [
        ("2", "permission level 2"),  # a number sent as text is still read, and is too low
        (NO_LEVEL, "no readable permission level (users/me says nothing)"),
        ("full", "no readable permission level (users/me says 'full')"),
        (None, "no readable permission level (users/me says None)"),
        ("8", None),  # text, and high enough: the export runs
    ],
)
async def test_freeagent_permission_level_as_text_or_missing_is_read_or_refused(
    pool: asyncpg.Pool,
    freeagent_state: FreeAgentState,
    magento_state: MagentoState,
    secret_box: SecretBox,
    run_profile: Any,
    level: object,
    refused: str | None,
) -> None:
    """The gate reads a level sent as text, and refuses a level it cannot read: it never lets
    an export through because the level's type was not the one documented."""
    middleware = [_users_me_level(level)]
    async with simulators(
        freeagent=freeagent_state, magento=magento_state, freeagent_middlewares=middleware
    ) as running:
        stack = await register(pool, running, secrets=secret_box)
        outcome = await run_profile(stack.profile_id)
    if refused is None:
        assert outcome.error is None
        assert stack.freeagent.write_count() > 0
        return
    assert outcome.status == "error"
    assert refused in (outcome.error or "")
    assert stack.freeagent.write_count() == 0


async def test_linking_contacts_that_already_hold_our_values_writes_nothing(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A shop whose FreeAgent account already has its contacts, as fa-sync would write them
    (moving from another connector, or a ledger started afresh): every contact is linked, and
    only the one whose customer changed since is written."""
    first = await run_profile(stack.profile_id)
    assert first.counts.created > 2
    await pool.execute("DELETE FROM contact_entity")
    await pool.execute("DELETE FROM freeagent_contact")
    await pool.execute("DELETE FROM profile_state")
    changed = _customer(stack.magento, _plain_person)
    stack.magento.update_customer(changed["id"], lastname="Changedname")
    stack.freeagent.reset_counters()
    again = await run_profile(stack.profile_id)
    assert again.error is None
    assert again.counts.created == 0
    assert again.counts.updated == 1
    assert again.counts.linked == first.counts.created + first.counts.linked - 1
    assert stack.freeagent.write_count() == 1
    row = await pool.fetchrow(
        "SELECT status::text, freeagent_url FROM contact_entity WHERE source_key = $1",
        f"customer:{changed['id']}",
    )
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == row["freeagent_url"])
    assert row["status"] == "updated" and contact["last_name"] == "Changedname"
    # the next run over unchanged data writes nothing either
    stack.freeagent.reset_counters()
    third = await run_profile(stack.profile_id, full=True)
    assert stack.freeagent.write_count() == 0 and third.counts.updated == 0
