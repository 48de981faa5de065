"""Linking to a FreeAgent account that already holds contacts: collect -> export, end to end.

The account is drawn against the shop. A customer's e-mail may be on a contact exactly, in
another case, on a Hidden contact, on one holding exactly what fa-sync would send or differing
in a field, or on several contacts; strangers carry a customer's names with no e-mail or
another one. Customers share e-mails (padded, in another case, with invisible characters, on
other websites, under other names), and hostile customers join them. Whatever the draw: a
contact is linked only by e-mail, a stranger is never touched, an ambiguous e-mail waits for a
person, two customers use one contact only on record (`shared_with`), and nothing is written
again while Magento does not change.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from daemon.db.records import ContactEntity
from profiles.freeagent_contact_export.collect import customer_record, guest_record
from profiles.freeagent_contact_export.identity import IdentityMode, Party, identity_of
from profiles.freeagent_contact_export.match import party_of
from profiles.freeagent_contact_export.models import Buyer, ContactOptions, MagentoCustomer, Skipped
from profiles.freeagent_contact_export.payload import build_contact_payload, contact_email
from profiles.freeagent_contact_export.prepared import read_buyer
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.magento_stores import STORE_VIEWS
from simulators.stack import Stack, register, simulators
from tests.fakes import FakeNow
from tests.secretkeys import sealing_box
from tests.strategies import DECOY_COMPANY, DECOY_FIRST, DECOY_LAST, hostile_customers

EXPORTED = ("created", "updated", "linked", "unchanged")
_profiles = itertools.count(1)
#: What the export maps with: every store's Magento locale, as storeConfigs lists them.
_OPTIONS = ContactOptions(derive_locale_from_store={v.id: v.locale for v in STORE_VIEWS if v.id})
_STORE_OF = {1: 1, 2: 2, 3: 4}  #: each website's default store view
#: Format characters a pasted e-mail carries; fa-sync sends the e-mail without them.
_INVISIBLE = ["\u200b", "\u2060", "\ufeff", "\u00ad"]


@dataclass(frozen=True)
class Person:
    """A customer the account is drawn against."""

    first: str
    last: str
    company: str | None
    town: str
    website: int
    form: str  #: how Magento holds the e-mail: plain | padded | mixed


@dataclass(frozen=True)
class Seed:
    """A FreeAgent contact present before the first export, drawn against person `of`."""

    of: int
    kind: str  #: exact | upper | holds | differs | stranger | stranger_mail
    hidden: bool


@dataclass(frozen=True)
class Sharer:
    """Another customer (or a guest buyer) with person `of`'s e-mail in `form`, perhaps
    under other names."""

    of: int
    form: str  #: plain | upper | padded | invisible | none
    names: str  #: same | shouted | other
    website: int


@dataclass(frozen=True)
class World:
    """A shop and the FreeAgent account it is first exported to, under one profile setting."""

    people: list[Person]
    seeds: list[Seed]
    sharers: list[Sharer]
    guests: list[Sharer]
    hostile: list[tuple[int | None, str, dict[str, Any]]]  #: (whose e-mail, form, record)
    identity: str
    unmatched: str
    all_includes_hidden: bool


_websites = st.sampled_from(sorted(_STORE_OF))
_people = st.builds(
    Person,
    first=st.sampled_from(["Ann", "Zoë", DECOY_FIRST]),
    last=st.sampled_from(["Lee", "Müller", DECOY_LAST]),
    company=st.sampled_from([None, DECOY_COMPANY]),
    town=st.sampled_from(["Leeds", "York"]),
    website=_websites,
    form=st.sampled_from(["plain", "padded", "mixed"]),
)
_forms = st.sampled_from(["plain", "upper", "padded", "invisible", "none"])


@st.composite
def worlds(draw: st.DrawFn) -> World:
    people = draw(st.lists(_people, min_size=1, max_size=3))
    who = st.integers(0, len(people) - 1)
    kinds = st.sampled_from(["exact", "upper", "holds", "differs", "stranger", "stranger_mail"])
    seeds = draw(st.lists(st.builds(Seed, who, kinds, st.booleans()), max_size=5))
    names = st.sampled_from(["same", "shouted", "other"])
    sharers = draw(st.lists(st.builds(Sharer, who, _forms, names, _websites), max_size=3))
    # A guest order always has an e-mail (Magento requires one at checkout).
    guest_forms = st.sampled_from(["plain", "upper", "padded", "invisible"])
    guests = draw(st.lists(st.builds(Sharer, who, guest_forms, names, _websites), max_size=2))
    hostile = draw(st.lists(st.tuples(st.none() | who, _forms, hostile_customers()), max_size=2))
    return World(
        people, seeds, sharers, guests, hostile,
        identity=draw(st.sampled_from([m.value for m in IdentityMode])),
        unmatched=draw(st.sampled_from(["create", "review"])),
        all_includes_hidden=draw(st.booleans()),
    )  # fmt: skip


def _email(n: int, i: int, form: str, nth: int = 0) -> str | None:
    """Person i's e-mail as one Magento customer holds it (`nth`: which invisible character)."""
    base = f"person{i}.{n}@example.com"
    held = {
        "plain": base,
        "mixed": base.title(),
        "upper": base.upper(),
        "padded": f" \u00a0{base}\t",
        "invisible": base[:3] + _INVISIBLE[nth % len(_INVISIBLE)] + base[3:],
    }
    return held.get(form)


