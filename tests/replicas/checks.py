"""What "never a duplicate, never a lost customer" means, as queries over the ledger and the
simulators. Shared by the replica tests and bench/chaos.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg

from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState

#: Ledger statuses of a row that reached FreeAgent (or needs nothing from it).
DONE = frozenset({"created", "updated", "linked", "unchanged"})
#: Ledger statuses of a row that still has work to do.
OPEN = ("pending", "processing", "creating")


def expected_keys(magento: MagentoState) -> set[str]:
    """Ledger keys every Magento customer and guest buyer must end up under."""
    keys = {f"customer:{cid}" for cid in magento.customers}
    keys |= {
        f"guest:{str(o.get('customer_email') or '').strip().lower()}"
        for o in magento.orders.values()
        if o.get("customer_is_guest") == 1 and str(o.get("customer_email") or "").strip()
    }
    return keys


def duplicates(freeagent: FreeAgentState) -> dict[str, int]:
    """E-mails FreeAgent holds more than one contact for, with how many."""
    emails = Counter(c["email"].lower() for c in freeagent.contacts_list() if c.get("email"))
    return {email: n for email, n in emails.items() if n > 1}


async def ledger(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM contact_entity ORDER BY id")]


async def open_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Ledger rows with work left (queued, claimed, or a create not yet confirmed)."""
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT id, source_key, status::text, claimed_by_run, attempts, next_attempt_at"
            "  FROM contact_entity WHERE status::text = ANY($1) ORDER BY id",
            list(OPEN),
        )
    ]


async def running_runs(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT id, owner, lease_expires_at FROM profile_run WHERE status = 'running'"
        )
    ]


async def settled(pool: asyncpg.Pool, magento: MagentoState) -> bool:
    """Every Magento record is on the ledger and no ledger row has work left."""
    keys = {r["source_key"] for r in await pool.fetch("SELECT source_key FROM contact_entity")}
    return expected_keys(magento) <= keys and not await open_rows(pool)


@dataclass(frozen=True)
class ExportCheck:
    """The end state, summarised for assertions and for bench figures."""

    customers: int  #: ledger rows (Magento customers and guest buyers)
    exported: int  #: rows that reached FreeAgent
    skipped: int  #: rows the mapping refused (no name...), with their reason
    duplicates: dict[str, int]  #: e-mail -> contacts in FreeAgent, where more than one
    problems: list[str]  #: rows not exported, or pointing at no contact


async def check_export(pool: asyncpg.Pool, freeagent: FreeAgentState) -> ExportCheck:
    """Compare the ledger with FreeAgent: every exportable row points at a live contact,
    every contact with an e-mail belongs to exactly one such e-mail."""
    rows = await ledger(pool)
    contacts = {c["url"]: c for c in freeagent.contacts_list()}
    problems = []
    exported = [r for r in rows if r["status"] != "skipped"]
    reached = [r for r in exported if r["status"] in DONE and r["freeagent_url"] in contacts]
    for row in exported:
        if row["status"] not in DONE:
            problems.append(f"{row['source_key']}: {row['status']} {row['last_error']}")
        elif row["freeagent_url"] not in contacts:
            problems.append(f"{row['source_key']}: {row['freeagent_url']} is not in FreeAgent")
    emails_exported = {r["email"].lower() for r in exported if r["email"]}
    emails_in_fa = {c["email"].lower() for c in contacts.values() if c.get("email")}
    problems += [f"contact for {e} has no ledger row" for e in emails_in_fa - emails_exported]
    problems += [f"no contact for {e}" for e in emails_exported - emails_in_fa]
    return ExportCheck(
        customers=len(rows),
        exported=len(reached),
        skipped=len(rows) - len(exported),
        duplicates=duplicates(freeagent),
        problems=problems,
    )
