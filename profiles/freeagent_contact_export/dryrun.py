"""Dry run: the real export, rehearsed, with nothing sent to FreeAgent and nothing kept.

A dry run is a run of the profile through the daemon's own Runner (collect, resolve, payload,
the unchanged-hash check, rows of one person sharing one contact, and every decision added to
the export later), with two differences only:

* the database work happens in a transaction that is rolled back (daemon/db/rehearsal.py):
  the ledger, the index, the watermarks and the run history are as before;
* FreeAgent writes are recorded, not sent (dry_freeagent.py); reads are real.

So its totals are the counts the real export reports on the same world: a second copy of the
decisions would drift from the first the day either changed. What it cannot predict is what
only FreeAgent decides (see dry_freeagent.py) and anything that changes in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import asyncpg
import structlog

from daemon.context import Resources, RunOptions
from daemon.db.queries import QUERIES
from daemon.db.records import RunTrigger
from daemon.db.rehearsal import rehearsal
from daemon.runner import Runner
from daemon.settings import Settings
from profiles.freeagent_contact_export.clean import describe
from profiles.freeagent_contact_export.dry_freeagent import DryRunFreeAgent, Write

#: What a dry run cannot know, printed with every dry run.
CANNOT_PREDICT = (
    "FreeAgent refusals beyond its documented rules (e.g. an e-mail it finds invalid)",
    "contacts changed or deleted in FreeAgent, or customers changed in Magento, after the dry run",
    "deletes FreeAgent refuses for contacts with history (those are hidden instead)",
    "rate limits, timeouts and outages",
)

#: Ledger status after the rehearsed run -> what the real run would do.
ACTIONS = {
    "created": "create",
    "updated": "update",
    "linked": "link",
    "unchanged": "unchanged",
    "skipped": "skip",
    "failed": "fail",
    "needs_review": "needs review",
    "removed": "remove",
    "hidden": "hide",
    "deleted": "delete",
    "pending": "retry",
    "processing": "retry",
    "creating": "retry",
}


@dataclass(frozen=True)
class Change:
    """One field an update would change, from FreeAgent's copy to what would be sent."""

    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.field}: {_shown(self.old)} → {_shown(self.new)}"


@dataclass(frozen=True)
class PlannedRecord:
    """One ledger row's fate in the real run, and why."""

    entity_id: int
    source_key: str
    email: str | None
    action: str
    detail: str
    url: str | None
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class DryRunReport:
    """The rehearsed run's outcome: its counts (as the real run reports them) and records."""

    status: str
    error: str | None
    totals: dict[str, int]
    records: list[PlannedRecord]
    #: The run's messages not about one record (settings warnings, store locales unread...).
    messages: list[str] = field(default_factory=list)
    cannot_predict: tuple[str, ...] = CANNOT_PREDICT


class DryRunResources:
    """The run's API clients: Magento as is, FreeAgent with its writes recorded, not sent."""

    def __init__(self, real: Resources, clock: Callable[[], datetime]) -> None:
        self._real = real
        self._clock = clock
        self.freeagents: dict[int | None, DryRunFreeAgent] = {}

    async def freeagent(self, client_id: int | None, **kwargs: Any) -> DryRunFreeAgent:
        if client_id not in self.freeagents:
            real = await self._real.freeagent(client_id, **kwargs)
            self.freeagents[client_id] = DryRunFreeAgent(real, self._clock)
        return self.freeagents[client_id]

    async def magento(self, connection_id: int | None) -> Any:
        return await self._real.magento(connection_id)

    def writes(self) -> list[Write]:
        return [w for fa in self.freeagents.values() for w in fa.writes]


