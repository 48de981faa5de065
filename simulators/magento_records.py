"""JSON shapes of Magento customers, addresses and orders, as the REST API returns them.

Two shape rules matter to clients and are easy to get wrong in a stand-in:

* nulls are omitted, never sent: an unset attribute is an absent key, and a non-default
  address has no `default_billing`/`default_shipping` keys at all;
* `region` is an object `{region_code, region, region_id}` on customer addresses but a plain
  string on order addresses (with `region_code`/`region_id` beside it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from simulators.magento_stores import currency_of, store_name

#: MySQL TIMESTAMP as Magento prints it: UTC wall clock, no zone suffix.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Order keys `build_order` computes itself; anything else passed in is copied as given.
_ORDER_INPUTS = frozenset(
    {"billing_address", "shipping_address", "items", "customer_firstname", "customer_lastname"}
)
#: Magento's key order for AddressInterface; unknown keys follow in insertion order.
# fmt: off
_ADDRESS_KEY_ORDER = (
    "id", "customer_id", "region", "region_id", "country_id", "street", "company", "telephone",
    "fax", "postcode", "city", "firstname", "lastname", "middlename", "prefix", "suffix",
    "vat_id", "default_shipping", "default_billing",
)
# fmt: on


def format_timestamp(moment: datetime) -> str:
    """`2024-03-01 09:30:00` in UTC, the only timestamp format the Magento API uses."""
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def omit_nulls(value: Any) -> Any:
    """A deep copy without None-valued keys: Magento leaves unset attributes out of the JSON."""
    if isinstance(value, dict):
        return {key: omit_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [omit_nulls(item) for item in value if item is not None]
    return copy.copy(value)


def omit_null_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """`omit_nulls` for an object, typed as one."""
    return {key: omit_nulls(item) for key, item in mapping.items() if item is not None}


def region_object(region: Any) -> dict[str, Any]:
    """Customer-address region: free text (str) becomes region_id 0 with code = name = the text.

    The text is kept verbatim, trailing spaces included ("London "), as Magento stores it.
    """
    if isinstance(region, str):
        return {"region_code": region, "region": region, "region_id": 0}
    if isinstance(region, Mapping):
        return {"region_id": 0, **omit_null_keys(region)}
    return {"region_id": 0}


def customer_address(
    fields: Mapping[str, Any], *, address_id: int, customer_id: int
) -> dict[str, Any]:
    """An AddressInterface dict in Magento's key order; default flags appear only when true."""
    address = omit_null_keys(fields)
    address["id"] = address_id
    address["customer_id"] = customer_id
    address["region"] = region_object(fields.get("region"))
    address["region_id"] = address["region"]["region_id"]
    if isinstance(address.get("street"), str):
        address["street"] = [address["street"]]
    for flag in ("default_billing", "default_shipping"):
        if not address.get(flag):
            address.pop(flag, None)
    rank = {key: index for index, key in enumerate(_ADDRESS_KEY_ORDER)}
    return dict(sorted(address.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def sync_default_ids(customer: dict[str, Any]) -> None:
    """Point `default_billing`/`default_shipping` (string ids) at the flagged addresses.

    A customer without such an address has no key at all, matching Magento's null omission.
    """
    for flag in ("default_billing", "default_shipping"):
        flagged = [a for a in customer.get("addresses", []) if a.get(flag)]
        if flagged:
            customer[flag] = str(flagged[0]["id"])
        else:
            customer.pop(flag, None)


def order_address(
    fields: Mapping[str, Any], *, entity_id: int, parent_id: int, address_type: str, email: str
) -> dict[str, Any]:
    """An OrderAddressInterface dict: `region` stays a plain string here."""
    address = omit_null_keys(fields)
    if isinstance(address.get("region"), Mapping):
        region = address.pop("region")
        address.update({k: v for k, v in region.items() if k in ("region", "region_code")})
        address.setdefault("region_id", region.get("region_id"))
    if isinstance(address.get("street"), str):
        address["street"] = [address["street"]]
    address.update(address_type=address_type, entity_id=entity_id, parent_id=parent_id, email=email)
    return omit_null_keys(address)


def default_billing(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A plain UK billing address for orders built without one."""
    return {
        "firstname": fields.get("customer_firstname") or "Alex",
        "lastname": fields.get("customer_lastname") or "Guest",
        "street": ["1 High Street"],
        "city": "London",
        "postcode": "EC1A 1BB",
        "country_id": "GB",
        "telephone": "020 7946 0000",
    }


def build_order(
    fields: Mapping[str, Any],
    *,
    entity_id: int,
    increment_id: str,
    next_id: Callable[[str], int],
    now: str,
) -> dict[str, Any]:
    """An OrderInterface dict; guest unless `customer_id` is given.

    `customer_firstname`/`customer_lastname` default to the billing names, as checkout copies
    them; pass them explicitly as None to model orders where they are missing.
    """
    if not fields.get("customer_email"):
        raise ValueError(f"order {increment_id}: customer_email is required")
    billing_fields = fields.get("billing_address") or default_billing(fields)
    billing, shipping = (
        order_address(
            source,
            entity_id=next_id("order_address"),
            parent_id=entity_id,
            address_type=kind,
            email=fields["customer_email"],
        )
        for kind, source in (
            ("billing", billing_fields),
            ("shipping", fields.get("shipping_address") or billing_fields),
        )
    )
    items = _order_items(fields.get("items"), entity_id)
    order = _order_header(fields, entity_id, increment_id, now)
    order.update(_totals(items, fields.get("store_id", 1)))
    order.update(_customer_names(fields, billing))
    order["items"] = items
    order["billing_address"] = billing
    order["payment"] = {"method": "checkmo", "amount_ordered": order["grand_total"]}
    order["status_histories"] = []
    order["extension_attributes"] = _shipping_assignments(shipping, items)
    order.update({k: v for k, v in fields.items() if k not in _ORDER_INPUTS and k not in order})
    return omit_null_keys(order)


def _order_header(
    fields: Mapping[str, Any], entity_id: int, increment_id: str, now: str
) -> dict[str, Any]:
    """Identity, customer and store columns of `sales_order`."""
    store_id = int(fields.get("store_id", 1))
    customer_id = fields.get("customer_id")
    return {
        "entity_id": entity_id,
        "increment_id": increment_id,
        "state": fields.get("state", "processing"),
        "status": fields.get("status", "processing"),
        "store_id": store_id,
        "store_name": store_name(store_id),
        "customer_id": customer_id,
        "customer_is_guest": fields.get("customer_is_guest", 0 if customer_id else 1),
        "customer_group_id": fields.get("customer_group_id", 1 if customer_id else 0),
        "customer_email": fields["customer_email"],
        "customer_note_notify": 1,
        "created_at": fields.get("created_at", now),
        "updated_at": fields.get("updated_at", fields.get("created_at", now)),
    }


def _customer_names(fields: Mapping[str, Any], billing: Mapping[str, Any]) -> dict[str, Any]:
    """Checkout copies billing names onto the order unless the caller says otherwise."""
    return {
        key: fields[key] if key in fields else billing.get(source)
        for key, source in (
            ("customer_firstname", "firstname"),
            ("customer_lastname", "lastname"),
        )
    }


def _order_items(items: Any, entity_id: int) -> list[dict[str, Any]]:
    """Line items with ids and row totals; one mug when none are given."""
    given = items or [{"sku": "MUG-ENAMEL", "name": "Enamel mug", "qty_ordered": 1, "price": 12.5}]
    lines = []
    for index, item in enumerate(given, start=1):
        qty, price = item.get("qty_ordered", 1), item.get("price", 10.0)
        line = {"item_id": entity_id * 100 + index, "order_id": entity_id, "product_type": "simple"}
        line.update(item)
        line.update(qty_ordered=qty, price=price, row_total=round(qty * price, 2))
        lines.append(line)
    return lines


def _totals(items: list[dict[str, Any]], store_id: int) -> dict[str, Any]:
    """Money columns in the store's currency (flat 4.95 shipping, prices VAT-inclusive)."""
    subtotal = round(sum(item["row_total"] for item in items), 2)
    shipping = 4.95
    grand = round(subtotal + shipping, 2)
    currency = currency_of(store_id)
    return {
        "base_currency_code": currency,
        "global_currency_code": currency,
        "order_currency_code": currency,
        "store_currency_code": currency,
        "subtotal": subtotal,
        "base_subtotal": subtotal,
        "shipping_amount": shipping,
        "base_shipping_amount": shipping,
        "tax_amount": round(grand - grand / 1.2, 2),
        "grand_total": grand,
        "base_grand_total": grand,
        "total_item_count": len(items),
        "total_qty_ordered": sum(item["qty_ordered"] for item in items),
    }


def _shipping_assignments(shipping: dict[str, Any], items: list[Any]) -> dict[str, Any]:
    """The shipping address lives only under extension_attributes on OrderInterface."""
    return {
        "shipping_assignments": [
            {
                "shipping": {
                    "address": shipping,
                    "method": "flatrate_flatrate",
                    "total": {"shipping_amount": 4.95, "base_shipping_amount": 4.95},
                },
                "items": copy.deepcopy(items),
            }
        ]
    }
