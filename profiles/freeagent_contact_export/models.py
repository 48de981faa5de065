"""Typed records for the contact export: the Buyer built from Magento records (see
``magento_models``), the profile's contact options, and the FreeAgent contact JSON out.

FreeAgent side (freeagent-api.md §4): ``ContactPayload`` holds only writable attributes,
because some endpoints reject read-only ones with "400 found unpermitted parameters".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from .countries import FREEAGENT_LOCALES, FreeAgentLocale, freeagent_locale
from .magento_models import (
    AddressFields,
    MagentoAddress,
    MagentoCustomAttribute,
    MagentoCustomer,
    MagentoGuestOrder,
    MagentoOrderAddress,
    MagentoRegion,
    UtcTime,
)

__all__ = [
    "Buyer",
    "ContactOptions",
    "ContactOptionsError",
    "ContactPayload",
    "FreeAgentContact",
    "MagentoAddress",
    "MagentoCustomAttribute",
    "MagentoCustomer",
    "MagentoGuestOrder",
    "MagentoOrderAddress",
    "MagentoRegion",
    "Skipped",
    "payload_hash",
]

ContactStatus = Literal["Active", "Hidden"]
ChargeSalesTax = Literal["Auto", "Always", "Never"]
BuyerKind = Literal["customer", "guest"]

#: FreeAgent does not document a length limit; 255 is the common Rails string column size.
MAX_TEXT = 255
#: Longest string collect keeps on the ledger (see clean.py); also the bound of an e-mail,
#: which is sent as held rather than cut.
MAX_STORED_TEXT = 2000


def _blank_name(value: str | None) -> bool:
    """Checkout forms force a value, so buyers type "-" or "." for names they lack."""
    return value is None or not any(char.isalnum() for char in value)


def _first_present(*values: str | None) -> str | None:
    """First value that is a real name, for falling back from order to billing names."""
    return next((value for value in values if not _blank_name(value)), None)


def _same_id(address: MagentoAddress, wanted: str | int | None) -> bool:
    """``default_billing`` is a string id ("12") while ``address.id`` is an int."""
    return wanted is not None and address.id is not None and str(wanted).strip() == str(address.id)


def _default_address(customer: MagentoCustomer) -> MagentoAddress | None:
    """Default billing, else default shipping, else the first address.

    The customer's id is the stored fact (the address flags are derived from it), so it
    wins over a stale flag; the flag covers responses trimmed without the customer ids.
    """
    addresses = customer.addresses
    for wanted, flag in (
        (customer.default_billing, "default_billing"),
        (customer.default_shipping, "default_shipping"),
    ):
        by_id = [address for address in addresses if _same_id(address, wanted)]
        by_flag = [address for address in addresses if getattr(address, flag) is True]
        if by_id or by_flag:
            return (by_id or by_flag)[0]
    return addresses[0] if addresses else None


def _b2b_company_name(extension: Mapping[str, Any]) -> str | None:
    """Company name that collect copies from ``/V1/company/{id}`` into company_attributes.

    Core B2B ``company_attributes`` carry only ids, job title and status; the name is only
    here when collect enriched it, so its absence is normal.
    """
    attributes = extension.get("company_attributes")
    name = attributes.get("company_name") if isinstance(attributes, dict) else None
    return name if isinstance(name, str) else None


def _order_address(address: MagentoOrderAddress) -> MagentoAddress:
    """An order billing address in customer-address shape (region string → region object)."""
    region = None
    if address.region is not None or address.region_code is not None:
        region = MagentoRegion(
            region=address.region, region_code=address.region_code, region_id=address.region_id
        )
    shared = address.model_dump(include=set(AddressFields.model_fields))
    return MagentoAddress(**shared, region=region, default_billing=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Buyer:
    """Who a FreeAgent contact is made from: a registered customer or a guest buyer.

    The mapping takes only this, so customers and guest orders share one set of rules.
    """

    #: "customer" for registered accounts, "guest" for guest-checkout orders.
    kind: BuyerKind
    #: Magento customer id; None for guests.
    customer_id: int | None = None
    #: Guest order's entity_id / increment_id; None for customers.
    order_id: int | None = None
    increment_id: str | None = None
    #: Raw as Magento sent them; cleaning (case, whitespace, placeholders) is payload's job.
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    store_id: int | None = None
    #: None for guests: orders carry a store, not a website.
    website_id: int | None = None
    taxvat: str | None = None
    #: B2B company name (enriched by collect), preferred over the address company.
    company_name: str | None = None
    #: Default billing → default shipping → first address; the order's billing for guests.
    billing: MagentoAddress | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_customer(cls, customer: MagentoCustomer) -> Buyer:
        """Normalise a registered customer; the billing address follows the defaults."""
        return cls(
            kind="customer",
            customer_id=customer.id,
            email=customer.email,
            first_name=customer.firstname,
            last_name=customer.lastname,
            middle_name=customer.middlename,
            prefix=customer.prefix,
            suffix=customer.suffix,
            store_id=customer.store_id,
            website_id=customer.website_id,
            taxvat=customer.taxvat,
            company_name=_b2b_company_name(customer.extension_attributes),
            billing=_default_address(customer),
            updated_at=customer.updated_at,
        )

    @classmethod
    def from_guest_order(cls, order: MagentoGuestOrder) -> Buyer:
        """Normalise a guest order; names and e-mail fall back to the billing address.

        ``customer_firstname`` is normally copied from billing at checkout, but API-placed
        orders can lack it (reference §4, VERIFY), so each name falls back on its own.
        """
        address = order.billing_address or MagentoOrderAddress()
        return cls(
            kind="guest",
            order_id=order.entity_id,
            increment_id=order.increment_id,
            email=_first_present(order.customer_email, address.email),
            first_name=_first_present(order.customer_firstname, address.firstname),
            last_name=_first_present(order.customer_lastname, address.lastname),
            middle_name=_first_present(order.customer_middlename, address.middlename),
            prefix=_first_present(order.customer_prefix, address.prefix),
            suffix=_first_present(order.customer_suffix, address.suffix),
            store_id=order.store_id,
            taxvat=order.customer_taxvat,
            billing=_order_address(order.billing_address) if order.billing_address else None,
            updated_at=order.updated_at,
        )


# --- the profile's contact defaults -----------------------------------------------------


def _choice(field: str, value: object, choices: tuple[str, ...]) -> str:
    """Case-insensitive match against FreeAgent's spelling, with a message naming the field."""
    if isinstance(value, str):
        for choice in choices:
            if value.strip().casefold() == choice.casefold():
                return choice
    raise PydanticCustomError("invalid_choice", f"{field} must be one of {', '.join(choices)}")


