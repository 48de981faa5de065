"""What a Magento webhook delivery says: which sender's format, which event, which customer.

Three senders post customer events, each in its own shape (reference §6):

    Adobe Commerce Webhooks  {"eventName": "observer.customer_save_after",
                              "data": {"data_object": {"entity_id": 7, ...}}}
    Mageplaza Webhook        a body the shop's admin writes (a Liquid template, no fixed
                             schema): fa-sync reads {"hook": "new_customer", "customer_id": "7"}
    Adobe I/O Events         {"type": "com.adobe.commerce.observer.customer_save_commit_after",
                              "data": {"value": {"entity_id": 7, ...}}} (relayed and signed)
    fa-sync's plain body     {"event": "customer.saved" | "customer.deleted", "customer_id": 7}

Parsing is pure: no I/O, no trust. The customer is read again from Magento before anything is
queued, so a body only ever names a customer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from daemon.numbers import whole_number


class EventKind(StrEnum):
    SAVED = "saved"
    DELETED = "deleted"


class Sender(StrEnum):
    """Whose format a delivery is in: it decides the answer the sender needs."""

    #: fa-sync's plain body or a relay of Adobe I/O Events (HMAC-signed; 202 when queued).
    FA_SYNC = "fa_sync"
    #: Adobe Commerce Webhooks: called inside the merchant's action, which any answer but
    #: 200 {"op": "success"} can abort.
    ADOBE_COMMERCE_WEBHOOKS = "adobe_commerce_webhooks"
    #: Mageplaza Webhook: counts only 200 and 201 as delivered.
    MAGEPLAZA = "mageplaza"


#: Customer events, by every name a sender gives them (Adobe I/O's without its
#: "com.adobe.commerce." prefix).
EVENT_NAMES = {
    # Adobe I/O Events (and Adobe Commerce Webhooks, which may subscribe to these too).
    "observer.customer_save_commit_after": EventKind.SAVED,
    "observer.customer_delete_commit_after": EventKind.DELETED,
    # Adobe Commerce Webhooks' observers.
    "observer.customer_save_after": EventKind.SAVED,
    "observer.customer_delete_after": EventKind.DELETED,
    # Mageplaza Webhook's hook types (fired from customer_save_after, customer_delete_before).
    "new_customer": EventKind.SAVED,
    "update_customer": EventKind.SAVED,
    "delete_customer": EventKind.DELETED,
    # fa-sync's plain body.
    "customer.saved": EventKind.SAVED,
    "customer.deleted": EventKind.DELETED,
}
#: Fired while the shop's database transaction is still open: until it commits, Magento
#: answers for the customer as it was (a new one is not found, a deleted one still exists).
IN_TRANSACTION = frozenset(
    {
        "observer.customer_save_after",
        "observer.customer_delete_after",
        "new_customer",
        "update_customer",
        "delete_customer",
    }
)
#: Mageplaza's hook types; those not in EVENT_NAMES are known and of no use to fa-sync.
MAGEPLAZA_HOOKS = frozenset(
    {
        "order", "new_order_comment", "new_invoice", "new_shipment", "new_creditmemo",
        "new_customer", "update_customer", "delete_customer", "new_product", "update_product",
        "delete_product", "new_category", "update_category", "delete_category",
        "customer_login", "subscriber", "abandoned_cart",
    }
)  # fmt: skip
#: Events of Magento entities fa-sync does not sync: answered "ignored", so a sender
#: subscribed to them (an Adobe I/O Events registration often is) does not retry forever.
IGNORED_PREFIXES = ("observer.sales_order_", "observer.customer_group_")
ADOBE_PREFIX = "com.adobe.commerce."
#: Keys naming the event: Adobe Commerce Webhooks', Adobe I/O Events', ours, Mageplaza's.
NAME_KEYS = ("eventName", "type", "event_code", "event", "hook", "hook_type")


@dataclass(frozen=True)
class Delivery:
    """One parsed delivery."""

    #: Whose format it is in.
    sender: Sender
    #: The event's name as sent, without Adobe I/O's prefix.
    name: str
    #: None: a known event fa-sync has no use for (answered "ignored").
    kind: EventKind | None
    #: The customer it names; None when ignored.
    customer_id: int | None

    @property
    def in_transaction(self) -> bool:
        """Answer first, read the customer later: the event was sent before the shop's save
        or delete committed, or by Adobe Commerce Webhooks, whose shop waits for the answer."""
        return self.sender is Sender.ADOBE_COMMERCE_WEBHOOKS or self.name in IN_TRANSACTION


class RefusedDelivery(ValueError):
    """A body that names no usable customer event; `sender` chooses how to say so."""

    def __init__(self, reason: str, sender: Sender = Sender.FA_SYNC) -> None:
        super().__init__(reason)
        self.sender = sender


def _customer_id(value: Any) -> int | None:
    number = whole_number(value)
    return number if number is not None and 0 < number < 2**63 else None


def sender_of(doc: dict[str, Any], name: str) -> Sender:
    """The sender whose format this is: Adobe Commerce Webhooks name the event `eventName`;
    a Mageplaza hook type names Mageplaza (the body is the admin's own template)."""
    if isinstance(doc.get("eventName"), str):
        return Sender.ADOBE_COMMERCE_WEBHOOKS
    return Sender.MAGEPLAZA if name in MAGEPLAZA_HOOKS else Sender.FA_SYNC


def _entity_id(doc: dict[str, Any]) -> int | None:
    """The customer id: top-level `customer_id`, else `entity_id`/`id` of the entity under
    `data` (`data.value` for Adobe I/O, `data.data_object` for Adobe Commerce Webhooks)."""
    data = doc.get("data")
    entity = data.get("value", data.get("data_object", data)) if isinstance(data, dict) else None
    candidates = [doc.get("customer_id")]
    if isinstance(entity, dict):
        candidates += [entity.get("entity_id"), entity.get("id")]
    return next((c for c in map(_customer_id, candidates) if c is not None), None)


def parse_event(body: bytes) -> Delivery:
    """The delivery a body holds, or RefusedDelivery saying what is wrong with it."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RefusedDelivery("body is not JSON") from None
    if not isinstance(doc, dict):
        raise RefusedDelivery("body is not a JSON object")
    names = [doc[k] for k in NAME_KEYS if isinstance(doc.get(k), str)]
    name = (names[0] if names else "").strip().removeprefix(ADOBE_PREFIX)
    sender = sender_of(doc, name)
    kind = EVENT_NAMES.get(name)
    if kind is None:
        if name.startswith(IGNORED_PREFIXES) or name in MAGEPLAZA_HOOKS:
            return Delivery(sender, name, None, None)
        raise RefusedDelivery(f"unknown event {name[:80]!r}", sender)
    customer_id = _entity_id(doc)
    if customer_id is None:
        raise RefusedDelivery("no customer id in the event", sender)
    return Delivery(sender, name, kind, customer_id)
