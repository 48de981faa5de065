"""One run of a freeagent_contact_export profile.

collect -> queue -> resolve -> export -> record.

Collect runs in a collect slot, the rest in an export slot (RunSlots): a run whose collect
queued nothing and finds nothing due ends there, without a FreeAgent request or an export
slot, so an idle shop costs one Magento read (two with guests) per fire.

The export does not wait for the collect to finish: once a stored chunk has made something
due, it takes its export slot and claims rows while the collect reads on (`Collecting`), so
a first sync of a big shop sends its first contacts after one page, not after the last. It
claims until nothing is due and the collect has finished, so rows the collect queues last
(guests, customers found deleted) are exported by the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from datetime import timedelta
from typing import Any

from daemon.clients.freeagent_answers import permission_level
from daemon.clients.ratelimit import priority_lane
from daemon.context import RunContext
from daemon.db.queries import QUERIES
from daemon.db.records import ContactEntity
from daemon.errors import ConfigError
from daemon.logs import get_logger
from profiles import profile_warnings
from profiles.freeagent_contact_export.collect import Collector
from profiles.freeagent_contact_export.config import ContactExportSettings, load_settings
from profiles.freeagent_contact_export.export import Exporter
from profiles.freeagent_contact_export.idset import IdSet
from profiles.freeagent_contact_export.locales import read_store_locales
from profiles.freeagent_contact_export.resolve import ContactIndex

log = get_logger(__name__)

#: FreeAgent returns e-mail and address fields only to users with this permission level or more.
MIN_PERMISSION_LEVEL = 3
#: The priority lane looks for rows this often even without a wake-up (a lost NOTIFY).
LANE_POLL_SECONDS = 5.0


#: An export slot waited for longer than this is logged (seconds).
SLOT_WAIT_NOTED = 1.0


class Collecting:
    """What a running collect has stored so far, for an export running alongside it."""

    def __init__(self) -> None:
        self._stored = asyncio.Event()
        self.finished = False  #: the collect ended: what it stores is in the ledger
        self.failed = False  #: it ended with an error: claim no further batch

    def stored(self) -> None:
        self._stored.set()

    def finish(self, *, failed: bool) -> None:
        self.finished, self.failed = True, failed
        self._stored.set()

    async def more(self) -> None:
        """Wait for the next chunk (or the end), unless one came since the last wait."""
        await self._stored.wait()
        self._stored.clear()


async def execute(ctx: RunContext) -> None:
    """Run every stage the options ask for; ConfigError stops the run with a clear message."""
    cfg = load_settings(ctx.profile.name, ctx.profile.settings)
    magento = None
    feed = Collecting()
    alongside: asyncio.Task[None] | None = None

    def stored() -> None:
        nonlocal alongside
        feed.stored()
        if alongside is None and ctx.options.export:
            alongside = asyncio.create_task(_export_alongside(ctx, cfg, magento, feed))

    # In the slot, not before: the statements of hundreds of runs claimed at one instant
    # would otherwise queue for the pool ahead of the claims still to come.
    try:
        async with ctx.slots.collect:
            await warn_about_settings(ctx)
            if ctx.options.collect:
                magento = await ctx.resources.magento(ctx.profile.connection_id)
                await Collector(ctx, magento, cfg, on_stored=stored).run()
        feed.finish(failed=False)
    except BaseException as exc:
        feed.finish(failed=True)  # the export stops after its batch; the collect's error wins
        await _wind_down(alongside, exc)
        raise
    if alongside is not None:
        await alongside
        return
    if ctx.options.export:
        await _export_when_due(ctx, cfg, magento, feed)


async def _wind_down(task: asyncio.Task[None] | None, exc: BaseException) -> None:
    """A task running beside one that failed with `exc`: cancelled with it if that was a
    cancellation, else left to finish what it started; its own outcome is dropped (the first
    error is the run's)."""
    if task is None:
        return
    if isinstance(exc, asyncio.CancelledError):
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _export_alongside(
    ctx: RunContext, cfg: ContactExportSettings, magento: Any, feed: Collecting
) -> None:
    """The export of a run whose collect is still reading: from the first chunk that makes
    something due (each chunk is looked at once: an unchanged shop takes no export slot)."""
    while not await _work_due(ctx):
        if feed.failed:
            return
        if feed.finished:
            await _nothing_due(ctx)
            return
        await feed.more()
    await _export_in_slot(ctx, cfg, magento, feed)


async def _export_when_due(
    ctx: RunContext, cfg: ContactExportSettings, magento: Any, feed: Collecting
) -> None:
    if not await _work_due(ctx):
        await _nothing_due(ctx)
        return
    await _export_in_slot(ctx, cfg, magento, feed)


async def _nothing_due(ctx: RunContext) -> None:
    log.info("nothing_due")
    await note_settling(ctx, 0)


async def _export_in_slot(
    ctx: RunContext, cfg: ContactExportSettings, magento: Any, feed: Collecting
) -> None:
    if feed.failed:
        return
    waiting = time.monotonic()
    async with ctx.slots.export:
        waited = time.monotonic() - waiting
        if waited > SLOT_WAIT_NOTED:
            log.info("export_slot_waited", seconds=round(waited, 1))
        await export(ctx, cfg, magento, feed)


async def _work_due(ctx: RunContext) -> bool:
    """Whether the export has anything to claim; a run asked for ids or an import always
    goes on (they look at FreeAgent whatever the ledger says)."""
    if ctx.options.ids or ctx.options.import_only:
        return True
    due = await ctx.pool.fetchval(
        QUERIES["entity_work_due"], ctx.profile.id, ctx.run.id, ctx.clock(),
        ctx.settings.settle_window().total_seconds(),
    )  # fmt: skip
    return bool(due)


async def export(
    ctx: RunContext, cfg: ContactExportSettings, magento: Any = None, feed: Collecting | None = None
) -> None:
    """Resolve and export what is due (or import, or the priority lane), in an export slot."""
    freeagent = await open_freeagent(ctx, cfg)
    index = ContactIndex(
        pool=ctx.pool, client_id=_client_id(ctx), freeagent=freeagent,
        sweep_every=timedelta(hours=ctx.settings.contact_sweep_hours),
    )  # fmt: skip
    if ctx.options.import_only:
        await index.refresh(full=True)
        linked = await ctx.pool.fetch(
            QUERIES["entity_import_links"], ctx.profile.id, _client_id(ctx)
        )
        ctx.counts.linked = len(linked)
        await _import_ambiguous(ctx)
        log.info("contacts_imported", linked=len(linked), needs_review=ctx.counts.needs_review)
        return
    await index.refresh()
    store_locales = (
        await read_store_locales(ctx, cfg.contact.locale, magento)
        if cfg.store.locales_from_magento
        else {}
    )
    exporter = Exporter(
        ctx=ctx,
        freeagent=freeagent,
        index=index,
        cfg=cfg,
        client_id=_client_id(ctx),
        store_locales=store_locales,
    )
    # The lane has its own exporter (one record at a time) so a priority row never queues
    # behind the backlog batch for a concurrency slot; the run's counts are shared.
    lane_ctx = dataclasses.replace(
        ctx, settings=ctx.settings.model_copy(update={"export_concurrency": 1})
    )
    lane = Exporter(
        ctx=lane_ctx, freeagent=freeagent, index=index, cfg=cfg, client_id=_client_id(ctx),
        store_locales=store_locales,
    )  # fmt: skip
    if ctx.options.priority_only:
        await export_priority(ctx, lane)
        await note_settling(ctx, lane.creates.settling)
        return
    await drain(ctx, exporter, lane, feed)


async def _import_ambiguous(ctx: RunContext) -> None:
    """Rows whose e-mail several FreeAgent contacts carry: reported and left for a person
    (needs_review, `fa-sync match list`), never guessed."""
    rows = await ctx.pool.fetch(
        QUERIES["entity_import_review"], ctx.profile.id, _client_id(ctx), ctx.clock()
    )
    ctx.counts.needs_review = len(rows)
    for row in rows:
        ctx.counts.note(
            "warning",
            f"{row['source_key']}: several FreeAgent contacts have e-mail {row['email']}; "
            "not linked (fa-sync match list)",
            entity_id=row["id"],
        )


async def warn_about_settings(ctx: RunContext) -> None:
    """Settings the FreeAgent company would not go along with (cached configuration data):
    a warning in the run's messages and the log, never a stop."""
    if ctx.profile.client_id is None:
        return
    row = await ctx.pool.fetchrow(QUERIES["client_get"], ctx.profile.client_id)
    if row is None or not isinstance(row["config_data"], dict):
        return
    for warning in profile_warnings(ctx.profile, row["name"], row["config_data"]):
        log.warning("profile_settings_mismatch", warning=warning)
        ctx.counts.note("warning", warning)


def _client_id(ctx: RunContext) -> int:
    if ctx.profile.client_id is None:
        raise ConfigError(
            f"profile {ctx.profile.name}: no FreeAgent client (fa-sync profile set "
            f"{ctx.profile.name} --client NAME)"
        )
    return ctx.profile.client_id


async def open_freeagent(ctx: RunContext, cfg: ContactExportSettings) -> Any:
    """The profile's FreeAgent client, refusing users who cannot see contact details."""
    freeagent = await ctx.resources.freeagent(
        _client_id(ctx),
        profile_name=ctx.profile.name,
        log_requests=cfg.logging.log_requests,
        log_responses=cfg.logging.log_responses,
    )
    me = await freeagent.users_me(cached=True)
    level = permission_level(me)
    who = f"profile {ctx.profile.name}: FreeAgent user {me.get('email')}"
    need = f"contacts' e-mail and address need level {MIN_PERMISSION_LEVEL} or more"
    if level is None:
        # Below level 3 FreeAgent hides e-mail and address, and exporting blind would write
        # contacts without them: a level we cannot read is refused, not assumed high enough.
        said = repr(me["permission_level"])[:40] if "permission_level" in me else "nothing"
        raise ConfigError(f"{who} has no readable permission level (users/me says {said}); {need}")
    if level < MIN_PERMISSION_LEVEL:
        raise ConfigError(f"{who} has permission level {level}; {need}")
    return freeagent


async def drain(
    ctx: RunContext, exporter: Exporter, lane: Exporter | None = None,
    feed: Collecting | None = None,
) -> None:  # fmt: skip
    """Claim and export batches until none is due (and the collect, if one runs alongside,
    has finished) or the process is stopping; meanwhile the priority lane exports rows
    queued by Magento events as soon as they arrive."""
    finished = asyncio.Event()
    lane_task = asyncio.create_task(_lane(ctx, lane, finished), name="priority-lane")
    try:
        await _backlog(ctx, exporter, feed)
    finally:
        finished.set()
        ctx.wake.set()
        await lane_task
    settling = exporter.creates.settling + (lane.creates.settling if lane else 0)
    await note_settling(ctx, settling)


async def _lane(ctx: RunContext, lane: Exporter | None, finished: asyncio.Event) -> None:
    """Export priority rows whenever woken (or every LANE_POLL_SECONDS) until the backlog is
    done, then once more for rows that arrived meanwhile."""
    if lane is None:
        return
    while True:
        ctx.wake.clear()
        await export_priority(ctx, lane)
        if finished.is_set() or ctx.stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.wake.wait(), LANE_POLL_SECONDS)


