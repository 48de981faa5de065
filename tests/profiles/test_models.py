"""Typed records: Magento JSON in (reference magento-api.md §2, §4), FreeAgent JSON (§4)."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from profiles.freeagent_contact_export.models import (
    WRITABLE_CONTACT_FIELDS,
    Buyer,
    ContactOptions,
    ContactOptionsError,
    ContactPayload,
    FreeAgentContact,
    MagentoCustomer,
    MagentoGuestOrder,
    MagentoRegion,
    Skipped,
    payload_hash,
)

# Shaped like the docs' customers/search item: nulls omitted (no middlename, taxvat, dob),
# default ids as strings, the non-default address without any default_* keys, a GB
# free-text region with region_id 0 and a trailing space.
CUSTOMER: dict[str, Any] = {
    "id": 1,
    "group_id": 1,
    "default_billing": "1",
    "default_shipping": "1",
    "created_at": "2024-03-01 10:00:00",
    "updated_at": "2024-03-02 11:30:15",
    "created_in": "Default Store View",
    "email": "jdoe@example.com",
    "firstname": "Jane",
    "lastname": "Doe",
    "gender": 0,
    "store_id": 1,
    "website_id": 1,
    "addresses": [
        {
            "id": 1,
            "customer_id": 1,
            "region": {"region_code": "London ", "region": "London ", "region_id": 0},
            "region_id": 0,
            "country_id": "GB",
            "street": ["10 Downing Street"],
            "telephone": "020 7946 0000",
            "postcode": "SW1A 2AA",
            "city": "London",
            "firstname": "Jane",
            "lastname": "Doe",
            "default_shipping": True,
            "default_billing": True,
        },
        {
            "id": 2,
            "customer_id": 1,
            "region": {"region_code": "TX", "region": "Texas", "region_id": 57},
            "region_id": 57,
            "country_id": "US",
            "street": ["1 Main St", "Suite 5"],
            "telephone": "512 555 0100",
            "postcode": "78701",
            "city": "Austin",
            "firstname": "Jane",
            "lastname": "Doe",
        },
    ],
    "disable_auto_group_change": 0,
    "extension_attributes": {"is_subscribed": False},
}

# A guest order trimmed by fields=...: region is a plain string on order addresses.
GUEST_ORDER: dict[str, Any] = {
    "entity_id": 40,
    "increment_id": "000000040",
    "customer_email": "ann@example.com",
    "customer_firstname": "Ann",
    "customer_lastname": "Lee",
    "customer_is_guest": 1,
    "store_id": 2,
    "created_at": "2024-04-01 09:00:00",
    "updated_at": "2024-04-02 09:00:00",
    "billing_address": {
        "address_type": "billing",
        "entity_id": 80,
        "parent_id": 40,
        "email": "ann@example.com",
        "firstname": "Ann",
        "lastname": "Lee",
        "street": ["1 Main St"],
        "city": "Austin",
        "postcode": "78701",
        "country_id": "US",
        "region": "Texas",
        "region_code": "TX",
        "region_id": 57,
        "telephone": "512 555 0100",
    },
}

# Shaped like a live FreeAgent contact: empty fields omitted, read-only and undocumented extras.
FREEAGENT_CONTACT: dict[str, Any] = {
    "url": "https://api.freeagent.com/v2/contacts/70",
    "organisation_name": "Acme Ltd",
    "email": "accounts@acme.example",
    "country": "United Kingdom",
    "status": "Active",
    "locale": "en",
    "charge_sales_tax": "Auto",
    "account_balance": "-100.0",
    "active_projects_count": 0,
    "uses_contact_level_email_settings": False,
    "emails_invoices_automatically": False,
    "created_at": "2026-08-16T12:43:38.000Z",
    "updated_at": "2026-08-16T12:43:39.000Z",
}


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


class TestMagentoCustomer:
    def test_parses_reference_sample(self) -> None:
        """Omitted keys read as None; the documented string id stays a string."""
        customer = MagentoCustomer.model_validate(CUSTOMER)
        assert (customer.id, customer.email, customer.store_id) == (1, "jdoe@example.com", 1)
        assert customer.middlename is None and customer.taxvat is None
        assert customer.default_billing == "1"
        assert customer.extension_attributes == {"is_subscribed": False}

    def test_timestamps_are_utc(self) -> None:
        """Magento's zone-less "Y-m-d H:i:s" is UTC wall-clock time."""
        customer = MagentoCustomer.model_validate(CUSTOMER)
        assert customer.updated_at == datetime(2024, 3, 2, 11, 30, 15, tzinfo=UTC)

    def test_zero_date_is_unknown(self) -> None:
        """MySQL's zero date does not make the customer unreadable."""
        customer = MagentoCustomer.model_validate(
            with_changes(CUSTOMER, updated_at="0000-00-00 00:00:00")
        )
        assert customer.updated_at is None

    def test_non_default_address_has_no_flags(self) -> None:
        """Absent default_* keys on an address read as None, not an error."""
        second = MagentoCustomer.model_validate(CUSTOMER).addresses[1]
        assert second.default_billing is None and second.default_shipping is None

    def test_region_object_kept_raw(self) -> None:
        """The model keeps "London " as sent; tidying is the mapping's job."""
        first = MagentoCustomer.model_validate(CUSTOMER).addresses[0]
        assert first.region == MagentoRegion(region_code="London ", region="London ", region_id=0)

    def test_addresses_sent_as_an_object_are_read_as_a_list(self) -> None:
        """PHP writes an array with non-sequential keys as an object: its values are the
        addresses (the customer is not unreadable for it)."""
        addresses = {"0": CUSTOMER["addresses"][0], "2": CUSTOMER["addresses"][1]}
        customer = MagentoCustomer.model_validate(with_changes(CUSTOMER, addresses=addresses))
        assert len(customer.addresses) == 2

    def test_php_empty_array_as_object(self) -> None:
        """PHP encodes an empty extension_attributes object as []."""
        customer = MagentoCustomer.model_validate(with_changes(CUSTOMER, extension_attributes=[]))
        assert customer.extension_attributes == {}

    def test_loose_scalars(self) -> None:
        """Numeric strings for ids and numbers for text fields are accepted."""
        address = with_changes(CUSTOMER["addresses"][0], id="1", telephone=2079460000)
        customer = MagentoCustomer.model_validate(
            with_changes(CUSTOMER, id="1", addresses=[address])
        )
        assert customer.id == 1
        assert customer.addresses[0].id == 1
        assert customer.addresses[0].telephone == "2079460000"

    def test_street_as_one_string(self) -> None:
        """A newline-joined street (some extensions) becomes lines."""
        address = with_changes(CUSTOMER["addresses"][0], street="1 High St\nFlat 2")
        customer = MagentoCustomer.model_validate(with_changes(CUSTOMER, addresses=[address]))
        assert customer.addresses[0].street == ["1 High St", "Flat 2"]

    def test_unknown_keys_ignored(self) -> None:
        """New Magento attributes do not break parsing."""
        customer = MagentoCustomer.model_validate(with_changes(CUSTOMER, brand_new_field={"x": 1}))
        assert customer.id == 1

    def test_id_required(self) -> None:
        """The id is the one field every customer has; without it the record is unusable."""
        with pytest.raises(ValidationError):
            MagentoCustomer.model_validate({"email": "a@b.co"})


