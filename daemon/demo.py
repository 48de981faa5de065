"""`fa-sync demo`: the main job end to end against both simulators, on a fresh database.

Embedded PostgreSQL (or DATABASE_URL's server), a throwaway `fa_sync_demo` database, seeded
Magento customers and guest buyers, a FreeAgent that already knows a few of them, faults on
the way, then: export, change a customer, export again. Prints progress and the results.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import SecretStr
from rich.table import Table

from daemon.cli_contacts import COUNT_KEYS, run_once
from daemon.cli_support import console, settings
from daemon.context import RunOptions
from daemon.db.pool import recreate_database
from daemon.db.queries import QUERIES
from daemon.logs import configure
from daemon.process import database_server, open_services
from daemon.runner import utcnow
from daemon.secretbox import embedded_key
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators

DEMO_DB = "fa_sync_demo"


@dataclass
class DemoClock:
    """The system clock plus an offset the demo moves forward, so creates whose outcome was
    unknown settle (FA_SYNC_CREATE_SETTLE_SECONDS) without making the user wait minutes."""

    offset: timedelta = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def _seed_existing(fa: FreeAgentState, mg: MagentoState, count: int = 3) -> list[str]:
    """Put a few customers in FreeAgent already, so the demo shows linking, not duplicating."""
    emails = []
    for customer in list(mg.customers.values())[-count:]:
        fa.add_contact(
            {"organisation_name": f"Existing contact {customer['id']}", "email": customer["email"]}
        )
        emails.append(customer["email"])
    return emails


def _run_table(title: str, outcomes: list[tuple[str, Any]]) -> Table:
    """One column per run, one row per count: fits an 80-column terminal."""
    table = Table(title=title)
    table.add_column("")
    for label, _ in outcomes:
        table.add_column(label, justify="right")
    table.add_row("status", *(str(o.status) for _, (o, _w) in outcomes))
    for key in COUNT_KEYS:
        table.add_row(key, *(str(o.counts.as_dict()[key]) for _, (o, _w) in outcomes))
    table.add_row("FreeAgent writes", *(str(w) for _, (_o, w) in outcomes))
    return table


def _contacts_table(stack: Stack, limit: int = 10) -> Table:
    table = Table(
        title=f"FreeAgent contacts (first {limit} of {len(stack.freeagent.contacts_list())})"
    )
    for col in ["name / organisation", "email", "town", "country", "locale"]:
        table.add_column(col)
    for c in stack.freeagent.contacts_list()[:limit]:
        name = c.get("organisation_name") or f"{c.get('first_name', '')} {c.get('last_name', '')}"
        table.add_row(
            name, c.get("email", ""), c.get("town", ""), c.get("country", ""), c.get("locale", "")
        )
    return table


async def run_demo(*, customers: int = 60, faults: bool = True) -> int:
    """Run the demo; returns the exit code (0 when every check holds)."""
    base = settings()
    configure(log_format="console", level="ERROR")
    server_dsn, server = await database_server(base)
    try:
        demo_dsn = await recreate_database(server_dsn, DEMO_DB)
        demo_settings = base.model_copy(
            update={
                "database_url": SecretStr(demo_dsn),
                # The demo's own key, kept beside the embedded data directory (mode 0600).
                "secret_key": base.secret_key or SecretStr(embedded_key(base.data_dir)),
                "http_retry_max_wait": 1.0,
                "record_retry_base_seconds": 0.0,
            }
        )
        return await _demo(demo_settings, customers=customers, faults=faults)
    finally:
        if server is not None:
            server.cleanup()


async def _demo(demo_settings: Settings, *, customers: int, faults: bool) -> int:
    fa = FreeAgentState(error_rate=0.05 if faults else 0.0, seed=11)
    mg = MagentoState.seeded(customers=customers, guest_orders=max(5, customers // 6))
    async with open_services(demo_settings) as s, simulators(freeagent=fa, magento=mg) as stack:
        await register(
            s.pool,
            stack,
            secrets=s.factory.secrets,
            profile="demo",
            settings={
                "contact": {"default_payment_terms_in_days": 30, "charge_sales_tax": "Auto"},
                "store": {"locales": {"2": "fr_FR", "3": "de_DE"}},
            },
        )
        linked = _seed_existing(fa, mg)
        console.rule("[bold]fa-sync demo")
        console.print(
            f"Magento simulator: {len(mg.customers)} customers, {len(mg.orders)} orders "
            f"at {stack.magento_url}"
        )
        console.print(
            f"FreeAgent simulator at {stack.freeagent_url}: {len(linked)} contacts exist "
            f"already (same e-mail as Magento customers)"
        )
        if faults:
            fa.inject_429(5, retry_after=1)
            console.print(
                "Faults on: 5% of FreeAgent requests fail with 5xx, a burst of 429s; "
                "retries and create reconciliation handle them"
            )
        results = []
        clock = DemoClock()
        outcome = await run_once(s, "demo", RunOptions(), clock=clock)
        results.append(("1st: export", (outcome, fa.write_count())))
        faults_seen = (fa.count_429, sum(1 for r in fa.requests if r.status >= 500))
        fa.reset_counters()
        outcome = await run_once(s, "demo", RunOptions(), clock=clock)
        results.append(("2nd: unchanged", (outcome, fa.write_count())))
        changed = next(iter(mg.customers.values()))
        mg.update_customer(changed["id"], lastname="Changed-In-Magento")
        fa.reset_counters()
        outcome = await run_once(s, "demo", RunOptions(), clock=clock)
        results.append(("3rd: 1 changed", (outcome, fa.write_count())))
        settling = await _settling(s.pool)
        if settling:
            # A 5xx on a create leaves its outcome unknown: FreeAgent may still commit it, so
            # fa-sync never re-sends it before the settle window has passed.
            console.print(
                f"{settling} create(s) answered 5xx: their outcome is unknown, so fa-sync waits "
                f"{demo_settings.settle_window()} before looking them up (never re-sending "
                "blindly). The demo moves its clock past that window; FreeAgent has recovered."
            )
            fa.error_rate = 0.0
            clock.offset += demo_settings.settle_window() + timedelta(minutes=1)
            fa.reset_counters()
            outcome = await run_once(s, "demo", RunOptions(), clock=clock)
            results.append(("4th: settled", (outcome, fa.write_count())))
        console.print(_run_table("runs of profile demo", results))
        if faults:
            console.print(
                f"survived during the first run: {faults_seen[0]} x 429, {faults_seen[1]} x 5xx"
            )
        console.print(_contacts_table(stack))
        return await _verdict(s.pool, stack, linked)


async def _settling(pool: asyncpg.Pool) -> int:
    """Ledger rows whose create is waiting for its settle window."""
    rows = await pool.fetch(QUERIES["entity_list"], None, "creating", 100000)
    return len(rows)


async def _verdict(pool: asyncpg.Pool, stack: Stack, linked: list[str]) -> int:
    """Check what a user cares about: one contact per e-mail, nobody missing."""
    ledger = Counter(
        r["status"] for r in await pool.fetch(QUERIES["entity_list"], None, None, 100000)
    )
    by_email = Counter(
        c["email"].lower() for c in stack.freeagent.contacts_list() if c.get("email")
    )
    duplicates = [e for e, n in by_email.items() if n > 1]
    table = Table(title="ledger (contact_entity) by status")
    table.add_column("status")
    table.add_column("rows")
    for status, n in sorted(ledger.items()):
        table.add_row(status, str(n))
    console.print(table)
    console.print(
        f"existing contacts linked, not duplicated: {all(by_email[e.lower()] == 1 for e in linked)}"
    )
    console.print(f"duplicate contacts in FreeAgent: {len(duplicates)}")
    stuck = ledger.get("pending", 0) + ledger.get("processing", 0) + ledger.get("creating", 0)
    ok = not duplicates and stuck == 0
    console.print("[green]demo OK[/green]" if ok else "[red]demo found problems[/red]")
    return 0 if ok else 1
