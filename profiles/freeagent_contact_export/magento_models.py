"""Magento JSON as typed records (reference magento-api.md §2, §4).

Nulls are *omitted*, so every field is optional except the entity id; ids may arrive as
strings; the customer ``region`` is an object but the order ``region`` is a plain string;
timestamps are "YYYY-MM-DD HH:MM:SS" in UTC with no zone. Parsing is lenient about shapes PHP
really produces (``[]`` for an empty object, numbers where strings are declared) so one odd
record cannot stop a run; meaning is decided later, in ``payload.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# --- lenient parsers for Magento quirks -------------------------------------------------


def _utc_time(value: object) -> datetime | None:
    """Magento/FreeAgent timestamp → aware UTC datetime; junk ("0000-00-00 ...") → None.

    Magento writes UTC wall-clock time without a zone; a bad timestamp must not make the
    whole customer unreadable, so it degrades to "unknown".
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # an offset pushing year 9999 past the end of the calendar
        return None


def _empty_php_object(value: object) -> object:
    """PHP's json_encode writes an empty associative array as ``[]``, not ``{}``."""
    return {} if value == [] else value


def _php_list(value: object) -> object:
    """PHP's json_encode writes an array with non-sequential keys as an object: its values."""
    return list(value.values()) if isinstance(value, dict) else value


def _street_lines(value: object) -> object:
    """Street is a list of lines, but some extensions send one newline-joined string."""
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, list):
        return [str(line) for line in value if line is not None]
    return value


def _region_object(value: object) -> object:
    """Customer addresses carry a region object; accept the order-style plain string too."""
    return {"region": value} if isinstance(value, str) else value


def _region_text(value: object) -> object:
    """Order addresses carry a region string; accept the customer-style object too."""
    return value.get("region") if isinstance(value, dict) else value


def _custom_attributes(value: object) -> object:
    """Accept the ``{code: value}`` map some plugins emit as well as the documented list."""
    value = _empty_php_object(value)
    if isinstance(value, dict):
        return [{"attribute_code": code, "value": item} for code, item in value.items()]
    return value


def _loose_flag(value: object) -> object:
    """Magento flags may come as "" or other non-booleans; unknown means "not set"."""
    if isinstance(value, bool) or value in (0, 1, "0", "1", "true", "false"):
        return value
    return None


UtcTime = Annotated[datetime | None, BeforeValidator(_utc_time)]
Street = Annotated[list[str], BeforeValidator(_street_lines)]
ExtensionAttributes = Annotated[dict[str, Any], BeforeValidator(_empty_php_object)]
Flag = Annotated[bool | None, BeforeValidator(_loose_flag)]

_MAGENTO = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


# --- Magento ----------------------------------------------------------------------------


class MagentoRegion(BaseModel):
    """``RegionInterface``; free-text regions (GB) repeat the typed text in code and name."""

    model_config = _MAGENTO
    region_code: str | None = None
    region: str | None = None
    region_id: int | None = None


class MagentoCustomAttribute(BaseModel):
    """One ``custom_attributes`` entry; values are strings (multiselects comma-joined)."""

    model_config = _MAGENTO
    attribute_code: str
    value: Any = None


class _PersonName(BaseModel):
    """Name parts shared by customers and both address shapes."""

    model_config = _MAGENTO
    firstname: str | None = None
    lastname: str | None = None
    middlename: str | None = None
    prefix: str | None = None
    suffix: str | None = None


class AddressFields(_PersonName):
    """Fields customer and order addresses share (everything but ids and ``region``)."""

    customer_id: int | None = None
    company: str | None = None
    street: Street = Field(default_factory=list)
    city: str | None = None
    postcode: str | None = None
    #: ISO 3166 alpha-2.
    country_id: str | None = None
    region_id: int | None = None
    telephone: str | None = None
    fax: str | None = None
    vat_id: str | None = None


class MagentoAddress(AddressFields):
    """A customer address (``AddressInterface``); also the normalised guest billing address."""

    id: int | None = None
    region: Annotated[MagentoRegion | None, BeforeValidator(_region_object)] = None
    #: Only present (true) on the default address; absent, not false, elsewhere.
    default_billing: Flag = None
    default_shipping: Flag = None


class MagentoOrderAddress(AddressFields):
    """``OrderAddressInterface``: unlike customer addresses, ``region`` is a plain string."""

    entity_id: int | None = None
    parent_id: int | None = None
    address_type: str | None = None
    email: str | None = None
    region: Annotated[str | None, BeforeValidator(_region_text)] = None
    region_code: str | None = None
    customer_address_id: int | None = None


class MagentoCustomer(_PersonName):
    """``CustomerInterface`` as returned by ``/V1/customers/search`` or ``/V1/customers/{id}``."""

    id: int
    email: str | None = None
    group_id: int | None = None
    website_id: int | None = None
    store_id: int | None = None
    taxvat: str | None = None
    #: Address id of the default billing address; documented as a string.
    default_billing: str | int | None = None
    default_shipping: str | int | None = None
    addresses: Annotated[list[MagentoAddress], BeforeValidator(_php_list)] = Field(
        default_factory=list
    )
    created_at: UtcTime = None
    #: Not bumped by address-only edits (Magento issue 9419): not a full change detector.
    updated_at: UtcTime = None
    custom_attributes: Annotated[
        list[MagentoCustomAttribute], BeforeValidator(_custom_attributes)
    ] = Field(default_factory=list)
    extension_attributes: ExtensionAttributes = Field(default_factory=dict)


class MagentoGuestOrder(BaseModel):
    """A guest-checkout order (``customer_is_guest = 1``), trimmed to the buyer's details."""

    model_config = _MAGENTO
    entity_id: int
    #: Store-prefixed order number ("000000012"), a string even when it looks numeric.
    increment_id: str
    customer_email: str | None = None
    customer_firstname: str | None = None
    customer_lastname: str | None = None
    customer_middlename: str | None = None
    customer_prefix: str | None = None
    customer_suffix: str | None = None
    customer_taxvat: str | None = None
    store_id: int | None = None
    created_at: UtcTime = None
    #: Moves on every status/invoice change, so it over-reports buyer changes.
    updated_at: UtcTime = None
    billing_address: MagentoOrderAddress | None = None
    extension_attributes: ExtensionAttributes = Field(default_factory=dict)


# --- the mapping's input ----------------------------------------------------------------