def _names(person: Person, names: str) -> tuple[str, str]:
    if names == "shouted":
        return person.first.upper(), person.last.upper()
    return ("Other" if names == "other" else person.first), person.last


def _address(person: Person, names: str) -> dict[str, Any]:
    first, last = _names(person, names)
    address = {
        "firstname": first, "lastname": last, "street": ["1 High Street"],
        "city": person.town, "postcode": "LS1 1AA", "country_id": "GB",
    }  # fmt: skip
    return {**address, "company": person.company} if person.company else address


def _customer(person: Person, email: str | None, names: str, website: int) -> dict[str, Any]:
    first, last = _names(person, names)
    return {
        "email": email, "firstname": first, "lastname": last, "website_id": website,
        "store_id": _STORE_OF[website],
        "addresses": [{**_address(person, names), "id": 1, "default_billing": True}],
    }  # fmt: skip


def _guest(person: Person, email: str | None, names: str, website: int) -> dict[str, Any]:
    """add_guest_order()'s arguments: a guest checkout on `website`."""
    first, last = _names(person, names)
    return {
        "customer_email": email, "customer_firstname": first, "customer_lastname": last,
        "store_id": _STORE_OF[website], "billing_address": _address(person, names),
    }  # fmt: skip


def _sent(buyer: Buyer | Skipped) -> dict[str, Any] | None:
    """What fa-sync sends for a buyer (None: skipped)."""
    built = buyer if isinstance(buyer, Skipped) else build_contact_payload(buyer, _OPTIONS)
    return None if isinstance(built, Skipped) else built.to_api()


def _holds(contact: dict[str, Any], sent: dict[str, Any]) -> bool:
    """Whether a contact holds every value sent (FreeAgent omits empty fields)."""
    return all(contact.get(k) == v for k, v in sent.items() if v not in (None, ""))


def _seed(n: int, seed: Seed, person: Person, raw: dict[str, Any]) -> dict[str, Any]:
    """The contact `seed` describes, as someone put it in FreeAgent before fa-sync came."""
    email = _email(n, seed.of, "plain")
    names = {"first_name": person.first, "last_name": person.last}
    held = _sent(Buyer.from_customer(MagentoCustomer.model_validate(raw))) or {}
    kinds: dict[str, dict[str, Any]] = {
        "exact": {**names, "email": email},
        "upper": {"first_name": "Old", "last_name": "Name", "email": str(email).upper()},
        "holds": held,
        "differs": {**held, "town": "Bradford"},
        "stranger": {**names, "organisation_name": person.company, "town": person.town},
        "stranger_mail": {**names, "email": f"someone{seed.of}.{n}@example.org"},
    }
    return {**kinds[seed.kind], **({"status": "Hidden"} if seed.hidden else {})}


