"""State of the Magento simulator: customers, orders, credentials, fault switches, request log.

One `MagentoState` backs one simulated Magento. Tests and the demo build it (usually with
`MagentoState.seeded()`), hand it to `create_app()`, then both drive it (edit customers the way
an admin would, flip the Bearer flag, inject 429s) and inspect it (`requests`).

The write helpers keep Magento's bookkeeping quirks, because fa-sync's change detection
depends on them: saving a customer bumps `updated_at`; editing only an address does not.
"""

from __future__ import annotations

import copy
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from simulators import magento_seed
from simulators.magento_keyset import Table
from simulators.magento_records import (
    build_order,
    customer_address,
    format_timestamp,
    omit_null_keys,
    sync_default_ids,
)
from simulators.magento_search import Paging
from simulators.magento_stores import default_store_of, store_view

#: Works as `Authorization: Bearer demo-magento-token` while `bearer_enabled` is on.
DEMO_BEARER_TOKEN = "demo-magento-token"
#: Integration credentials of the demo consumer, for OAuth 1.0a signing.
DEMO_CONSUMER_KEY = "demo-consumer-key"

#: Magento's key order for CustomerInterface; unknown keys follow in insertion order.
# fmt: off
_CUSTOMER_KEY_ORDER = (
    "id", "group_id", "default_billing", "default_shipping", "confirmation", "created_at",
    "updated_at", "created_in", "dob", "email", "firstname", "lastname", "middlename", "prefix",
    "suffix", "gender", "store_id", "taxvat", "website_id", "addresses",
    "disable_auto_group_change", "extension_attributes", "custom_attributes",
)
# fmt: on