def _locale_choice(field: str, value: object) -> str:
    """A FreeAgent locale; Magento spellings with one clear equivalent ("fr_FR") are mapped.

    Settings are hand-edited and store locales are copied from Magento, so both spellings
    turn up; one with no FreeAgent equivalent (pt_PT) is refused rather than guessed.
    """
    locale = freeagent_locale(value)
    if locale is not None:
        return locale
    raise PydanticCustomError(
        "invalid_locale",
        f"{field} {value!r:.40} is not a FreeAgent locale; "
        f"expected one of {', '.join(FREEAGENT_LOCALES)} (or a Magento locale such as fr_FR)",
    )


class ContactOptionsError(ValueError):
    """The profile's contact settings do not validate; the message lists every problem."""


class ContactOptions(BaseModel):
    """Contact defaults from the profile's JSONB settings, applied to every payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    status: ContactStatus = "Active"
    default_payment_terms_in_days: int | None = None
    uses_contact_invoice_sequence: bool | None = None
    contact_name_on_invoices: bool | None = None
    charge_sales_tax: ChargeSalesTax | None = None
    #: Default invoice language when the buyer's store has no entry below.
    locale: FreeAgentLocale | None = None
    #: The store mapping: Magento store_id → FreeAgent locale (wins over everything).
    #: Magento spellings ("fr_FR") are mapped on load; ones FreeAgent lacks are refused.
    store_locales: dict[int, FreeAgentLocale] = Field(default_factory=dict)
    #: store_id → Magento locale as read from storeConfigs ("fr_FR"); mapped at use, and
    #: one FreeAgent lacks (pt_PT) just falls back to ``locale`` since nobody typed it.
    derive_locale_from_store: dict[int, str] = Field(default_factory=dict)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: object) -> str:
        return _choice("status", value, ("Active", "Hidden"))

    @field_validator("charge_sales_tax", mode="before")
    @classmethod
    def _charge_sales_tax(cls, value: object) -> str | None:
        return (
            None
            if value is None
            else _choice("charge_sales_tax", value, ("Auto", "Always", "Never"))
        )

    @field_validator("default_payment_terms_in_days", mode="before")
    @classmethod
    def _payment_terms(cls, value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 365:
            return value
        raise PydanticCustomError(
            "invalid_terms", "default_payment_terms_in_days must be a whole number from 0 to 365"
        )

    @field_validator("locale", mode="before")
    @classmethod
    def _locale(cls, value: object) -> str | None:
        return None if value is None else _locale_choice("locale", value)

    @field_validator("store_locales", mode="before")
    @classmethod
    def _store_locales(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        return {key: _locale_choice(f"store_locales[{key}]", item) for key, item in value.items()}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ContactOptions:
        """Validate settings, raising one readable error that lists every problem."""
        try:
            return cls.model_validate(settings)
        except ValidationError as exc:
            problems = "; ".join(_describe(error) for error in exc.errors())
            raise ContactOptionsError(f"contact options: {problems}") from exc


def _describe(error: ErrorDetails) -> str:
    """Our own messages already name the field; pydantic's need the location prefixed."""
    if error["type"].startswith("invalid_"):
        return str(error["msg"])
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}"