async def export_priority(ctx: RunContext, lane: Exporter) -> int:
    """Claim and export the rows waiting in the priority lane, their requests served first by
    the rate budget; returns how many."""
    exported = 0
    with priority_lane():
        while not ctx.stopping.is_set():
            rows = await ctx.pool.fetch(
                QUERIES["entity_claim_priority"], ctx.profile.id, ctx.run.id, ctx.run.fence,
                ctx.clock(), ctx.profile.batch_size,
            )  # fmt: skip
            if not rows:
                break
            await lane.export_batch([ContactEntity.from_row(r) for r in rows])
            exported += len(rows)
    if exported:
        log.info("priority_exported", size=exported, **ctx.counts.as_dict())
    return exported


async def _backlog(ctx: RunContext, exporter: Exporter, feed: Collecting | None) -> None:
    """Claim and export batches, two at a time: while one batch sends, the next is claimed
    and decided (its rows then wait for the first's concurrency slots), so the requests never
    pause between batches."""
    done = IdSet()  #: rows this run claimed to export: not exported again when due again
    ids = list(ctx.options.ids) if ctx.options.ids else None
    sending: asyncio.Task[None] | None = None
    try:
        while not ctx.stopping.is_set() and not (feed and feed.failed):
            wanted = [i for i in ids if i not in done] if ids is not None else None
            if wanted == []:
                break
            rows = await ctx.pool.fetch(
                QUERIES["entity_claim_batch"],
                ctx.profile.id,
                ctx.run.id,
                ctx.run.fence,
                wanted,
                ctx.profile.batch_size,
                ctx.clock(),
                ctx.settings.settle_window().total_seconds(),
            )
            batch = [ContactEntity.from_row(r) for r in rows if r["id"] not in done]
            if not batch:
                if feed is None or feed.finished:
                    break
                await feed.more()  # the collect is still reading: wait for its next chunk
                continue
            done.update(r.id for r in batch)
            exporting = asyncio.create_task(_export_one(ctx, exporter, batch, len(done)))
            previous, sending = sending, exporting
            if previous is not None:
                await previous
    except BaseException as exc:
        # The batch claimed last stops before sending (the exporter saw the error).
        await _wind_down(sending, exc)
        raise
    if sending is not None:
        await sending


async def _export_one(
    ctx: RunContext, exporter: Exporter, batch: list[ContactEntity], claimed: int
) -> None:
    await exporter.export_batch(batch)
    if ctx.options.progress:
        ctx.options.progress("export", claimed, None)
    log.info("batch_exported", size=len(batch), **ctx.counts.as_dict())


async def note_settling(ctx: RunContext, settled_here: int) -> None:
    """Creates still settling, whichever run sent them: the run ends `warning` (they count as
    retrying) and history says how many, why, and until when."""
    row = await ctx.pool.fetchrow(
        QUERIES["entity_settling"],
        ctx.profile.id,
        ctx.clock(),
        ctx.settings.settle_window().total_seconds(),
    )
    settling = int(row["settling"]) if row else 0
    if not settling:
        return
    ctx.counts.retrying += max(0, settling - settled_here)
    message = (
        f"{settling} creates settling until {row['until'].isoformat()}: FreeAgent may still "
        "commit them; they are looked up (never re-sent) after the settle window"
    )
    ctx.counts.note("warning", message, settling=settling)
    ctx.counts.summary = message