def _shop(n: int, world: World) -> tuple[MagentoState, list[dict[str, Any]]]:
    """The shop: each person's customer (oldest first), sharers, guests, hostile customers."""
    magento = MagentoState(escape_unicode=n % 2 == 0, keep_nulls=n % 3 == 0)
    bases = [
        magento.add_raw_customer(_customer(p, _email(n, i, p.form), "same", p.website))
        for i, p in enumerate(world.people)
    ]
    for k, s in enumerate(world.sharers):
        email = _email(n, s.of, s.form, k)
        magento.add_raw_customer(_customer(world.people[s.of], email, s.names, s.website))
    for k, g in enumerate(world.guests):
        email = _email(n, g.of, g.form, k)
        magento.add_guest_order(**_guest(world.people[g.of], email, g.names, g.website))
    for k, (whose, form, record) in enumerate(world.hostile):
        if whose is not None:
            record = {**record, "email": _email(n, whose, form, k)}
        magento.add_raw_customer(record)
    return magento, bases


async def _export(pool: asyncpg.Pool, run_profile: Any, stack: Stack, now: FakeNow) -> None:
    """Up to three runs, the clock moved past any settle window between them."""
    for _ in range(3):
        outcome = await run_profile(stack.profile_id, clock=now)
        assert outcome.status != "error", outcome.error
        rows = (await _rows(pool, stack)).values()
        waiting = [r for r in rows if r["status"] in ("pending", "creating", "processing")]
        assert all((r["last_error"] or {}).get("message") for r in waiting), waiting
        if not waiting:
            return
        now.advance(3600)
    raise AssertionError(f"rows still waiting after three runs: {waiting}")


async def _rows(pool: asyncpg.Pool, stack: Stack) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM contact_entity WHERE profile_id = $1", stack.profile_id)
    return {r["source_key"]: dict(r) for r in rows}


def _writes(stack: Stack) -> Counter[str]:
    """PUTs and DELETEs FreeAgent carried out, per contact path."""
    done = stack.freeagent.requests
    return Counter(r.path for r in done if r.reached_handler and r.method in ("PUT", "DELETE"))


@dataclass
class Ledger:
    """The ledger after the runs, with what identity makes of each row."""

    rows: dict[str, dict[str, Any]]
    parties: dict[str, Party]
    identity: dict[str, str]

    @classmethod
    def of(cls, rows: dict[str, dict[str, Any]], mode: IdentityMode) -> Ledger:
        parties = {k: party_of(ContactEntity.from_row(r)) for k, r in rows.items()}
        everyone = list(parties.values())
        identity = {k: identity_of(p, mode, everyone).key for k, p in parties.items()}
        return cls(rows, parties, identity)

    def exported(self) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.rows.items() if r["status"] in EXPORTED}

    def with_email(self, email: str) -> list[str]:
        return [k for k, p in self.parties.items() if p.email == email]

    def payload(self, key: str) -> dict[str, Any] | None:
        return _sent(read_buyer(ContactEntity.from_row(self.rows[key])))


def _accounted_for(stack: Stack, ledger: Ledger) -> None:
    """Every customer and guest buyer has a row: exported, or failed, skipped or waiting for
    review, saying why."""
    keys = [f"customer:{c['id']}" for c in stack.magento.customers.values()]
    emails = (str(o.get("customer_email") or "") for o in stack.magento.orders.values())
    keys += [f"guest:{e.strip().lower()}" for e in emails if e.strip()]
    for key in keys:
        row = ledger.rows[key]
        if row["status"] not in EXPORTED:
            assert row["status"] in ("failed", "skipped", "needs_review"), row
            error = row["last_error"] or {}
            assert error.get("message") or error.get("reason"), row


def _shared_only_on_record(ledger: Ledger, contacts: dict[str, dict[str, Any]]) -> None:
    """Rows of one contact: one owner, the others name it in shared_with; a row's contact
    carries its e-mail, and one identity has one contact."""
    users: dict[str, list[str]] = defaultdict(list)
    for key, row in ledger.exported().items():
        users[row["freeagent_url"]].append(key)
        email = ledger.parties[key].email
        if email is not None:
            held = contacts[row["freeagent_url"]].get("email") or ""
            assert held.lower() == email, (key, row, held)
    for url, keys in users.items():
        owners = [k for k in keys if not ledger.rows[k]["metadata"].get("shared_with")]
        assert len(owners) <= 1, (url, {k: ledger.rows[k]["status"] for k in keys})
        for key in keys:
            owner = ledger.rows[key]["metadata"].get("shared_with")
            assert owner is None or owners == [owner], (url, key, owner, owners)
    by_identity: dict[str, set[str]] = defaultdict(set)
    for key, row in ledger.exported().items():
        if ledger.parties[key].email is not None:
            by_identity[ledger.identity[key]].add(row["freeagent_url"])
    assert all(len(urls) == 1 for urls in by_identity.values()), by_identity


