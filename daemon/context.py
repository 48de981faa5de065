"""What one run of a profile is given, and what it reports back.

A profile type is a coroutine `execute(ctx: RunContext) -> None` that fills ctx.counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from daemon.db.records import Profile, Run
from daemon.settings import Settings


@dataclass(frozen=True)
class RunOptions:
    """How a run was asked to behave (CLI flags; the schedule uses the defaults)."""

    collect: bool = True  #: fetch from Magento before exporting
    export: bool = True  #: send to FreeAgent (False: collect only)
    full: bool = False  #: collect every customer, not only those updated since the watermark
    ids: tuple[int, ...] | None = None  #: only these ledger rows (contact export --id)
    #: Link ledger rows to existing FreeAgent contacts by e-mail instead of exporting.
    import_only: bool = False
    #: Export only the rows waiting in the priority lane (a run started by a Magento event).
    priority_only: bool = False
    #: Progress callback for the CLI: (stage, done, total or None).
    progress: Callable[[str, int, int | None], None] | None = None


@dataclass
class RunCounts:
    """Counts and notable messages of one run, written to its profile_run row."""

    collected: int = 0
    created: int = 0
    updated: int = 0
    linked: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0
    removed: int = 0  #: rows closed because their customer is gone (removed, hidden, deleted)
    drifted: int = 0  #: contacts found edited in FreeAgent since our last write
    #: Rows left for a person to match (several candidate contacts): nothing was written.
    needs_review: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: What a run without an error should show in history's error_summary (why `warning`).
    summary: str | None = None

    def note(self, level: str, message: str, **data: Any) -> None:
        """Keep at most 200 messages so a bad run cannot bloat its history row."""
        if len(self.messages) < 200:
            self.messages.append({"level": level, "message": message, **data})

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


@dataclass(frozen=True)
class RunSlots:
    """What a run waits for after it has claimed its fire (the daemon's; none for the CLI).

    A fire is claimed the moment it is due, whatever else runs: claiming is one statement,
    and the claim is what says "this replica runs it" to the others. Then the run reads
    Magento in a collect slot (I/O-bound: many at once) and, only if something is due,
    exports in an export slot, which has pooled connections of its own (Settings.pool_size).
    """

    #: Held while reading Magento into the ledger.
    collect: contextlib.AbstractAsyncContextManager[Any] = field(
        default_factory=contextlib.nullcontext
    )
    #: Held while exporting: resolve, FreeAgent writes, the priority lane.
    export: contextlib.AbstractAsyncContextManager[Any] = field(
        default_factory=contextlib.nullcontext
    )


class Resources(Protocol):
    """Builds API clients for a profile; implemented in daemon.resources."""

    async def freeagent(
        self,
        client_id: int | None,
        *,
        profile_name: str = "",
        log_requests: bool = False,
        log_responses: bool = False,
    ) -> Any: ...

    async def magento(self, connection_id: int | None) -> Any: ...


@dataclass
class RunContext:
    """Everything one run needs, passed in (no globals)."""

    pool: asyncpg.Pool
    settings: Settings
    profile: Profile
    run: Run
    resources: Resources
    options: RunOptions
    counts: RunCounts
    #: Set when the process is shutting down: finish the current batch, claim no more.
    stopping: asyncio.Event
    clock: Callable[[], datetime]
    #: Set when a row enters this profile's priority lane (NOTIFY fa_sync_priority).
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Slots of the process the run's stages wait for (none: run-once mode).
    slots: RunSlots = field(default_factory=RunSlots)