class TestMagentoGuestOrder:
    def test_parses_reference_sample(self) -> None:
        """The order billing address carries region as a plain string."""
        order = MagentoGuestOrder.model_validate(GUEST_ORDER)
        assert order.increment_id == "000000040"
        assert order.billing_address is not None
        assert (order.billing_address.region, order.billing_address.region_code) == ("Texas", "TX")

    def test_numeric_increment_id_is_text(self) -> None:
        """increment_id is a string even if a store sends a number."""
        order = MagentoGuestOrder.model_validate(with_changes(GUEST_ORDER, increment_id=40))
        assert order.increment_id == "40"


class TestBuyer:
    def test_customer_default_billing_by_string_id(self) -> None:
        """default_billing "2" (string) selects address id 2 (int)."""
        customer = MagentoCustomer.model_validate(with_changes(CUSTOMER, default_billing="2"))
        buyer = Buyer.from_customer(customer)
        assert buyer.billing is not None and buyer.billing.id == 2

    def test_customer_fields(self) -> None:
        """A customer buyer carries the account's identity and no order ids."""
        buyer = Buyer.from_customer(MagentoCustomer.model_validate(CUSTOMER))
        assert (buyer.kind, buyer.customer_id, buyer.order_id) == ("customer", 1, None)
        assert (buyer.first_name, buyer.last_name, buyer.store_id, buyer.website_id) == (
            "Jane",
            "Doe",
            1,
            1,
        )
        assert buyer.updated_at == datetime(2024, 3, 2, 11, 30, 15, tzinfo=UTC)

    def test_falls_back_to_default_shipping(self) -> None:
        """No default billing: the default shipping address bills."""
        addresses = [with_changes(a) for a in CUSTOMER["addresses"]]
        for address in addresses:
            address.pop("default_billing", None)
            address.pop("default_shipping", None)
        source = with_changes(CUSTOMER, addresses=addresses, default_shipping="2")
        del source["default_billing"]
        buyer = Buyer.from_customer(MagentoCustomer.model_validate(source))
        assert buyer.billing is not None and buyer.billing.id == 2

    def test_falls_back_to_first_address(self) -> None:
        """No defaults at all: the first address stands in."""
        address = with_changes(CUSTOMER["addresses"][1])
        source = with_changes(CUSTOMER, addresses=[address])
        del source["default_billing"], source["default_shipping"]
        buyer = Buyer.from_customer(MagentoCustomer.model_validate(source))
        assert buyer.billing is not None and buyer.billing.id == 2

    def test_no_addresses(self) -> None:
        """A customer without addresses has no billing address."""
        source = with_changes(CUSTOMER, addresses=[])
        assert Buyer.from_customer(MagentoCustomer.model_validate(source)).billing is None

    def test_b2b_company_name(self) -> None:
        """A company name enriched into company_attributes reaches the buyer."""
        extension = {"company_attributes": {"company_id": 3, "company_name": "Acme plc"}}
        source = with_changes(CUSTOMER, extension_attributes=extension)
        assert (
            Buyer.from_customer(MagentoCustomer.model_validate(source)).company_name == "Acme plc"
        )

    def test_guest_billing_becomes_default_billing(self) -> None:
        """The order billing address becomes a customer-shaped default billing address."""
        buyer = Buyer.from_guest_order(MagentoGuestOrder.model_validate(GUEST_ORDER))
        assert (buyer.kind, buyer.customer_id, buyer.order_id) == ("guest", None, 40)
        assert buyer.increment_id == "000000040"
        assert buyer.billing is not None and buyer.billing.default_billing is True
        assert buyer.billing.region == MagentoRegion(region="Texas", region_code="TX", region_id=57)
        assert buyer.billing.street == ["1 Main St"]

    def test_guest_names_fall_back_to_billing(self) -> None:
        """Missing or placeholder customer_* names come from the billing address."""
        source = with_changes(GUEST_ORDER, customer_firstname="-", customer_email=" ")
        del source["customer_lastname"]
        buyer = Buyer.from_guest_order(MagentoGuestOrder.model_validate(source))
        assert (buyer.first_name, buyer.last_name, buyer.email) == ("Ann", "Lee", "ann@example.com")

    def test_guest_without_billing_address(self) -> None:
        """An order trimmed without billing_address still gives a buyer."""
        source = with_changes(GUEST_ORDER)
        del source["billing_address"]
        buyer = Buyer.from_guest_order(MagentoGuestOrder.model_validate(source))
        assert buyer.billing is None and buyer.first_name == "Ann"


