"""Who is the same contact, end to end: Magento simulator -> fa-sync -> FreeAgent simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.context import RunOptions
from daemon.errors import ConfigError
from daemon.resources import ClientFactory
from daemon.runner import utcnow
from daemon.screens import COUNT_LABELS, counts_text, gather_status
from daemon.settings import Settings
from profiles.freeagent_contact_export import review
from profiles.freeagent_contact_export.dryrun import dry_run
from simulators.magento import MagentoState
from simulators.magento_seed_cases import PLACES, address_spec, guest_spec
from simulators.stack import Stack
from tests.clirun import fa_sync
from tests.fakes import FakeNow

MAIL = "family@example.com"
LONDON, PARIS = PLACES[0], PLACES[6]


@pytest.fixture
def magento_state() -> MagentoState:
    """An empty shop: each test seeds exactly the customers it is about."""
    return MagentoState.seeded(customers=0, guest_orders=0)


def _customer(stack: Stack, first: str, last: str, website: int, **kw: Any) -> dict[str, Any]:
    place = LONDON if website == 1 else PARIS
    address = address_spec(place, first, last, f"{len(first)} {last} Street")
    return stack.magento.add_customer(
        email=kw.pop("email", MAIL), firstname=first, lastname=last, addresses=[address],
        website_id=website, store_id=website, **kw,
    )  # fmt: skip


async def _rows(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    return {r["source_key"]: dict(r) for r in await pool.fetch("SELECT * FROM contact_entity")}


def _contact(stack: Stack, url: str) -> dict[str, Any]:
    return next(c for c in stack.freeagent.contacts_list() if c["url"] == url)


async def _settings(pool: asyncpg.Pool, settings: dict[str, Any]) -> None:
    await pool.execute("UPDATE profile SET settings = $1", settings)


async def test_two_people_with_one_email_get_two_contacts(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """The issue's case: Tomáš on one website, Siobhán on another, one e-mail: two contacts,
    and neither one's name, address or country overwrites the other's."""
    tomas = _customer(stack, "Tomáš", "Novák", 1)
    siobhan = _customer(stack, "Siobhán", "Murphy", 2)
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.created == 2
    rows = await _rows(pool)
    t, s = rows[f"customer:{tomas['id']}"], rows[f"customer:{siobhan['id']}"]
    assert t["freeagent_url"] != s["freeagent_url"]
    mine, hers = _contact(stack, t["freeagent_url"]), _contact(stack, s["freeagent_url"])
    assert (mine["first_name"], mine["country"]) == ("Tomáš", "United Kingdom")
    assert (hers["first_name"], hers["country"]) == ("Siobhán", "France")


async def test_one_person_with_two_accounts_gets_one_contact(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Two accounts with one e-mail and the same names (any case) share one contact; the
    older account writes it, the other links without writing."""
    first = _customer(stack, "Tomáš", "Novák", 1)
    second = _customer(stack, "TOMÁŠ", "novák", 2)
    outcome = await run_profile(stack.profile_id)
    assert (outcome.counts.created, outcome.counts.linked) == (1, 1)
    rows = await _rows(pool)
    owner, sharer = rows[f"customer:{first['id']}"], rows[f"customer:{second['id']}"]
    assert sharer["freeagent_url"] == owner["freeagent_url"]
    assert sharer["metadata"]["shared_with"] == f"customer:{first['id']}"
    assert len(stack.freeagent.contacts_list()) == 1


