"""build_contact_payload: Magento buyer + profile options → FreeAgent contact body."""

from __future__ import annotations

import json
import random
import unicodedata
from typing import Any

import pycountry
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.freeagent_contact_export.countries import (
    FREEAGENT_COUNTRY_NAMES,
    FREEAGENT_LOCALES,
    country_name,
    freeagent_locale,
)
from profiles.freeagent_contact_export.models import (
    WRITABLE_CONTACT_FIELDS,
    Buyer,
    ContactOptions,
    ContactPayload,
    MagentoCustomer,
    MagentoGuestOrder,
    Skipped,
    payload_hash,
)
from profiles.freeagent_contact_export.payload import (
    NO_NAME,
    build_contact_payload,
    email_key,
)
from simulators.freeagent_contacts import COUNTRIES, clean_value
from tests.strategies import contact_options, guest_orders, magento_customers

PROPERTIES = settings(max_examples=200, deadline=None)
ABSENT = object()  #: expected-value marker: the key must not be in to_api()

ADDRESS: dict[str, Any] = {
    "id": 1,
    "firstname": "Jane",
    "lastname": "Doe",
    "street": ["1 High Street"],
    "city": "London",
    "postcode": "SW1A 1AA",
    "country_id": "GB",
    "telephone": "020 7946 0000",
    "default_billing": True,
}


def address(**fields: Any) -> dict[str, Any]:
    """A customer address: the default UK one with ``fields`` replaced."""
    return {**ADDRESS, **fields}


def customer(**fields: Any) -> dict[str, Any]:
    """Magento customer JSON: a UK customer on store 1 with ``fields`` replaced."""
    base = {
        "id": 7,
        "email": "jane@example.com",
        "firstname": "Jane",
        "lastname": "Doe",
        "store_id": 1,
        "website_id": 1,
        "default_billing": "1",
        "addresses": [ADDRESS],
    }
    return {**base, **fields}


def guest(**fields: Any) -> dict[str, Any]:
    """Magento guest order JSON (trimmed by fields=) with ``fields`` replaced."""
    billing = {
        "address_type": "billing",
        "firstname": "Ann",
        "lastname": "Lee",
        "email": "ann@example.com",
        "street": ["1 Main St"],
        "city": "Austin",
        "region": "Texas",
        "region_code": "TX",
        "postcode": "78701",
        "country_id": "US",
    }
    base = {
        "entity_id": 40,
        "increment_id": "000000040",
        "customer_email": "ann@example.com",
        "customer_firstname": "Ann",
        "customer_lastname": "Lee",
        "store_id": 1,
        "billing_address": billing,
    }
    return {**base, **fields}


def buyer_of(source: dict[str, Any]) -> Buyer:
    """Parse customer or guest-order JSON the way collect does."""
    if "entity_id" in source:
        return Buyer.from_guest_order(MagentoGuestOrder.model_validate(source))
    return Buyer.from_customer(MagentoCustomer.model_validate(source))


def build(source: dict[str, Any], **options: Any) -> ContactPayload | Skipped:
    return build_contact_payload(buyer_of(source), ContactOptions.model_validate(options))


