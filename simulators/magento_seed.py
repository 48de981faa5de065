"""Deterministic seed data for the Magento simulator: UK/EU customers and guest orders.

The awkward cases come first, so even a small seed contains them: unicode names, B2B
customers whose names are "-", blanks or empty, customers without addresses or without a
default billing address, 4-line streets, one email on two websites, VAT ids, free-text
regions with a trailing space, missing telephones, upper-case emails, fr/de store views.
Ordinary customers fill the rest. Guest orders include emails of registered customers,
repeat guests and an order without customer names. A few customers are created and deleted
again, leaving id gaps and an order whose `customer_id` was nulled.

Everything derives from `seed`; timestamps run forward from a fixed date, never from "now".
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from simulators.magento_records import format_timestamp
from simulators.magento_seed_cases import (
    EU_PLACES,
    FIRST_NAMES,
    HOME_PLACES,
    LAST_NAMES,
    PLACES,
    STREETS,
    address_spec,
    ascii_name,
    awkward_customers,
    awkward_guest_orders,
    customer_spec,
    guest_spec,
)

if TYPE_CHECKING:
    from simulators.magento_state import MagentoState

#: First seeded timestamp; later ones move forward by random steps.
_BASE_TIME = datetime(2023, 3, 1, 8, 0, 0, tzinfo=UTC)


def populate(state: MagentoState, *, customers: int, guest_orders: int, seed: int) -> None:
    """Fill `state` with `customers` customers (awkward first) and `guest_orders` guest orders."""
    rng = random.Random(seed)
    tick = _Ticker(rng)
    specs = awkward_customers()
    specs += [_ordinary_customer(rng, n) for n in range(max(customers - len(specs), 0))]
    for index, spec in enumerate(specs[:customers]):
        if index == 5 or rng.random() < 0.03:
            _add_deleted_customer(state, tick, index)
        created = tick()
        customer = state.add_customer(**spec, created_at=created, updated_at=tick.later(created))
        if index % 4 == 3 and customer.get("default_billing"):
            state.add_customer_order(customer["id"], created_at=tick())
    orders = awkward_guest_orders(state)
    orders += [_ordinary_guest_order(rng, n) for n in range(max(guest_orders - len(orders), 0))]
    for order in orders[:guest_orders]:
        state.add_guest_order(**order, created_at=tick())


class _Ticker:
    """Monotonic seeded timestamps: each call is a few hours to days after the previous one."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._now = _BASE_TIME

    def __call__(self) -> str:
        self._now += timedelta(minutes=self._rng.randint(90, 4 * 24 * 60))
        return format_timestamp(self._now)

    def later(self, created: str) -> str:
        """updated_at: often equal to created_at (never edited), else some days later."""
        if self._rng.random() < 0.4:
            return created
        moment = datetime.strptime(created, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        return format_timestamp(moment + timedelta(hours=self._rng.randint(1, 24 * 120)))


def _add_deleted_customer(state: MagentoState, tick: _Ticker, index: int) -> None:
    """A customer who ordered and was then deleted: an id gap and an orphaned order."""
    created = tick()
    spec = customer_spec(
        "Deleted",
        f"Account{index}",
        f"deleted.account{index}@example.com",
        [address_spec(PLACES[0], "Deleted", f"Account{index}", "9 Gone Street")],
    )
    customer = state.add_customer(**spec, created_at=created, updated_at=created)
    state.add_customer_order(customer["id"], created_at=tick())
    state.delete_customer(customer["id"])


def _ordinary_customer(rng: random.Random, index: int) -> dict[str, Any]:
    """A typical shopper: mostly UK on the base website, some on the eu views."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    on_eu = rng.random() < 0.25
    place = rng.choice(EU_PLACES if on_eu else HOME_PLACES)
    local = f"{ascii_name(first)}.{ascii_name(last)}{index}"
    domain = rng.choice(("example.com", "example.co.uk", "example.org"))
    email = f"{local}@{domain}"
    if rng.random() < 0.1:
        email = email.title()  # people type capitals; Magento keeps them
    street = f"{rng.randint(1, 180)} {rng.choice(STREETS)}"
    addresses = [] if rng.random() < 0.05 else [address_spec(place, first, last, street)]
    extra: dict[str, Any] = {"extension_attributes": {"is_subscribed": rng.random() < 0.3}}
    if addresses and rng.random() < 0.1:  # a sole trader buying for the business
        vat_id = f"{place.vat}{rng.randint(100_000_000, 999_999_999)}"
        addresses[0].update(company=f"{last} & Co", vat_id=vat_id)
        extra.update(group_id=2, taxvat=vat_id)
    if on_eu:
        extra.update(website_id=2, store_id=rng.choice((2, 3)))
    return customer_spec(first, last, email, addresses, **extra)


def _ordinary_guest_order(rng: random.Random, index: int) -> dict[str, Any]:
    """A typical one-off guest checkout."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    place = rng.choice(PLACES[:12])
    store_id = 1 if place.country_id in ("GB", "IE") else rng.choice((2, 3))
    email = f"{ascii_name(first)}.{ascii_name(last)}.guest{index}@example.net"
    return guest_spec(email, place, first, last, store_id=store_id)
