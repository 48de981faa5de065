"""Magento events -> the ledger's priority lane (see daemon/webhook.py for the endpoint).

A saved customer is read again from Magento (GET /V1/customers/{id}: the event says which
customer, Magento says what it looks like now, so an event can never carry stale or forged
data into FreeAgent), queued for every profile reading that connection exactly as collect
would queue it, and flagged for the priority lane. A customer Magento answers 404 for goes
through the delete policy (delete_policy below, the one place that decides).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from daemon.context import Resources
from daemon.db.queries import QUERIES
from daemon.db.records import Profile
from daemon.db.rehearsal import unrehearsed
from daemon.errors import ConfigError
from daemon.logs import get_logger
from daemon.webhook import EventKind, MagentoEvent
from profiles.freeagent_contact_export.collect import Collected, customer_record, upsert_arguments
from profiles.freeagent_contact_export.config import ContactExportSettings, load_settings
from profiles.freeagent_contact_export.removal import effective_delete_policy

log = get_logger(__name__)


async def queue_event(
    pool: asyncpg.Pool, resources: Resources, profiles: list[Profile], event: MagentoEvent
) -> list[int]:
    """Queue the event's customer for each profile; the ids of profiles with priority rows."""
    magento = await resources.magento(event.connection_id)
    customer = await magento.get_customer(event.customer_id)
    if customer is None:
        woken = []
        for profile, cfg in _configured(profiles):
            if await delete_policy(pool, profile, cfg, event.customer_id):
                woken.append(profile.id)
        return woken
    if event.kind is EventKind.DELETED:
        # Magento still has it: not deleted (never act on the event's word alone).
        log.info("event_customer_still_exists", customer_id=event.customer_id)
        return []
    entry = customer_record(customer)
    if isinstance(entry, str):
        log.warning("event_customer_ignored", customer_id=event.customer_id, reason=entry)
        return []
    woken = []
    for profile, cfg in _configured(profiles):
        if await _queue_saved(pool, profile, cfg, entry):
            woken.append(profile.id)
    return woken


def _configured(profiles: list[Profile]) -> list[tuple[Profile, ContactExportSettings]]:
    """The profiles whose settings load (a misconfigured one is flagged by the daemon)."""
    out = []
    for profile in profiles:
        try:
            out.append((profile, load_settings(profile.name, profile.settings)))
        except ConfigError:
            continue
    return out


def _in_scope(cfg: ContactExportSettings, customer: dict[str, Any], entry: Collected) -> bool:
    """The store restriction collect applies (website; store when the record names one)."""
    store = cfg.store
    if not store.restrict:
        return True
    if store.website_ids and entry.website_id not in store.website_ids:
        return False
    store_id = customer.get("store_id")
    return not store.store_ids or store_id is None or store_id in store.store_ids


async def _queue_saved(
    pool: asyncpg.Pool, profile: Profile, cfg: ContactExportSettings, entry: Collected
) -> bool:
    if not _in_scope(cfg, entry.data, entry):
        return False
    async with _ledger_of(pool, profile) as conn:
        if not cfg.events.queue_new_customers and not await conn.fetchval(
            QUERIES["entity_exists"], profile.id, entry.key
        ):
            return False
        await conn.execute(QUERIES["entity_upsert"], *upsert_arguments(profile.id, [entry]))
        # Unchanged customers stay as they are (nothing to send): only queued rows are flagged.
        flagged = await conn.fetch(QUERIES["entity_prioritise"], profile.id, entry.key)
    log.info("event_customer_queued", profile=profile.name, key=entry.key, queued=bool(flagged))
    return bool(flagged)


def _ledger_of(
    pool: asyncpg.Pool, profile: Profile
) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """A transaction for an event's writes to the profile's ledger, or ProfileRehearsed at
    once while a dry run of the profile holds its rows (the webhook answers 503 and the sender
    retries): waiting for the rehearsal would hold the request and a pooled connection for as
    long as the dry run lasts."""
    return unrehearsed(
        pool,
        profile.id,
        f"profile {profile.name}: a dry run of it is in progress; "
        "the event is queued when it is sent again after the dry run",
    )


async def delete_policy(
    pool: asyncpg.Pool, profile: Profile, cfg: ContactExportSettings, customer_id: int
) -> bool:
    """A customer Magento answers 404 for: queue its rows for the profile's delete policy
    (`removal.effective_delete_policy`; the export decides and acts, as for a full pass)."""
    if effective_delete_policy(profile.api_behaviour, cfg) is None:
        return False
    async with _ledger_of(pool, profile) as conn:
        rows = await conn.fetch(QUERIES["entity_rows_of_customer"], profile.id, customer_id)
        for row in rows:
            await conn.execute(QUERIES["entity_mark_deleted"], row["id"])
            await conn.execute(QUERIES["entity_prioritise"], profile.id, f"customer:{customer_id}")
            log.info("customer_deleted_in_magento", customer_id=customer_id, source="event")
    return bool(rows)