class OAuthCredentials(NamedTuple):
    """What Magento shows for an activated integration, minus the consumer key (the dict key)."""

    consumer_secret: str  #: signs with the token secret: `consumer_secret&token_secret`
    access_token: str  #: sent as oauth_token
    token_secret: str  #: never sent


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator answered it, for assertions."""

    method: str  #: HTTP method
    path: str  #: path without the query string, store code included
    query: dict[str, str]  #: decoded query (last value wins for repeated keys)
    status: int  #: status answered, faults included


def _utc_now() -> datetime:
    """Wall clock for created_at/updated_at and OAuth timestamps; Magento runs in UTC."""
    return datetime.now(UTC)


def _as_table(rows: Mapping[int, dict[str, Any]]) -> Table:
    """The rows as a Table (kept as it is when it already is one)."""
    return rows if isinstance(rows, Table) else Table(rows)


def _demo_consumers() -> dict[str, OAuthCredentials]:
    """One integration so the demo can sign OAuth requests out of the box."""
    return {
        DEMO_CONSUMER_KEY: OAuthCredentials(
            "demo-consumer-secret", "demo-access-token", "demo-token-secret"
        )
    }


@dataclass
class MagentoState:
    """Everything one simulated Magento knows; safe to mutate between requests."""

    #: id -> API JSON. A Table notices writes, so keyset pages can be read from its sorted
    #: keys (magento_keyset); a plain dict given here is copied into one.
    customers: Table = field(default_factory=Table)
    orders: Table = field(default_factory=Table)  #: entity_id -> API JSON, a Table likewise
    bearer_tokens: set[str] = field(default_factory=lambda: {DEMO_BEARER_TOKEN})
    #: consumer_key -> credentials, for OAuth 1.0a HMAC-SHA256/SHA1 signed requests
    oauth_consumers: dict[str, OAuthCredentials] = field(default_factory=_demo_consumers)
    #: models oauth/consumer/enable_integration_as_bearer (off by default on real 2.4.4+)
    bearer_enabled: bool = True
    #: "empty" (2.4) | "repeat_last" (2.3) | "first" (page 1 again) past the last page
    overflow_mode: str = "empty"
    #: Web API input limits (off by default on Magento, on here: the harsher reading): a
    #: larger pageSize is a 400 and an omitted one means default_page_size. None: no limit.
    max_page_size: int | None = 300
    default_page_size: int = 20  #: input limits on: what an omitted pageSize means
    #: No sortOrders: rows in reverse primary-key order (SQL order is unspecified, §1).
    unsorted_reversed: bool = True
    #: /V1/customers/search "might not" include extension/custom attributes (§2): omitted
    #: here; /V1/customers/{id} has them. True: the list carries them too.
    search_includes_attributes: bool = False
    error_rate: float = 0.0  #: share of requests a "proxy" answers with 503
    #: Retry-After seconds on those 503s. The proxy means it: until that time has passed
    #: (by `clock`) it answers every request 503 again, with the seconds still to wait.
    error_retry_after: int = 1
    #: Requests that came back before a 503's Retry-After had passed (each refused again).
    early_retries: int = 0
    latency: float = 0.0  #: seconds added before every answer
    seed: int = 7  #: seeds `rng`, which decides the 503s
    #: Customer ids customers/search leaves out of its items while total_count still counts
    #: them (a listing cut short); GET /V1/customers/{id} still answers them.
    search_omits: set[int] = field(default_factory=set)
    order_search_omits: set[int] = field(default_factory=set)  #: the same, for /V1/orders
    #: At most this many items a page, whatever pageSize asked, total_count unchanged: short
    #: pages while more records remain (a plugin dropping rows after the count). None: off.
    page_cap: int | None = None
    #: An `in` filter matches only its first value, as on some 2.1/2.2 builds (§8.4).
    in_first_value_only: bool = False
    #: Serve null-valued keys instead of omitting them (some plugins and proxies do).
    keep_nulls: bool = False
    #: Escape non-ASCII as \uXXXX like PHP's json_encode (4-byte characters as surrogate
    #: pairs, lone surrogates as "\ud800"); off: raw UTF-8, lone surrogates as invalid bytes.
    escape_unicode: bool = True
    clock: Callable[[], datetime] = _utc_now  #: "now" for timestamps and OAuth checks
    requests: list[RecordedRequest] = field(default_factory=list)  #: every request, in order
    #: ACL resources the integration was not granted ("Magento_Backend::stores"): refused 401.
    denied_resources: set[str] = field(default_factory=set)
    used_nonces: set[tuple[str, str]] = field(default_factory=set)  #: (consumer_key, nonce)
    rng: random.Random = field(init=False, repr=False)  #: fault decisions, seeded
    pending_429: deque[int] = field(init=False, repr=False)  #: Retry-After of queued 429s
    #: When the last proxy 503 lets requests through again (None: no 503 pending).
    unavailable_until: datetime | None = field(default=None, init=False, repr=False)
    _sequences: dict[str, int] = field(init=False, repr=False)  #: next auto-increment ids

    def __post_init__(self) -> None:
        self.customers = _as_table(self.customers)
        self.orders = _as_table(self.orders)
        self.rng = random.Random(self.seed)
        self.pending_429 = deque()
        self._sequences = self._initial_sequences()

    @classmethod
    def seeded(cls, customers: int = 50, guest_orders: int = 10, seed: int = 7) -> MagentoState:
        """A store with realistic UK/EU customers, the awkward cases first; same seed, same data."""
        state = cls(seed=seed)
        magento_seed.populate(state, customers=customers, guest_orders=guest_orders, seed=seed)
        return state

    def _initial_sequences(self) -> dict[str, int]:
        """Auto-increment counters that continue after whatever data the state was built with."""
        addresses = [a["id"] for c in self.customers.values() for a in c.get("addresses", [])]
        order_addresses = [o["billing_address"]["entity_id"] for o in self.orders.values()]
        sequences = {
            "customer": max(self.customers, default=0) + 1,
            "address": max(addresses, default=0) + 1,
            "order": max(self.orders, default=0) + 1,
            "order_address": max(order_addresses, default=0) + 2,
        }
        for order in self.orders.values():
            key = f"increment_{order['store_id']}"
            sequences[key] = sequences.get(key, 1) + 1
        return sequences

    def next_id(self, sequence: str) -> int:
        """Take the next value of an auto-increment; like MySQL, ids are never reused."""
        value = self._sequences.get(sequence, 1)
        self._sequences[sequence] = value + 1
        return value

    def now_text(self) -> str:
        """The clock as a Magento timestamp string."""
        return format_timestamp(self.clock())

    def paging(self) -> Paging:
        """Paging settings for the search engine."""
        return Paging(
            self.overflow_mode, self.max_page_size, self.default_page_size, self.unsorted_reversed
        )

    def inject_429(self, count: int, retry_after: int = 1) -> None:
        """Answer the next `count` requests with 429 Too Many Requests and this Retry-After."""
        self.pending_429.extend([retry_after] * count)

    def take_fault(self) -> tuple[int, int] | None:
        """(status, retry_after) if this request is to fail before reaching Magento, else None.

        A 503's Retry-After holds: a request before it has passed is refused again (counted
        in `early_retries`), told the whole seconds still to wait."""
        if self.pending_429:
            return 429, self.pending_429.popleft()
        now = self.clock()
        if self.unavailable_until is not None and now < self.unavailable_until:
            self.early_retries += 1
            return 503, math.ceil((self.unavailable_until - now).total_seconds())
        if self.error_rate and self.rng.random() < self.error_rate:
            self.unavailable_until = now + timedelta(seconds=self.error_retry_after)
            return 503, self.error_retry_after
        return None

    def add_customer(self, **fields: Any) -> dict[str, Any]:
        """Create a customer as the admin would; returns a copy of the stored JSON.

        Assigns `id`, address ids and `created_at`/`updated_at` (now, unless given: the seed
        backdates). Addresses flagged `default_billing`/`default_shipping` set the customer's
        string ids. Like Magento, (email, website_id) must be unique, case-insensitively.
        """
        if not fields.get("email"):
            raise ValueError("customer: email is required")
        customer_id = self.next_id("customer")
        website_id = int(fields.get("website_id", 1))
        store_id = int(fields.get("store_id", default_store_of(website_id)))
        self._check_unique_email(fields["email"], website_id, customer_id)
        now = self.now_text()
        record: dict[str, Any] = {
            "group_id": 1,
            "created_in": store_view(store_id).name,
            "disable_auto_group_change": 0,
            "extension_attributes": {"is_subscribed": False},
            **fields,
            "id": customer_id,
            "website_id": website_id,
            "store_id": store_id,
            "created_at": fields.get("created_at", now),
            "updated_at": fields.get("updated_at", fields.get("created_at", now)),
            "addresses": [self._address(a, customer_id) for a in fields.get("addresses") or []],
        }
        return self._store_customer(record)

    def add_raw_customer(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a customer exactly as given, for hostile-data tests: no normalisation, no
        uniqueness check, nulls kept. Only `id` (unless given) and `updated_at`/`created_at`
        (unless present, even as null) are filled in. Returns a copy of what is stored.

        Real Magento validates on save, but imports, plugins and direct SQL do not, and the
        REST API serves whatever the tables hold: NUL and control characters, 2,000-character
        names, e-mails Magento's own validator would refuse, numbers as strings.
        """
        stored = copy.deepcopy(record)
        stored.setdefault("id", self.next_id("customer"))
        now = self.now_text()
        stored.setdefault("created_at", now)
        stored.setdefault("updated_at", stored["created_at"])
        self.customers[stored["id"]] = stored
        return copy.deepcopy(stored)

    def update_customer(self, customer_id: int, **fields: Any) -> dict[str, Any]:
        """Save a customer: merge fields (None removes one) and bump `updated_at` like Magento.

        `addresses`, if given, replaces the whole list; entries without `id` get new ids.
        """
        record = self._customer(customer_id)
        changes = dict(fields)
        if "addresses" in changes:
            addresses = changes.pop("addresses") or []
            record["addresses"] = [self._address(a, customer_id) for a in addresses]
        if "email" in changes or "website_id" in changes:
            email = changes.get("email", record["email"])
            self._check_unique_email(
                email, changes.get("website_id", record["website_id"]), customer_id
            )
        record.update(changes)
        record["updated_at"] = fields.get("updated_at") or self.now_text()
        return self._store_customer(record)

    def update_address(self, customer_id: int, address_index: int, **fields: Any) -> None:
        """Edit one address in place WITHOUT bumping the customer's `updated_at`.

        Real quirk: addresses live in their own table, so an address-only edit is invisible to
        `updated_at gteq` polling. Only moving a default flag touches the customer row.
        """
        record = self._customer(customer_id)
        current = record["addresses"][address_index]
        merged = {**current, **fields}
        record["addresses"][address_index] = customer_address(
            merged, address_id=current["id"], customer_id=customer_id
        )
        if {"default_billing", "default_shipping"} & fields.keys():
            record["updated_at"] = self.now_text()
        self._store_customer(record)

    def delete_customer(self, customer_id: int) -> None:
        """Hard-delete a customer (addresses cascade); their orders lose `customer_id`.

        `sales_order.customer_id` is ON DELETE SET NULL while `customer_is_guest` stays 0, so
        such orders look like neither a guest's nor a customer's.
        """
        self._customer(customer_id)
        del self.customers[customer_id]
        for order in self.orders.values():
            if order.get("customer_id") == customer_id:
                del order["customer_id"]

    def add_guest_order(self, **fields: Any) -> dict[str, Any]:
        """Place a guest-checkout order (`customer_is_guest` 1, no `customer_id`); returns a copy.

        Needs `customer_email`; `billing_address` (region as a plain string) defaults to a UK
        address. Names default to the billing names unless passed (None = missing).
        """
        if "customer_id" in fields:
            raise ValueError("guest order: customer_id given; use add_customer_order()")
        return self._store_order({**fields, "customer_is_guest": 1, "customer_group_id": 0})

    def add_customer_order(self, customer_id: int, **fields: Any) -> dict[str, Any]:
        """Place an order as a registered customer, billing to their default billing address."""
        customer = self._customer(customer_id)
        defaults: dict[str, Any] = {
            "customer_id": customer_id,
            "customer_email": customer["email"],
            "customer_firstname": customer.get("firstname"),
            "customer_lastname": customer.get("lastname"),
            "customer_group_id": customer.get("group_id", 1),
            "store_id": customer.get("store_id", 1),
        }
        billing = _default_address(customer)
        if billing is not None:
            defaults["billing_address"] = billing
        return self._store_order({**defaults, **fields, "customer_is_guest": 0})

    def _store_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Number, build and keep an order; increment ids run per store with a store prefix."""
        entity_id = self.next_id("order")
        store_id = int(fields.get("store_id", 1))
        prefix = "" if store_id == 1 else str(store_id)
        increment_id = f"{prefix}{self.next_id(f'increment_{store_id}'):09d}"
        order = build_order(
            fields,
            entity_id=entity_id,
            increment_id=increment_id,
            next_id=self.next_id,
            now=self.now_text(),
        )
        self.orders[entity_id] = order
        return copy.deepcopy(order)

    def _customer(self, customer_id: int) -> dict[str, Any]:
        """The stored customer, or a KeyError naming the id."""
        if customer_id not in self.customers:
            raise KeyError(f"customer {customer_id}: no such customer")
        return self.customers[customer_id]

    def _address(self, fields: dict[str, Any], customer_id: int) -> dict[str, Any]:
        """Normalise one address, keeping its id or drawing a new one."""
        address_id = fields.get("id") or self.next_id("address")
        return customer_address(fields, address_id=address_id, customer_id=customer_id)

    def _check_unique_email(self, email: str, website_id: int, customer_id: int) -> None:
        """customer_entity is unique on (email, website_id); the same email may use two sites."""
        for other in self.customers.values():
            if (
                other["id"] != customer_id
                and other.get("website_id") == website_id
                and str(other.get("email") or "").lower() == email.lower()
            ):
                raise ValueError(
                    f"customer {email!r}: already exists on website {website_id} "
                    f"(customer {other['id']})"
                )

    def _store_customer(self, record: dict[str, Any]) -> dict[str, Any]:
        """Drop nulls, derive default ids, order keys like Magento, store; return a copy."""
        cleaned = omit_null_keys(record)
        sync_default_ids(cleaned)
        rank = {key: index for index, key in enumerate(_CUSTOMER_KEY_ORDER)}
        ordered = dict(sorted(cleaned.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        self.customers[ordered["id"]] = ordered
        return copy.deepcopy(ordered)


def _default_address(customer: dict[str, Any]) -> dict[str, Any] | None:
    """The default billing address in order-address form (region object flattened later)."""
    wanted = customer.get("default_billing")
    for address in customer.get("addresses", []):
        if str(address["id"]) == wanted:
            kept = {
                k: v
                for k, v in address.items()
                if k not in ("id", "default_billing", "default_shipping")
            }
            return {**kept, "customer_address_id": address["id"]}
    return None