class TestContactOptions:
    def test_defaults(self) -> None:
        """With no settings a contact is just Active."""
        options = ContactOptions()
        assert options.status == "Active"
        assert options.locale is None and options.store_locales == {}

    def test_jsonb_keys_become_store_ids(self) -> None:
        """JSONB object keys are strings; store ids are ints."""
        options = ContactOptions.model_validate(
            {"store_locales": {"2": "fr"}, "derive_locale_from_store": {"3": "de_DE"}}
        )
        assert options.store_locales == {2: "fr"}
        assert options.derive_locale_from_store == {3: "de_DE"}

    def test_magento_locale_in_store_mapping(self) -> None:
        """A Magento spelling in the store mapping is stored as FreeAgent's code."""
        options = ContactOptions.model_validate(
            {"store_locales": {"1": "cs_CZ"}, "locale": "en_US"}
        )
        assert options.store_locales == {1: "cz"}
        assert options.locale == "en-US"

    def test_choices_ignore_case(self) -> None:
        """Hand-typed "never" means FreeAgent's "Never"."""
        options = ContactOptions.model_validate({"charge_sales_tax": "never", "status": "hidden"})
        assert (options.charge_sales_tax, options.status) == ("Never", "Hidden")

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            (
                {"charge_sales_tax": "Sometimes"},
                "charge_sales_tax must be one of Auto, Always, Never",
            ),
            ({"status": "Deleted"}, "status must be one of Active, Hidden"),
            ({"status": None}, "status must be one of Active, Hidden"),
            (
                {"default_payment_terms_in_days": 400},
                "default_payment_terms_in_days must be a whole number from 0 to 365",
            ),
            (
                {"default_payment_terms_in_days": True},
                "default_payment_terms_in_days must be a whole number from 0 to 365",
            ),
            ({"locale": "xx"}, "locale 'xx' is not a FreeAgent locale"),
            (
                {"store_locales": {"2": "pt_PT"}},
                "store_locales[2] 'pt_PT' is not a FreeAgent locale",
            ),
        ],
    )
    def test_messages_name_field_and_choices(self, settings: dict[str, Any], message: str) -> None:
        """Validation errors say which setting and what it may be."""
        with pytest.raises(ValidationError) as caught:
            ContactOptions.model_validate(settings)
        assert caught.value.errors()[0]["msg"].startswith(message)

    def test_from_settings_lists_every_problem(self) -> None:
        """One readable error lists all bad settings, for the profile's ConfigError."""
        with pytest.raises(ContactOptionsError) as caught:
            ContactOptions.from_settings({"charge_sales_tax": "x", "status": "y"})
        assert str(caught.value) == (
            "contact options: status must be one of Active, Hidden; "
            "charge_sales_tax must be one of Auto, Always, Never"
        )