def _strangers_untouched(
    ledger: Ledger, before: dict[str, Any], after: dict[str, Any], writes: Counter[str]
) -> None:
    """A contact no customer's e-mail identifies is never linked nor written."""
    emails = {p.email for p in ledger.parties.values() if p.email}
    used = {r["freeagent_url"] for r in ledger.rows.values()}
    for url, contact in before.items():
        if (contact.get("email") or "").lower() not in emails:
            assert after[url] == contact, url
            assert url not in used and writes[urlsplit(url).path] == 0, url


def _ambiguous_left_to_a_person(
    ledger: Ledger, groups: dict[str, list[str]], before: dict[str, Any], after: dict[str, Any],
    writes: Counter[str],
) -> None:  # fmt: skip
    """Several contacts with a customer's e-mail: its rows wait, none of them is written."""
    used = {r["freeagent_url"] for r in ledger.rows.values()}
    for email, urls in groups.items():
        if len(urls) < 2:
            continue
        for key in ledger.with_email(email):
            row = ledger.rows[key]
            assert row["status"] == "needs_review", row
            assert {c["url"] for c in row["metadata"]["review"]["candidates"]} == set(urls)
        for url in urls:
            assert after[url] == before[url] and url not in used, url
            assert writes[urlsplit(url).path] == 0, url


def _one_match_linked(
    ledger: Ledger, groups: dict[str, list[str]], before: dict[str, Any], after: dict[str, Any],
    writes: Counter[str],
) -> None:  # fmt: skip
    """One contact with a customer's e-mail: linked (written only where it differs), never
    duplicated for that identity; another identity with the e-mail gets its own."""
    for email, urls in groups.items():
        mine = [k for k in ledger.with_email(email) if ledger.rows[k]["status"] in EXPORTED]
        if len(urls) != 1 or not mine:
            continue
        (url,) = urls
        owners = [k for k in mine if ledger.rows[k]["freeagent_url"] == url
                  and not ledger.rows[k]["metadata"].get("shared_with")]  # fmt: skip
        assert len(owners) == 1, {k: ledger.rows[k]["status"] for k in mine}
        owner = owners[0]
        assert ledger.rows[owner]["status"] in ("linked", "updated", "unchanged")
        for key in mine:
            same = ledger.identity[key] == ledger.identity[owner]
            assert same == (ledger.rows[key]["freeagent_url"] == url), key
        sent = ledger.payload(owner)
        assert sent is not None and _holds(after[url], sent), (after[url], sent)
        if _holds(before[url], sent):
            assert ledger.rows[owner]["status"] == "linked"
            assert writes[urlsplit(url).path] == 0 and after[url] == before[url]


async def _world(pool: asyncpg.Pool, run_profile: Any, world: World) -> None:
    n = next(_profiles)
    magento, bases = _shop(n, world)
    now = FakeNow()
    freeagent = FreeAgentState(wall_clock=now, all_includes_hidden=world.all_includes_hidden)
    async with simulators(freeagent=freeagent, magento=magento) as s:
        profile = {"identity": world.identity, "unmatched": world.unmatched}
        stack = await register(
            pool, s, secrets=sealing_box(), profile=f"linking{n}", settings=profile
        )
        for seed in world.seeds:
            contact = _seed(n, seed, world.people[seed.of], bases[seed.of])
            s.freeagent.add_contact(contact)
        before = {c["url"]: c for c in s.freeagent.contacts_list()}
        groups: dict[str, list[str]] = defaultdict(list)
        for url, contact in before.items():
            if contact.get("email"):
                groups[contact["email"].lower()].append(url)
        await _export(pool, run_profile, stack, now)
        after = {c["url"]: c for c in s.freeagent.contacts_list()}
        ledger = Ledger.of(await _rows(pool, stack), IdentityMode(world.identity))
        writes = _writes(stack)
        _accounted_for(stack, ledger)
        _shared_only_on_record(ledger, after)
        _strangers_untouched(ledger, before, after, writes)
        _ambiguous_left_to_a_person(ledger, groups, before, after, writes)
        _one_match_linked(ledger, groups, before, after, writes)
        s.freeagent.reset_counters()
        now.advance(60)  # a fire of its own: one at the same instant is the same fire
        again = await run_profile(stack.profile_id, clock=now, full=True)
        assert again.status != "error", again.error
        assert again.counts.collected >= len(magento.customers), again.counts.as_dict()
        assert s.freeagent.write_count() == 0, again.counts.as_dict()