class TestTable:
    """Rule by rule, one row per case; the comment on each row says why it is there."""

    @pytest.mark.parametrize(
        ("source", "options", "expected"),
        [
            # Unicode names pass through untouched (FreeAgent is UTF-8 end to end).
            (customer(firstname="Zoë", lastname="Łukasiewicz-Ørsted"), {},
             {"first_name": "Zoë", "last_name": "Łukasiewicz-Ørsted"}),
            # Decomposed input (e + combining diaeresis) is NFC-normalised so hashes are stable.
            (customer(firstname="Zoe\u0308"), {}, {"first_name": "Zoë"}),
            # Runs of whitespace collapse; tabs/newlines from copy-paste become single spaces.
            (customer(firstname="  Mary \t\n Ann  "), {}, {"first_name": "Mary Ann"}),
            # Control characters (NUL cannot live in Postgres JSONB) are dropped.
            (customer(lastname="Do\x00e\x07"), {}, {"last_name": "Doe"}),
            # Invisible format characters (zero-width space, BOM) are dropped too.
            (customer(firstname="Ja\u200bne", lastname="\ufeffDoe"), {},
             {"first_name": "Jane", "last_name": "Doe"}),
            # Prefix and middle name stay out of first/last (FreeAgent has no fields for them).
            (customer(prefix="Dr", middlename="Quincy", suffix="PhD"), {},
             {"first_name": "Jane", "last_name": "Doe"}),
            # Company-only buyer: organisation_name alone satisfies FreeAgent.
            (customer(firstname="-", lastname=".", addresses=[address(company="Acme Ltd",
              firstname="", lastname="")]), {},
             {"organisation_name": "Acme Ltd", "first_name": ABSENT, "last_name": ABSENT}),
            # Company plus one real name: the name is still sent (allowed with an organisation).
            (customer(lastname="-", addresses=[address(company="Acme Ltd", lastname="-")]), {},
             {"organisation_name": "Acme Ltd", "first_name": "Jane", "last_name": ABSENT}),
            # Company plus full name: both kept, so invoices can show the person too.
            (customer(addresses=[address(company="  Acme   Ltd ")]), {},
             {"organisation_name": "Acme Ltd", "first_name": "Jane", "last_name": "Doe"}),
            # B2B company name (enriched by collect) wins over the address company.
            (customer(addresses=[address(company="acme")], extension_attributes={
              "company_attributes": {"company_id": 3, "company_name": "Acme Holdings plc"}}), {},
             {"organisation_name": "Acme Holdings plc"}),
            # "-" typed into a required company field is not a company.
            (customer(addresses=[address(company="-")]), {}, {"organisation_name": ABSENT}),
            # No address at all: a name-only contact, no address keys, no phone.
            (customer(addresses=[], default_billing=None), {},
             {"address1": ABSENT, "town": ABSENT, "country": ABSENT, "phone_number": ABSENT}),
            # No default billing: the default shipping address is used.
            (customer(default_billing=None, default_shipping="2", addresses=[
              address(id=1, default_billing=None, country_id="FR"),
              address(id=2, default_billing=None, country_id="DE")]), {},
             {"country": "Germany"}),
            # default_billing is a *string* id and must match the int address id.
            (customer(default_billing="2", addresses=[
              address(id=1, default_billing=None, city="Paris"),
              address(id=2, default_billing=None, city="Berlin")]), {},
             {"town": "Berlin"}),
            # No default flags or ids at all: the first address stands in.
            (customer(default_billing=None, addresses=[
              address(id=5, default_billing=None, city="Leeds"),
              address(id=6, default_billing=None, city="York")]), {},
             {"town": "Leeds"}),
            # Four street lines: FreeAgent has three, so lines 3+ share address3.
            (customer(addresses=[address(street=["1 High St", "Flat 2", "Block A", "Estate"])]), {},
             {"address1": "1 High St", "address2": "Flat 2", "address3": "Block A, Estate"}),
            # Blank and placeholder lines are dropped before numbering.
            (customer(addresses=[address(street=["", "1 High St", "-", "Flat 2"])]), {},
             {"address1": "1 High St", "address2": "Flat 2", "address3": ABSENT}),
            # A street sent as one newline-joined string still splits into lines.
            (customer(addresses=[address(street="1 High St\nFlat 2")]), {},
             {"address1": "1 High St", "address2": "Flat 2"}),
            # Over-long text is cut to 255 characters.
            (customer(addresses=[address(street=["x" * 300], company="C" * 400)]), {},
             {"address1": "x" * 255, "organisation_name": "C" * 255}),
            # A cut landing on a space does not leave trailing whitespace.
            (customer(firstname="a" * 254 + " bcd"), {}, {"first_name": "a" * 254}),
            # GB free-text regions come back with a trailing space ("London ").
            (customer(addresses=[address(region={"region": "London ", "region_code": "London ",
              "region_id": 0})]), {},
             {"region": "London"}),
            # Region name missing: the region code is better than nothing.
            (customer(addresses=[address(region={"region_code": "CA", "region_id": 12})]), {},
             {"region": "CA"}),
            # Unknown country code: omit country rather than send a code.
            (customer(addresses=[address(country_id="ZZ")]), {}, {"country": ABSENT}),
            # Codes map to English names, whatever the case.
            (customer(addresses=[address(country_id=" kr ")]), {},
             {"country": "South Korea"}),
            # VAT from the billing address vat_id wins and is compacted and upper-cased.
            (customer(taxvat="FR00000000000", addresses=[address(vat_id=" gb 123 456 789 ")]), {},
             {"sales_tax_registration_number": "GB123456789"}),
            # No vat_id on the address: the account's taxvat is used.
            (customer(taxvat=" de 123456789 ", addresses=[address(vat_id="-")]), {},
             {"sales_tax_registration_number": "DE123456789"}),
            # Neither: no VAT number at all.
            (customer(), {}, {"sales_tax_registration_number": ABSENT}),
            # Store mapping gives the buyer's store its locale.
            (customer(store_id=2), {"locale": "en", "store_locales": {"2": "fr"}},
             {"locale": "fr"}),
            # Store not in the mapping: the profile default locale.
            (customer(store_id=3), {"locale": "en", "store_locales": {"2": "fr"}},
             {"locale": "en"}),
            # Magento store locale is translated to FreeAgent's code.
            (customer(store_id=2), {"derive_locale_from_store": {"2": "fr_BE"}},
             {"locale": "fr-BE"}),
            # An explicit store mapping wins over the store's Magento locale.
            (customer(store_id=2), {"store_locales": {"2": "nl"},
              "derive_locale_from_store": {"2": "fr_BE"}}, {"locale": "nl"}),
            # A Magento locale FreeAgent lacks (pt_PT) falls back to the profile default.
            (customer(store_id=2), {"locale": "en", "derive_locale_from_store": {"2": "pt_PT"}},
             {"locale": "en"}),
            # No locale anywhere: none sent (FreeAgent uses the company's).
            (customer(), {}, {"locale": ABSENT}),
            # Guest order without customer_firstname: names come from the billing address.
            (guest(customer_firstname=None, customer_lastname=None), {},
             {"first_name": "Ann", "last_name": "Lee", "region": "Texas",
              "country": "United States"}),
            # Guest e-mail missing on the order: billing address e-mail.
            (guest(customer_email=None), {}, {"email": "ann@example.com"}),
            # Customer names blank but the billing address has a full pair: use it.
            (customer(firstname=" ", lastname="-"), {}, {"first_name": "Jane", "last_name": "Doe"}),
            # E-mail is trimmed and otherwise sent as Magento holds it (case included).
            (customer(email="  Jane.Doe@Example.COM "), {}, {"email": "Jane.Doe@Example.COM"}),
            # Internationalised domain goes out as held: FreeAgent decides if it accepts it.
            (customer(email="jane@Bücher.de"), {}, {"email": "jane@Bücher.de"}),
            # An e-mail fa-sync finds doubtful is sent, never dropped: FreeAgent's 422 speaks.
            (customer(email="jane@"), {}, {"email": "jane@", "first_name": "Jane"}),
            (customer(email="jane@localhost"), {}, {"email": "jane@localhost"}),
            (customer(email="a" * 65 + "@b.co"), {}, {"email": "a" * 65 + "@b.co"}),
            # Control and invisible characters are removed from the e-mail.
            (customer(email="ja\u200bne@b.co\n"), {}, {"email": "jane@b.co"}),
            # Placeholder phone is not a phone.
            (customer(addresses=[address(telephone="-")]), {}, {"phone_number": ABSENT}),
            # Default options: only status (Active) is sent from the contact defaults.
            (customer(), {}, {"status": "Active", "charge_sales_tax": ABSENT,
              "default_payment_terms_in_days": ABSENT, "uses_contact_invoice_sequence": ABSENT}),
            # Every option is applied as given.
            (customer(), {"status": "Hidden", "default_payment_terms_in_days": 30,
              "uses_contact_invoice_sequence": True, "contact_name_on_invoices": False,
              "charge_sales_tax": "Never"},
             {"status": "Hidden", "default_payment_terms_in_days": 30,
              "uses_contact_invoice_sequence": True, "contact_name_on_invoices": False,
              "charge_sales_tax": "Never"}),
        ],
    )  # fmt: skip
    def test_row(
        self, source: dict[str, Any], options: dict[str, Any], expected: dict[str, Any]
    ) -> None:
        """Each row's expected attributes appear (or are absent) in the request body."""
        result = build(source, **options)
        assert isinstance(result, ContactPayload), result
        body = result.to_api()
        for key, value in expected.items():
            if value is ABSENT:
                assert key not in body
            else:
                assert body[key] == value

    @pytest.mark.parametrize(
        ("source", "reason"),
        [
            # All names blank or placeholders, billing names too, no company.
            (customer(firstname=" ", lastname="-", addresses=[address(firstname=".",
              lastname="")]), NO_NAME),
            # No names anywhere and no address at all.
            (customer(firstname=None, lastname=None, addresses=[]), NO_NAME),
            # A guest with nothing but an e-mail.
            (guest(customer_firstname=None, customer_lastname=None, billing_address=None), NO_NAME),
            # Only a first name and no company: not guessed into last_name.
            (customer(lastname="-", addresses=[address(lastname="")]),
             "only first_name and no company: FreeAgent needs organisation_name "
             "or first_name and last_name"),
            # Only a last name and no company.
            (customer(firstname=None, addresses=[]),
             "only last_name and no company: FreeAgent needs organisation_name "
             "or first_name and last_name"),
        ],
    )  # fmt: skip
    def test_skipped(self, source: dict[str, Any], reason: str) -> None:
        """Buyers FreeAgent cannot accept are skipped with a reason for the ledger."""
        assert build(source) == Skipped(reason)