async def dry_run(
    *,
    pool: asyncpg.Pool,
    settings: Settings,
    resources: Resources,
    profile_id: int,
    options: RunOptions,
    clock: Callable[[], datetime],
) -> DryRunReport:
    """Run the profile as `fa-sync contact export` would, send no write, keep nothing."""
    dry = DryRunResources(resources, clock)
    async with rehearsal(pool) as db:
        # Held until the rehearsal is rolled back: claims of this profile's fires pass it
        # over meanwhile (skipped, saying so) instead of waiting for its uncommitted run row.
        await db.execute(QUERIES["rehearse_profile"], profile_id)
        # The rehearsal pool serves the subset of asyncpg.Pool the runner uses.
        runner = Runner(pool=cast(asyncpg.Pool, db), settings=settings, resources=dry, clock=clock)
        with structlog.contextvars.bound_contextvars(dry_run=True):
            outcome = await runner.fire(profile_id, trigger=RunTrigger.CLI, options=options)
        rows = []
        if outcome.run_id is not None:
            rows = await db.fetch(QUERIES["entity_touched_by_run"], profile_id, outcome.run_id)
        profile = await db.fetchrow(QUERIES["profile_get"], profile_id)
        writes = dry.writes()
        urls = sorted({w.url for w in writes if w.kind in ("update", "hide")})
        known = []
        if urls and profile is not None:
            known = await db.fetch(QUERIES["fa_contact_data_by_urls"], profile["client_id"], urls)
    before = {r["url"]: r["data"] if isinstance(r["data"], dict) else {} for r in known}
    records = [_record(dict(r), writes, before) for r in rows]
    totals = dict(outcome.counts.as_dict())
    totals.setdefault("hidden", sum(w.kind == "hide" for w in writes))
    totals.setdefault("needs_review", sum(r.action == "needs review" for r in records))
    messages = [
        f"{m.get('level')}: {m.get('message')}"
        for m in outcome.counts.messages
        if "entity_id" not in m and "source_key" not in m
    ]
    return DryRunReport(str(outcome.status), outcome.error, totals, records, messages)


def _record(row: dict[str, Any], writes: list[Write], before: dict[str, Any]) -> PlannedRecord:
    url = row.get("freeagent_url")
    mine = [w for w in writes if w.url == url]
    action = ACTIONS.get(str(row["status"]), str(row["status"]))
    kinds = {w.kind for w in mine}
    if action == "update" and kinds & {"hide", "delete"}:
        action = "delete" if "delete" in kinds else "hide"
    changes = (
        _changes(before.get(url or "") or {}, [w for w in mine if w.kind in ("update", "hide")])
        if action in ("update", "hide")
        else []
    )
    return PlannedRecord(
        entity_id=row["id"],
        source_key=row["source_key"],
        email=row.get("email"),
        action=action,
        detail=_detail(action, row, changes),
        url=None if url and "/contacts/dry-run-" in url else url,
        changes=changes,
    )


def _changes(old: dict[str, Any], writes: list[Write]) -> list[Change]:
    """Fields the writes would change on FreeAgent's copy ("" and absent are alike)."""
    sent: dict[str, Any] = {}
    for write in writes:
        sent.update(write.body)
    return [
        Change(name, old.get(name), value)
        for name, value in sorted(sent.items())
        if _blank(old.get(name)) != _blank(value)
    ]


def _detail(action: str, row: dict[str, Any], changes: list[Change]) -> str:
    """Why, in one line: the field changes of an update, FreeAgent's or our words for a
    failure, whose contact a link shares; then anything the mapping adjusted."""
    error = row.get("last_error") or {}
    meta = row.get("metadata") or {}
    if action in ("update", "hide"):
        why = "; ".join(map(str, changes)) or "no field changes (sent again)"
    elif action in ("fail", "skip", "retry", "needs review"):
        why = str(error.get("message") or error.get("reason") or meta.get("note") or "")
    elif action == "link" and meta.get("shared_with"):
        why = f"shares the contact of {meta['shared_with']}"
    elif action == "create":
        why = f"new contact for {row.get('email') or 'a buyer without e-mail'}"
    else:
        why = str(meta.get("note") or "")
    adjusted = meta.get("adjusted") or (error.get("adjusted") if action == "fail" else None)
    if isinstance(adjusted, list) and adjusted:
        why += f" (adjusted: {describe(adjusted)})"
    return why


def _blank(value: Any) -> Any:
    return None if value in (None, "") else value


def _shown(value: Any) -> str:
    return "(none)" if value in (None, "") else str(value)
