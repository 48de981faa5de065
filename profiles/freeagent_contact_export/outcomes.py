"""Outcome writes: a row's result (created, updated, linked...) recorded on the ledger.

The workers' outcomes are written together (groupcommit.py): contacts just created are indexed
and every row's outcome recorded in one statement, fenced by the run like entity_finish. Each
worker still awaits its own write, so a row's outcome is committed before its worker moves on
(the next row of the same e-mail, say, sees it).

OUTCOME COMMITS. These statements commit without waiting for the WAL flush (PostgreSQL's
asynchronous commit, set for that one statement): a flush costs 1-2 ms on a common disk, and
waiting for it made the outcome writes the export's slowest step. Nothing is risked. Only a
PostgreSQL crash loses an unflushed commit, and then it loses every commit after it too (the
WAL is a prefix), so the ledger is as it was at some earlier moment: exactly what a crash of
fa-sync at that moment leaves, which the export already recovers from. A created row lost this
way is back to `creating` with its intent (committed with a flush before the POST) and is
adopted by the settle lookup; a lost update, link or failure is simply done again. Create
intents keep waiting for the flush: they must be durable before FreeAgent sees the POST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.context import RunContext
from daemon.db.queries import QUERIES
from daemon.errors import LeaseLost
from profiles.freeagent_contact_export.failures import UNSTORABLE
from profiles.freeagent_contact_export.groupcommit import GroupCommit
from profiles.freeagent_contact_export.resolve import ContactIndex


@dataclass(frozen=True)
class Outcome:
    """One row's outcome, as entity_finish records it."""

    entity_id: int
    status: str
    url: str | None
    hash: str | None
    error: dict[str, Any] | None
    meta: dict[str, Any]
    entry: dict[str, Any]  #: the attempt_history element
    created: dict[str, Any] | None = None  #: a contact just created: indexed first


class OutcomeWriter:
    """Writes outcomes of one run, several at a time."""

    def __init__(self, *, ctx: RunContext, index: ContactIndex) -> None:
        self._ctx = ctx
        self._index = index
        self._group: GroupCommit[Outcome, None] = GroupCommit(self._write_all, alone=UNSTORABLE)

    async def write(self, outcome: Outcome) -> None:
        """Record one outcome; LeaseLost if another run took the row over."""
        await self._group.submit(outcome)

    async def _write_all(self, outcomes: list[Outcome]) -> list[Exception | None]:
        created = self._index.index_rows([o.created for o in outcomes if o.created is not None])
        rows = [
            {"id": o.entity_id, "status": o.status, "url": o.url, "hash": o.hash,
             "error": o.error, "meta": o.meta, "entry": o.entry}
            for o in outcomes
        ]  # fmt: skip
        run = self._ctx.run
        records = await self._ctx.pool.fetch(
            QUERIES["entity_finish_many"], run.id, run.fence, rows, self._index.client_id, created
        )
        done = {r["id"] for r in records}
        return [
            None
            if o.entity_id in done
            else LeaseLost(f"run {run.id}: lease lost; entity {o.entity_id} not recorded")
            for o in outcomes
        ]