class TestShape:
    def test_typical_uk_customer(self) -> None:
        """A typical UK customer maps field by field, and nothing else is sent."""
        result = build(customer(addresses=[address(company="Acme Ltd", vat_id="GB123456789")]))
        assert isinstance(result, ContactPayload)
        assert result.to_api() == {
            "first_name": "Jane",
            "last_name": "Doe",
            "organisation_name": "Acme Ltd",
            "email": "jane@example.com",
            "phone_number": "020 7946 0000",
            "address1": "1 High Street",
            "town": "London",
            "postcode": "SW1A 1AA",
            "country": "United Kingdom",
            "sales_tax_registration_number": "GB123456789",
            "status": "Active",
        }

    def test_deterministic(self) -> None:
        """The same buyer always gives the same hash, so unchanged customers send no writes."""
        first, second = build(customer()), build(customer())
        assert isinstance(first, ContactPayload) and isinstance(second, ContactPayload)
        assert payload_hash(first) == payload_hash(second)

    def test_hash_tracks_changes(self) -> None:
        """A changed attribute changes the hash, so the edit is written."""
        before, after = build(customer()), build(customer(lastname="Smith"))
        assert isinstance(before, ContactPayload) and isinstance(after, ContactPayload)
        assert payload_hash(before) != payload_hash(after)


