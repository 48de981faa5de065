"""A claimed ledger row made ready to send: the collected record read back, its payload, and
the small pure rules the exporter applies to it (PUT bodies, per-record backoff)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from daemon.db.records import ContactEntity
from profiles.freeagent_contact_export.models import (
    Buyer,
    MagentoCustomer,
    MagentoGuestOrder,
    Skipped,
)

#: Ceiling of the per-record backoff across runs.
MAX_RECORD_BACKOFF = timedelta(hours=6)


def read_buyer(row: ContactEntity) -> Buyer | Skipped:
    """The collected Magento record as a Buyer, or why it cannot be read."""
    try:
        if row.source_key.startswith("guest:"):
            return Buyer.from_guest_order(MagentoGuestOrder.model_validate(row.source_data))
        return Buyer.from_customer(MagentoCustomer.model_validate(row.source_data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return Skipped(f"Magento record unreadable: {where}: {first['msg']}")


#: Text attributes fa-sync manages: when a customer loses one (company removed, address line
#: gone), the update sends "" so FreeAgent clears it instead of keeping the stale value.
CLEARABLE = frozenset(
    {
        "first_name",
        "last_name",
        "organisation_name",
        "email",
        "phone_number",
        "address1",
        "address2",
        "address3",
        "town",
        "region",
        "postcode",
        "sales_tax_registration_number",
    }
)


def update_body(p: Prepared, *, linked_now: bool) -> dict[str, Any]:
    """The PUT body: the payload, plus blanks for managed fields we sent before and no longer
    have. A contact linked just now was not written by us: leave its other fields alone."""
    if linked_now:
        return p.payload
    previous = set(p.row.metadata.get("sent_fields") or ())
    blanks = {k: "" for k in (previous & CLEARABLE) - p.payload.keys()}
    return {**p.payload, **blanks}


def record_backoff(base_seconds: float, attempts: int) -> timedelta:
    """Exponential per-record backoff across runs: base, 2*base, 4*base... capped."""
    return min(timedelta(seconds=base_seconds * 2 ** max(0, attempts - 1)), MAX_RECORD_BACKOFF)


@dataclass(frozen=True)
class Prepared:
    """A row ready to send: the payload and its hash."""

    row: ContactEntity
    payload: dict[str, Any]
    hash: str
    email: str | None
