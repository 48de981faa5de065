"""Dry run: what an export would do for each queued row, and why. Sends no writes.

Reads the ledger and the FreeAgent contact index (refreshed with GETs only); claims nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from daemon.db.queries import QUERIES
from daemon.db.records import ContactEntity, Profile
from profiles.freeagent_contact_export.config import ContactExportSettings, load_settings
from profiles.freeagent_contact_export.models import Skipped, payload_hash
from profiles.freeagent_contact_export.payload import build_contact_payload
from profiles.freeagent_contact_export.prepared import read_buyer
from profiles.freeagent_contact_export.removal import (
    decide_removal,
    effective_delete_policy,
    live_user,
)

#: Statuses a dry run considers queued.
QUEUED = {"pending", "processing", "creating"}


@dataclass(frozen=True)
class PlannedAction:
    """One row's fate: create, update, link, unchanged or skip, with the reason."""

    entity_id: int
    source_key: str
    email: str | None
    action: str
    reason: str
    url: str | None
    payload: dict[str, Any] | None


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in new.items() if old.get(k) != v)


async def plan_export(
    *, pool: asyncpg.Pool, profile: Profile, ids: list[int] | None, limit: int = 1000
) -> list[PlannedAction]:
    """Decide, without writing anything, what an export would send for the queued rows."""
    cfg = load_settings(profile.name, profile.settings)
    options = cfg.contact_options()
    rows = await pool.fetch(QUERIES["entity_get_many"], profile.id, ids, limit)
    plan: list[PlannedAction] = []
    for record in rows:
        row = ContactEntity.from_row(record)
        if ids is None and row.status not in QUEUED:
            continue
        if row.metadata.get("deleted_in_magento"):
            plan.append(await _removal(pool, profile, cfg, row))
            continue
        buyer = read_buyer(row)
        built = buyer if isinstance(buyer, Skipped) else build_contact_payload(buyer, options)
        if isinstance(built, Skipped):
            plan.append(
                PlannedAction(
                    row.id, row.source_key, row.email, "skip", built.reason, row.freeagent_url, None
                )
            )
            continue
        payload = built.to_api()
        action, reason, url = await _decide(
            pool, profile, row, payload, payload_hash(built), built.email
        )
        plan.append(PlannedAction(row.id, row.source_key, row.email, action, reason, url, payload))
    return plan


async def _removal(
    pool: asyncpg.Pool, profile: Profile, cfg: ContactExportSettings, row: ContactEntity
) -> PlannedAction:
    """A customer gone from Magento: the same decision the export makes (a refused DELETE
    cannot be foreseen: the export then hides)."""
    policy = effective_delete_policy(profile.api_behaviour, cfg) or "none"
    url = row.freeagent_url
    removal = decide_removal(policy, url=url, still_used_by=await live_user(pool, url, row.id))
    action = {"keep": "remove", "hide": "hide", "delete": "delete"}[removal.action]
    return PlannedAction(row.id, row.source_key, row.email, action, removal.reason, url, None)


async def _decide(
    pool: asyncpg.Pool,
    profile: Profile,
    row: ContactEntity,
    payload: dict[str, Any],
    hash_: str,
    email: str | None,
) -> tuple[str, str, str | None]:
    client_id = profile.client_id or 0
    url = row.freeagent_url
    existing: dict[str, Any] = {}
    if url is None and email:
        match = await pool.fetchrow(QUERIES["fa_contact_by_email"], client_id, email)
        if match:
            url, existing = match["url"], match["data"]
            if profile.api_behaviour == "create":
                return "link", f"existing FreeAgent contact has e-mail {email}", url
            return (
                "update",
                (
                    f"link existing contact with e-mail {email}; fields: "
                    + ", ".join(_diff(existing, payload))
                ),
                url,
            )
    if url is None:
        if profile.api_behaviour == "update":
            return "skip", "api_behaviour is update and no FreeAgent contact exists", None
        return "create", "no FreeAgent contact with this e-mail", None
    if profile.api_behaviour == "create":
        return "unchanged", "api_behaviour is create: existing contacts are not updated", url
    if hash_ == row.payload_hash:
        return "unchanged", "payload equals the one FreeAgent last accepted", url
    return "update", "customer details changed since the last export", url
