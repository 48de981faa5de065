"""Shop activity for `fa-sync demo --serve`: now and then a shopper signs up or changes.

Gives a running daemon something to do on each fire, so an operator trying fa-sync sees runs
that create and update contacts rather than a string of empty ones.
"""

from __future__ import annotations

import asyncio
import random

from simulators.magento_seed import _ordinary_customer
from simulators.magento_state import MagentoState

#: New shoppers' e-mails are numbered from here, clear of the seeded ones.
FIRST_INDEX = 10_000


def step(state: MagentoState, rng: random.Random, n: int) -> str:
    """One change: every other step a new customer, else a changed last name. Returns what
    happened, in words."""
    if n % 2 == 0 or not state.customers:
        customer = state.add_customer(**_ordinary_customer(rng, FIRST_INDEX + n))
        return f"new customer {customer['id']}"
    customer_id = rng.choice(sorted(state.customers))
    state.update_customer(customer_id, lastname=f"{rng.choice(['Moved', 'Married'])}-{n}")
    return f"customer {customer_id} changed"


async def trickle(state: MagentoState, *, every: float, seed: int = 5) -> None:
    """Forever (until cancelled): one step every `every` seconds."""
    rng = random.Random(seed)
    n = 0
    while True:
        await asyncio.sleep(every)
        step(state, rng, n)
        n += 1