#: One person, the second account's e-mail pasted with a zero-width space (sent without it):
#: the two rows were not grouped as one e-mail, and both wrote one contact, neither on record.
_ANN = Person("Ann", "Lee", None, "Leeds", 1, "plain")
_PASTED = World([_ANN], [], [Sharer(0, "invisible", "same", 1)], [], [], "account", "create", False)
_PASTED_HELD = World(
    [_ANN], [Seed(0, "holds", False)], [Sharer(0, "invisible", "shouted", 2)],
    [Sharer(0, "invisible", "same", 1)], [], "email", "create", False,
)  # fmt: skip


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # A failure is shrunk once, without the explain phase: replaying it a hundred times more
    # (each a whole export) would outlast the suite's timeout.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    report_multiple_bugs=False,
)
@given(world=worlds())
@example(world=_PASTED)
@example(world=_PASTED_HELD)
async def test_linking_to_contacts_freeagent_already_holds(
    pool: asyncpg.Pool, run_profile: Any, world: World
) -> None:
    """Any account drawn against the shop: linked by e-mail only, strangers untouched,
    ambiguity left to a person, sharing on record, and a second full run writes nothing."""
    await _world(pool, run_profile, world)


# --- targeted -----------------------------------------------------------------------------


@pytest.fixture
def magento_state() -> MagentoState:
    """An empty shop: each test adds the customers it is about."""
    return MagentoState.seeded(customers=0, guest_orders=0)


@pytest.mark.parametrize(
    ("held", "kept"),
    [
        ("an\u200bn@example.com", "ann@example.com"),  # a zero-width space pasted in
        ("\ufeffAnn@Example.com", "Ann@Example.com"),  # a byte-order mark in front
        (" \u00a0ann@example.com\t", "ann@example.com"),  # padding
        ("\u2060", None),  # nothing left to send
    ],
)
def test_the_ledger_keeps_the_email_as_sent(held: str, kept: str | None) -> None:
    """A row's e-mail column is the e-mail the export sends (guests: lower-cased), so rows
    are grouped and matched by what identity keys on."""
    customer = customer_record({"id": 7, "email": held})
    guest = guest_record({"entity_id": 5, "increment_id": "1", "customer_email": held})
    assert not isinstance(customer, str) and not isinstance(guest, str)
    assert customer.email == kept == contact_email(held)
    assert guest.email == (kept.lower() if kept else None)


async def test_one_person_pasted_with_an_invisible_character_shares_on_record(
    pool: asyncpg.Pool, stack: Stack, run_profile: Any
) -> None:
    """Two accounts of one person, one e-mail with a zero-width space in it: the older links
    the contact FreeAgent holds and writes it once; the other shares it, on record."""
    existing = stack.freeagent.add_contact(
        {"first_name": "Old", "last_name": "Name", "email": "ann@example.com"}
    )
    first = stack.magento.add_raw_customer(_customer(_ANN, "ann@example.com", "same", 1))
    second = stack.magento.add_raw_customer(_customer(_ANN, "an\u200bn@example.com", "same", 2))
    outcome = await run_profile(stack.profile_id)
    assert outcome.status != "error", outcome.error
    rows = await _rows(pool, stack)
    owner, sharer = rows[f"customer:{first['id']}"], rows[f"customer:{second['id']}"]
    assert (owner["status"], owner["freeagent_url"]) == ("updated", existing)
    assert (sharer["status"], sharer["freeagent_url"]) == ("linked", existing)
    assert sharer["metadata"]["shared_with"] == f"customer:{first['id']}"
    assert _writes(stack) == {urlsplit(existing).path: 1}
    assert len(stack.freeagent.contacts_list()) == 1