class TestVocabulary:
    @pytest.mark.parametrize(
        ("magento", "freeagent"),
        [
            ("en_GB", "en"), ("en_US", "en-US"), ("fr_FR", "fr"), ("fr_BE", "fr-BE"),
            ("fr_CA", "fr-CA"), ("de_DE", "de"), ("de_AT", "de"), ("nl_NL", "nl"),
            ("nl_BE", "nl-BE"), ("es_ES", "es"), ("es_MX", "es"), ("it_IT", "it"),
            ("cs_CZ", "cz"), ("da_DK", "dk"), ("nb_NO", "nk"), ("sv_SE", "se"),
            ("sr_RS", "rs"), ("sr_Latn_RS", "rs"), ("pt_BR", "pt-BR"), ("pl_PL", "pl-PL"),
            ("fi_FI", "fi"), ("lv_LV", "lv-LV"), ("en-us", "en-US"), ("en", "en"),
            # FreeAgent has only Brazilian Portuguese: do not guess it for Portugal.
            ("pt_PT", None), ("zh_Hans_CN", None), ("", None),
        ],
    )  # fmt: skip
    def test_locale(self, magento: str, freeagent: str | None) -> None:
        """Magento locales map to FreeAgent's own (partly non-ISO) codes."""
        assert freeagent_locale(magento) == freeagent

    @pytest.mark.parametrize(
        ("code", "name"),
        [
            ("GB", "United Kingdom"), ("US", "United States"),
            ("CZ", "Czech Republic"), ("NL", "Netherlands"),  # FreeAgent's EU list (addendum)
            # common English names, not ISO's formal ones (pinned or pycountry's common_name)
            ("KR", "South Korea"), ("VN", "Vietnam"), ("TR", "Turkey"), ("RU", "Russia"),
            ("IR", "Iran"), ("TW", "Taiwan"), ("BO", "Bolivia"), ("CI", "Ivory Coast"),
            ("XK", None),  # Kosovo: not in ISO 3166, left out and noted
            ("IE", "Ireland"), ("gb", "United Kingdom"), ("UK", "United Kingdom"),
            ("GBR", "United Kingdom"), ("ZZ", None), ("", None), (None, None),
        ],
    )  # fmt: skip
    def test_country(self, code: str | None, name: str | None) -> None:
        """ISO codes become English names; anything unknown becomes no country."""
        assert country_name(code) == name

    def test_every_country_sent_is_spelt_as_freeagent_accepts(self) -> None:
        """Every name we may send passes the strict simulator's country rule (EU names as
        FreeAgent's own list spells them: reference addendum)."""
        refused = [name for name in FREEAGENT_COUNTRY_NAMES if clean_value("country", name)[1]]
        assert refused == []

    def test_the_simulator_accepts_one_spelling_per_country_the_one_we_send(self) -> None:
        """The simulator's list and ours agree name for name: no second spelling passes."""
        assert len(COUNTRIES) == len(pycountry.countries)
        assert set(FREEAGENT_COUNTRY_NAMES) == set(COUNTRIES)

    @pytest.mark.parametrize(
        ("raw", "key"),
        [
            (" A@B.CO ", "a@b.co"),
            ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
            ("a@b", "a@b"), ("a@@b.co", "a@@b.co"), ("a b@c.co", "a b@c.co"),
            ("a" * 65 + "@b.co", "a" * 65 + "@b.co"), ("Jöhn@Bücher.DE", "jöhn@bücher.de"),
            ("jane@localhost", "jane@localhost"), ("", None), ("  ", None), (None, None),
        ],
    )  # fmt: skip
    def test_email_key(self, raw: str | None, key: str | None) -> None:
        """The match key is the e-mail as held, trimmed and lower-cased; None only when empty."""
        assert email_key(raw) == key

    @pytest.mark.parametrize(
        ("source", "field", "change"),
        [
            (customer(lastname="X" * 300), "last_name", "cut from 300 to 255 characters"),
            (customer(addresses=[address(country_id="ZZ")]), "country",
             "country_id 'ZZ' is not a known country: left out"),
            (customer(addresses=[address(telephone="0" * 256)]), "phone_number",
             "cut from 256 to 255 characters"),
            (customer(email="ja\x00ne@b.co"), "email", "removed 1 control or invisible character"),
        ],
    )  # fmt: skip
    def test_left_out_or_cut_is_noted(
        self, source: dict[str, Any], field: str, change: str
    ) -> None:
        """A value the mapping leaves out or cuts is reported for the ledger row."""
        notes: list[dict[str, str]] = []
        assert isinstance(build_contact_payload(buyer_of(source), ContactOptions(), notes),
                          ContactPayload)  # fmt: skip
        assert {"field": field, "change": change} in notes


