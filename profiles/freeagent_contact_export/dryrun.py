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
from profiles.freeagent_contact_export.match import match_row
from profiles.freeagent_contact_export.models import Skipped, payload_hash
from profiles.freeagent_contact_export.payload import build_contact_payload
from profiles.freeagent_contact_export.prepared import read_buyer

#: Statuses a dry run considers queued.
QUEUED = {"pending", "processing", "creating"}


@dataclass(frozen=True)
class PlannedAction:
    """One row's fate: create, update, link, review, unchanged or skip, with the reason."""

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
        action, reason, url = await _decide(pool, profile, cfg, row, payload, payload_hash(built))
        plan.append(PlannedAction(row.id, row.source_key, row.email, action, reason, url, payload))
    return plan


async def _decide(
    pool: asyncpg.Pool,
    profile: Profile,
    cfg: ContactExportSettings,
    row: ContactEntity,
    payload: dict[str, Any],
    hash_: str,
) -> tuple[str, str, str | None]:
    client_id = profile.client_id or 0
    url = row.freeagent_url
    if url is None and "create_intent" not in row.metadata:
        # The export's own matching (match.py): share, link, review or create.
        decision = await match_row(pool, client_id=client_id, cfg=cfg, row=row, payload=payload)
        if decision.action == "review":
            return "review", decision.reason, None
        if decision.action == "share":
            return "link", decision.reason, decision.url
        if decision.action == "link" and decision.url:
            if profile.api_behaviour == "create":
                return "link", decision.reason, decision.url
            found = await pool.fetchrow(QUERIES["fa_contact_get"], client_id, decision.url)
            fields = ", ".join(_diff(found["data"] if found else {}, payload))
            return "update", f"link {decision.reason}; fields: {fields}", decision.url
        if profile.api_behaviour == "update":
            return "skip", "api_behaviour is update and no FreeAgent contact exists", None
        return "create", decision.reason, None
    if url is None:
        return "create", "an earlier create is settling: looked up before any new create", None
    if profile.api_behaviour == "create":
        return "unchanged", "api_behaviour is create: existing contacts are not updated", url
    if hash_ == row.payload_hash:
        return "unchanged", "payload equals the one FreeAgent last accepted", url
    return "update", "customer details changed since the last export", url