async def test_guest_joins_the_account_on_its_website(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A guest checkout with an account's e-mail on the same website is that account's
    contact, even under another name."""
    account = _customer(stack, "Tomáš", "Novák", 1)
    stack.magento.add_guest_order(**guest_spec(MAIL.upper(), LONDON, "Tom", "Novak"))
    await run_profile(stack.profile_id)
    rows = await _rows(pool)
    guest = rows[f"guest:{MAIL}"]
    assert guest["website_id"] == 1
    assert guest["status"] == "linked"
    assert guest["freeagent_url"] == rows[f"customer:{account['id']}"]["freeagent_url"]
    assert len(stack.freeagent.contacts_list()) == 1


async def test_several_contacts_with_the_email_wait_for_review_then_link(
    pool: asyncpg.Pool, stack: Stack, run_profile, database_dsn: str, tmp_path: Path
) -> None:
    """Two FreeAgent contacts (one Hidden) carry the e-mail: the row waits as needs_review
    with both, nothing is written; `match link` picks one and the next export updates it."""
    customer = _customer(stack, "Tomáš", "Novák", 1)
    first = stack.freeagent.add_contact({"first_name": "T", "last_name": "N", "email": MAIL})
    hidden = stack.freeagent.add_contact(
        {"first_name": "Tom", "last_name": "N", "email": MAIL.upper(), "status": "Hidden"}
    )
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "warning" and outcome.counts.needs_review == 1
    assert stack.freeagent.write_count() == 0
    row = (await _rows(pool))[f"customer:{customer['id']}"]
    assert row["status"] == "needs_review" and row["freeagent_url"] is None
    assert {c["url"] for c in row["metadata"]["review"]["candidates"]} == {first, hidden}
    run = await pool.fetchrow("SELECT * FROM profile_run WHERE id = $1", outcome.run_id)
    assert run["needs_review"] == 1
    again = await run_profile(stack.profile_id)  # not claimed again: still nothing written
    assert again.counts.needs_review == 0 and stack.freeagent.write_count() == 0
    (status,) = await gather_status(pool, FakeNow()())
    assert status.queue.get("needs_review") == 1
    assert "1 review" in counts_text(run, COUNT_LABELS)

    with pytest.raises(ConfigError, match="is not a FreeAgent contact"):  # not the client's
        await review.link(pool, row["id"], "https://elsewhere.test/v2/contacts/1", by="ops",
                          now=FakeNow()())  # fmt: skip
    env = {"COLUMNS": "80"}
    code, out, err = await fa_sync("match", "list", dsn=database_dsn, cwd=tmp_path, env=env)
    assert code == 0, err
    assert f"row {row['id']}" in out and MAIL in out and hidden in out.replace("\n", "")
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out, err = await fa_sync(
        "match", "link", str(row["id"]), hidden, "--by", "ops", dsn=database_dsn, cwd=tmp_path
    )
    assert code == 0, err
    stack.freeagent.reset_counters()
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.updated == 1 and outcome.counts.created == 0
    writes = [(r.method, r.path) for r in stack.freeagent.requests if r.method in ("POST", "PUT")]
    assert writes == [("PUT", "/v2/contacts/" + hidden.rsplit("/", 1)[1])]
    assert _contact(stack, hidden)["first_name"] == "Tomáš"
    assert _contact(stack, first)["first_name"] == "T"
    row = (await _rows(pool))[f"customer:{customer['id']}"]
    decision = row["metadata"]["review"]
    assert (decision["decision"], decision["url"], decision["by"]) == ("link", hidden, "ops")
    assert any(h.get("decision") == "link" for h in row["attempt_history"])


async def test_changing_identity_keeps_links_and_match_create_splits(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Under `identity: email` Tomáš and Siobhán share one contact. Switching the live profile
    to `account` orphans and duplicates nothing: linked rows keep their contact and nothing
    is written; `match create` then gives Siobhán her own contact, Tomáš's is untouched."""
    await _settings(pool, {"identity": "email"})
    tomas = _customer(stack, "Tomáš", "Novák", 1)
    siobhan = _customer(stack, "Siobhán", "Murphy", 2)
    await run_profile(stack.profile_id)
    rows = await _rows(pool)
    shared = rows[f"customer:{tomas['id']}"]["freeagent_url"]
    assert rows[f"customer:{siobhan['id']}"]["freeagent_url"] == shared
    await _settings(pool, {"identity": "account"})
    stack.freeagent.reset_counters()
    await run_profile(stack.profile_id, full=True)
    assert stack.freeagent.write_count() == 0
    assert len(stack.freeagent.contacts_list()) == 1
    row = (await _rows(pool))[f"customer:{siobhan['id']}"]
    await review.create(pool, row["id"], by="ops", now=FakeNow()())
    await run_profile(stack.profile_id)
    rows = await _rows(pool)
    own = rows[f"customer:{siobhan['id']}"]["freeagent_url"]
    assert own != shared and _contact(stack, own)["first_name"] == "Siobhán"
    assert _contact(stack, shared)["first_name"] == "Tomáš"
    assert rows[f"customer:{siobhan['id']}"]["metadata"]["review"]["previous_url"] == shared


async def test_email_per_website_separates_websites(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """`identity: email_per_website`: one person on two websites is two contacts."""
    await _settings(pool, {"identity": "email_per_website"})
    _customer(stack, "Tomáš", "Novák", 1)
    _customer(stack, "Tomáš", "Novák", 2)
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.created == 2


async def test_customer_without_email_and_a_namesake_waits_when_unmatched_is_review(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """No e-mail is never linked by name; with `unmatched: review` a same-name contact makes
    the row wait for a person instead of creating a possible duplicate."""
    await _settings(pool, {"unmatched": "review"})
    namesake = stack.freeagent.add_contact({"first_name": "Ann", "last_name": "Lee"})
    raw = stack.magento.add_raw_customer(
        {"firstname": "Ann", "lastname": "Lee", "website_id": 1, "store_id": 1, "addresses": []}
    )
    outcome = await run_profile(stack.profile_id)
    row = (await _rows(pool))[f"customer:{raw['id']}"]
    assert row["status"] == "needs_review", row
    assert [c["url"] for c in row["metadata"]["review"]["candidates"]] == [namesake]
    assert outcome.counts.needs_review == 1 and stack.freeagent.write_count() == 0


async def test_import_reports_ambiguous_matches_instead_of_guessing(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """`contact import` links an e-mail only one contact carries; several: needs_review."""
    ambiguous = _customer(stack, "Tomáš", "Novák", 1)
    clear = _customer(stack, "Ann", "Lee", 1, email="ann@example.com")
    for n in (1, 2):
        stack.freeagent.add_contact({"first_name": "T", "last_name": str(n), "email": MAIL})
    only = stack.freeagent.add_contact({"organisation_name": "Lee", "email": "ann@example.com"})
    outcome = await run_profile(stack.profile_id, import_only=True)
    assert (outcome.counts.linked, outcome.counts.needs_review) == (1, 1)
    rows = await _rows(pool)
    assert rows[f"customer:{clear['id']}"]["freeagent_url"] == only
    row = rows[f"customer:{ambiguous['id']}"]
    assert row["status"] == "needs_review" and row["freeagent_url"] is None
    assert len(row["metadata"]["review"]["candidates"]) == 2


async def test_dry_run_counts_review_and_sharing_as_the_real_run_does(
    pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, stack: Stack, run_profile
) -> None:
    """The dry run rehearses the export's own matching: needs review, shared link, create;
    its totals are the real run's, and it writes nothing."""
    ambiguous = _customer(stack, "Tomáš", "Novák", 1)
    for n in (1, 2):
        stack.freeagent.add_contact({"first_name": "T", "last_name": str(n), "email": MAIL})
    _customer(stack, "Ann", "Lee", 1, email="ann@example.com")
    sharer = _customer(stack, "Ann", "Lee", 2, email="ann@example.com")
    stack.freeagent.reset_counters()
    report = await dry_run(
        pool=pool, settings=settings, resources=factory, profile_id=stack.profile_id,
        options=RunOptions(), clock=utcnow,
    )  # fmt: skip
    assert stack.freeagent.write_count() == 0
    actions = {r.source_key: r.action for r in report.records}
    assert actions[f"customer:{ambiguous['id']}"] == "needs review"
    assert actions[f"customer:{sharer['id']}"] == "link"
    outcome = await run_profile(stack.profile_id)
    real = outcome.counts.as_dict()
    for key in ("created", "linked", "needs_review"):
        assert report.totals[key] == real[key], key
    assert (real["created"], real["linked"], real["needs_review"]) == (1, 1, 1)
