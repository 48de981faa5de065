"""The shop activity of `fa-sync demo --serve`."""

from __future__ import annotations

import random

from simulators.magento import MagentoState
from simulators.trickle import step


def test_trickle_alternates_sign_ups_and_changes() -> None:
    """Even steps add a customer with a fresh e-mail; odd steps bump one's updated_at."""
    state = MagentoState.seeded(customers=5, guest_orders=0)
    before = {c["id"]: c["updated_at"] for c in state.customers.values()}
    emails = {c["email"].lower() for c in state.customers.values()}
    rng = random.Random(1)
    said = [step(state, rng, n) for n in range(4)]
    assert [s.startswith("new customer") for s in said] == [True, False, True, False]
    added = [c for c in state.customers.values() if c["id"] not in before]
    assert len(added) == 2 and not {c["email"].lower() for c in added} & emails
    changed = [i for i, at in before.items() if state.customers[i]["updated_at"] != at]
    assert changed  # the odd steps changed someone who was there before