class TestContactPayload:
    def test_to_api_omits_none(self) -> None:
        """FreeAgent omits empty fields; we never send null."""
        payload = ContactPayload(organisation_name="Acme Ltd", status="Active")
        assert payload.to_api() == {"organisation_name": "Acme Ltd", "status": "Active"}

    @pytest.mark.parametrize("field", ["url", "created_at", "account_balance"])
    def test_read_only_attributes_refused(self, field: str) -> None:
        """Read-only attributes can make FreeAgent answer "400 found unpermitted parameters"."""
        with pytest.raises(ValidationError):
            ContactPayload.model_validate({"organisation_name": "Acme", field: "x"})

    @pytest.mark.parametrize("text", ["", "x" * 256])
    def test_text_limits(self, text: str) -> None:
        """Strings are 1-255 characters: empty would blank a field, longer may be refused."""
        with pytest.raises(ValidationError):
            ContactPayload(first_name=text)

    def test_hash_ignores_key_order_and_none(self) -> None:
        """The hash is of canonical JSON: key order and None values do not matter."""
        payload = ContactPayload(first_name="Jane", last_name="Doe", email="j@x.co")
        reordered = {"email": "j@x.co", "last_name": "Doe", "first_name": "Jane", "town": None}
        assert payload_hash(payload) == payload_hash(reordered)

    def test_hash_changes_with_content(self) -> None:
        """Any changed attribute changes the hash."""
        before = ContactPayload(first_name="Jane", last_name="Doe")
        assert payload_hash(before) != payload_hash(before.model_copy(update={"last_name": "Do"}))

    def test_hash_is_hex_sha256(self) -> None:
        """Stored in the ledger as 64 hex characters."""
        digest = payload_hash(ContactPayload(organisation_name="Zoë & Co"))
        assert len(digest) == 64 and int(digest, 16) >= 0

    def test_hash_of_a_known_payload_never_changes(self) -> None:
        """Ledger rows hold hashes from earlier versions: a new canonical form would resend
        every contact. Sorted keys, no spaces, UTF-8 text unescaped."""
        payload = ContactPayload(organisation_name="Zoë & Co", first_name="Jane", email="j@x.co")
        canonical = '{"email":"j@x.co","first_name":"Jane","organisation_name":"Zoë & Co"}'
        assert hashlib.sha256(canonical.encode()).hexdigest() == (
            "681fbbab4a9467a29a6f2e21562d450be4fe2cd84b5ef9a0159269f423bd63f7"
        )
        assert payload_hash(payload) == hashlib.sha256(canonical.encode()).hexdigest()


class TestFreeAgentContact:
    def test_parses_live_shape(self) -> None:
        """Millisecond Z timestamps parse; undocumented extras are ignored."""
        contact = FreeAgentContact.model_validate(FREEAGENT_CONTACT)
        assert contact.url.endswith("/contacts/70")
        assert contact.updated_at == datetime(2026, 8, 16, 12, 43, 39, tzinfo=UTC)
        assert contact.first_name is None

    def test_writable_view(self) -> None:
        """writable() drops read-only attributes, so it compares with a payload's to_api()."""
        writable = FreeAgentContact.model_validate(FREEAGENT_CONTACT).writable()
        assert set(writable) <= WRITABLE_CONTACT_FIELDS
        assert writable == {
            "organisation_name": "Acme Ltd",
            "email": "accounts@acme.example",
            "country": "United Kingdom",
            "status": "Active",
            "locale": "en",
            "charge_sales_tax": "Auto",
        }


def test_skipped_is_a_value() -> None:
    """Skipped compares by reason and cannot be altered after the fact."""
    skipped = Skipped("no name")
    assert skipped == Skipped("no name")
    with pytest.raises(dataclasses.FrozenInstanceError):
        skipped.reason = "other"  # type: ignore[misc]
