"""A person's matching decisions (`fa-sync match link|create`), recorded on the ledger row.

Both put the row back in the queue as pending, so the next export acts on the decision:
`link` with the chosen FreeAgent contact (the export updates it), `create` with a flag that
makes the export create a new contact even though candidates exist. Each decision is kept in
metadata.review (what, who, when, and the candidates the person chose from) and appended to
attempt_history. A row being exported right now is refused: decide again after the run. So is
a row of a profile under a dry run, at once (its rows are held until the dry run ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from daemon.db.queries import QUERIES
from daemon.db.rehearsal import unrehearsed
from daemon.errors import ConfigError


@dataclass(frozen=True)
class Decided:
    """What a decision did, for the CLI to say."""

    row_id: int
    source_key: str
    url: str | None  #: the contact chosen (None: a new one will be created)
    previous_url: str | None  #: the contact the row used before, if any
    also_used_by: list[str]  #: other ledger rows using the chosen contact


async def _row(pool: asyncpg.Pool, row_id: int) -> asyncpg.Record:
    row = await pool.fetchrow(QUERIES["entity_review_get"], row_id)
    if row is None:
        raise ConfigError(f"ledger row {row_id}: no such row (fa-sync match list)")
    return row


def _decision(row: asyncpg.Record, what: str, url: str | None, by: str, now: datetime) -> Any:
    earlier = row["metadata"].get("review") if isinstance(row["metadata"], dict) else None
    review = {
        "decision": what, "url": url, "by": by, "at": now.isoformat(),
        "previous_url": row["freeagent_url"],
        "candidates": (earlier or {}).get("candidates", []),
    }  # fmt: skip
    entry = {"at": now.isoformat(), "outcome": "review", "decision": what, "url": url, "by": by}
    return review, entry


async def _apply(
    pool: asyncpg.Pool, row: asyncpg.Record, url: str | None, review: Any, entry: Any
) -> None:
    refused = (
        f"profile {row['profile_name']}: a dry run of it is in progress; "
        "decide again when it has finished"
    )
    async with unrehearsed(pool, row["profile_id"], refused) as conn:
        done = await conn.fetchval(QUERIES["entity_review_decide"], row["id"], url, review, entry)
    if done is None:
        raise ConfigError(
            f"ledger row {row['id']} is being exported right now ({row['status']}); "
            "decide again when the run has finished"
        )


async def link(pool: asyncpg.Pool, row_id: int, url: str, *, by: str, now: datetime) -> Decided:
    """Point the row at one FreeAgent contact of its profile's client; the next export
    updates that contact with the customer's details."""
    row = await _row(pool, row_id)
    url = url.strip()
    if row["client_id"] is None:
        raise ConfigError(f"ledger row {row_id}: profile {row['profile_name']} has no client")
    if await pool.fetchrow(QUERIES["fa_contact_get"], row["client_id"], url) is None:
        raise ConfigError(
            f"{url} is not a FreeAgent contact of profile {row['profile_name']}'s client as "
            f"far as fa-sync has seen (fa-sync contact collect -p {row['profile_name']} "
            "reads them again)"
        )
    owners = await pool.fetch(QUERIES["entity_url_owners"], row["client_id"], [url])
    review, entry = _decision(row, "link", url, by, now)
    await _apply(pool, row, url, review, entry)
    return Decided(
        row_id, row["source_key"], url, row["freeagent_url"],
        [f"{o['id']} ({o['source_key']})" for o in owners if o["id"] != row_id],
    )  # fmt: skip


async def create(pool: asyncpg.Pool, row_id: int, *, by: str, now: datetime) -> Decided:
    """The row gets a new FreeAgent contact on the next export, whatever the candidates. A row
    already linked (two people merged into one contact) is split off that contact."""
    row = await _row(pool, row_id)
    review, entry = _decision(row, "create", None, by, now)
    await _apply(pool, row, None, review, entry)
    return Decided(row_id, row["source_key"], None, row["freeagent_url"], [])