# --- FreeAgent ----------------------------------------------------------------------------


class _ContactAttributes(BaseModel):
    """The writable attributes of a FreeAgent contact (reference §4)."""

    first_name: str | None = None
    last_name: str | None = None
    organisation_name: str | None = None
    email: str | None = None
    billing_email: str | None = None
    phone_number: str | None = None
    mobile: str | None = None
    address1: str | None = None
    address2: str | None = None
    address3: str | None = None
    town: str | None = None
    region: str | None = None
    postcode: str | None = None
    #: An English name ("United Kingdom"), never an ISO code.
    country: str | None = None
    contact_name_on_invoices: bool | None = None
    uses_contact_invoice_sequence: bool | None = None
    charge_sales_tax: str | None = None
    sales_tax_registration_number: str | None = None
    status: str | None = None
    default_payment_terms_in_days: int | None = None
    locale: str | None = None


class ContactPayload(_ContactAttributes):
    """What we write: the body under ``{"contact": ...}``, with FreeAgent's enums enforced."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    charge_sales_tax: ChargeSalesTax | None = None
    status: ContactStatus | None = None
    default_payment_terms_in_days: Annotated[int, Field(ge=0, le=365)] | None = None
    locale: FreeAgentLocale | None = None

    @field_validator("*", mode="after")
    @classmethod
    def _text_within_limits(cls, value: object, info: ValidationInfo) -> object:
        """Empty strings would blank a field and over-long ones may be refused: send neither.

        The e-mail is exempt from the cut: it is sent as held (collect bounds its length) and
        FreeAgent's own validation decides, because a cut address is a different address.
        """
        limit = MAX_STORED_TEXT if info.field_name == "email" else MAX_TEXT
        if isinstance(value, str) and not 0 < len(value) <= limit:
            raise ValueError(f"text must be 1 to {limit} characters, got {len(value)}")
        return value

    def to_api(self) -> dict[str, Any]:
        """JSON-ready attributes without None: FreeAgent omits empty fields, never nulls."""
        return self.model_dump(mode="json", exclude_none=True)


#: Attribute names FreeAgent lets us write; everything else on a contact is read-only.
WRITABLE_CONTACT_FIELDS: frozenset[str] = frozenset(ContactPayload.model_fields)


#: The canonical form payload_hash hashes; built once, as json.dumps builds an encoder per
#: call when given options, which cost as much as encoding a payload.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(payload: ContactPayload | Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no None): equal hash ⇒ no write needed."""
    body = payload.to_api() if isinstance(payload, ContactPayload) else dict(payload)
    body = {key: value for key, value in body.items() if value is not None}
    canonical = _CANONICAL_JSON.encode(body)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Skipped:
    """The buyer cannot become a FreeAgent contact; ``reason`` goes on the ledger row."""

    #: Human-readable and stable, e.g. "no name and no company: ...".
    reason: str


class FreeAgentContact(_ContactAttributes):
    """A contact as FreeAgent returns it: empty fields omitted, unknown ones ignored.

    Enums are read as plain strings: FreeAgent may return values we never write.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)
    #: The contact's identity: ``.../v2/contacts/70``.
    url: str
    #: Decimal string, e.g. "-100.0".
    account_balance: str | None = None
    created_at: UtcTime = None
    updated_at: UtcTime = None

    def writable(self) -> dict[str, Any]:
        """The writable attributes that are set, comparable with ``ContactPayload.to_api()``."""
        return self.model_dump(include=set(WRITABLE_CONTACT_FIELDS), exclude_none=True)