# --- properties ------------------------------------------------------------------------


SKIP_REASONS = {
    NO_NAME,
    *(
        f"only {name} and no company: FreeAgent needs organisation_name or first_name and last_name"
        for name in ("first_name", "last_name")
    ),
}


def _storable(char: str) -> bool:
    """No controls (JSONB rejects NUL), lone surrogates or invisible format characters."""
    category = unicodedata.category(char)
    return category not in ("Cc", "Cs", "Cf") or char in "\u200c\u200d"


def assert_acceptable(result: ContactPayload | Skipped) -> None:
    """What FreeAgent needs from every result (reference §4) and what we promise on top."""
    if isinstance(result, Skipped):
        # Only FreeAgent's name rule may skip; "payload failed validation" means a bug here.
        assert result.reason in SKIP_REASONS
        return
    body = result.to_api()
    assert set(body) <= WRITABLE_CONTACT_FIELDS
    assert None not in body.values()
    assert body.get("organisation_name") or (body.get("first_name") and body.get("last_name"))
    assert body.get("country", "United Kingdom") in FREEAGENT_COUNTRY_NAMES
    assert body.get("locale", "en") in FREEAGENT_LOCALES
    email = body.pop("email", None)
    if email is not None:  # sent as held: only trimmed and cleaned, FreeAgent validates it
        assert email == email.strip() and all(_storable(char) for char in email)
    for value in body.values():
        if isinstance(value, str):
            assert 0 < len(value) <= 255
            assert value == " ".join(value.split())
            assert all(_storable(char) for char in value)
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # what the client will send


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON with every object's keys in a different order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


class TestProperties:
    @PROPERTIES
    @given(magento_customers(), contact_options())
    def test_customers(self, source: dict[str, Any], options: ContactOptions) -> None:
        """Any shaped customer maps to an acceptable payload or a reasoned skip."""
        buyer = Buyer.from_customer(MagentoCustomer.model_validate(source))
        assert_acceptable(build_contact_payload(buyer, options))

    @PROPERTIES
    @given(guest_orders(), contact_options())
    def test_guest_orders(self, source: dict[str, Any], options: ContactOptions) -> None:
        """Any shaped guest order maps to an acceptable payload or a reasoned skip."""
        buyer = Buyer.from_guest_order(MagentoGuestOrder.model_validate(source))
        assert_acceptable(build_contact_payload(buyer, options))

    @PROPERTIES
    @given(magento_customers(), contact_options(), st.randoms(use_true_random=False))
    def test_hash_ignores_key_order(
        self, source: dict[str, Any], options: ContactOptions, rng: random.Random
    ) -> None:
        """Magento's key order never changes the hash (no spurious writes)."""
        results = [
            build_contact_payload(buyer_of(raw), options) for raw in (source, shuffled(source, rng))
        ]
        if isinstance(results[0], ContactPayload):
            assert isinstance(results[1], ContactPayload)
            assert payload_hash(results[0]) == payload_hash(results[1])
            assert payload_hash(results[0]) == payload_hash(shuffled(results[0].to_api(), rng))
        else:
            assert results[0] == results[1]
