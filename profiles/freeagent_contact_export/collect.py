"""Collect: Magento customers and guest buyers -> the contact ledger (the queue).

Incremental by Magento's updated_at since the last successful collect (append mode), with an
overlap for late commits; a full pass on demand, in replace mode, and every
full_collect_every_hours because address-only edits leave updated_at alone.

Every record is cleaned before it is stored (see ``clean``) and one bad record never stops
the collect: a record that cannot be read is noted in the run's messages, one PostgreSQL
still refuses is queued as `skipped` with the reason. Watermarks never pass the run's own
clock, so a future-dated updated_at cannot hide later changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.clients.magento import ListingReport
from daemon.context import RunContext
from daemon.db.queries import QUERIES
from daemon.errors import ApiError
from daemon.logs import get_logger
from profiles.freeagent_contact_export.clean import (
    Note,
    clean_record,
    clean_text,
    describe,
    small_int,
)
from profiles.freeagent_contact_export.config import ContactExportSettings
from profiles.freeagent_contact_export.failures import UNSTORABLE
from profiles.freeagent_contact_export.removal import confirm_deleted, effective_delete_policy

log = get_logger(__name__)

#: Ledger rows written per executemany round trip.
CHUNK = 200
#: Stamps before this are junk ("0001-01-01"): they would not move the watermark anyway,
#: and one alone would make `watermark - overlap` overflow on the next run.
OLDEST_STAMP = datetime(2000, 1, 1, tzinfo=UTC)
#: Longest e-mail kept in the ledger's indexed email column (RFC 5321 allows 254); the full
#: value stays in source_data, which is what the export sends.
MAX_EMAIL_COLUMN = 320


def parse_magento_time(value: Any) -> datetime | None:
    """Magento timestamps are UTC 'YYYY-MM-DD HH:MM:SS' without a zone."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class CollectPlan:
    """Where this collect starts, decided from the state row and the options."""

    full: bool
    customers_since: datetime | None
    guests_since: datetime | None


def plan_collect(
    *, state: Any, cfg: ContactExportSettings, mode: str, force_full: bool, now: datetime
) -> CollectPlan:
    """Full when asked, in replace mode, on the first collect, or when a full pass is due."""
    watermark = state["magento_watermark"] if state else None
    if watermark is not None and watermark > now:
        # Pinned ahead by a future-dated record (before stamps were clamped): unusable.
        watermark = None
    last_full = state["last_full_collect_at"] if state else None
    due = cfg.full_collect_every_hours is not None and (
        last_full is None or now - last_full >= timedelta(hours=cfg.full_collect_every_hours)
    )
    full = force_full or mode == "replace" or watermark is None or due
    overlap = timedelta(seconds=cfg.collect_overlap_seconds)
    guest_mark = state["guest_watermark"] if state else None
    if guest_mark is not None and guest_mark > now:
        guest_mark = None
    return CollectPlan(
        full=full,
        customers_since=None if full or watermark is None else watermark - overlap,
        guests_since=None if full or guest_mark is None else guest_mark - overlap,
    )


@dataclass(frozen=True)
class Collected:
    """One Magento record, cleaned, ready for the ledger."""

    key: str  #: source_key: customer:<id> or guest:<e-mail>
    customer_id: int | None
    website_id: int | None
    email: str | None
    data: dict[str, Any]  #: the record after clean_record
    stamp: datetime | None  #: updated_at (customers) or created_at (guest orders)
    notes: list[Note]  #: what cleaning changed, for metadata.cleaned

    def row(self) -> tuple[Any, ...]:
        """This record's values of entity_upsert's arrays."""
        email = self.email[:MAX_EMAIL_COLUMN] if self.email else None
        cleaned = {"cleaned": self.notes} if self.notes else {}
        return (self.key, self.customer_id, self.website_id, email, self.data, cleaned)


def upsert_arguments(profile_id: int, entries: Sequence[Collected]) -> list[Any]:
    """Arguments of entity_upsert for `entries` (their keys unique): an array per column."""
    columns = zip(*(entry.row() for entry in entries), strict=True)
    return [profile_id, *(list(column) for column in columns)]


def customer_record(raw: Any) -> Collected | str:
    """A customer from /V1/customers/search as a ledger entry, or why it cannot be one."""
    if not isinstance(raw, dict):
        return f"Magento customer is not a JSON object ({type(raw).__name__}): ignored"
    data, notes = clean_record(raw)
    cid = small_int(data.get("id"))
    if cid is None:
        return f"Magento customer without a usable id ({data.get('id')!r:.40}): ignored"
    email = data.get("email")
    return Collected(
        key=f"customer:{cid}",
        customer_id=cid,
        website_id=small_int(data.get("website_id")),
        email=email.strip() if isinstance(email, str) else None,
        data=data,
        stamp=parse_magento_time(data.get("updated_at")),
        notes=notes,
    )


def guest_record(raw: Any, websites: dict[int, int] | None = None) -> Collected | str:
    """A guest order as a ledger entry keyed by e-mail, or why it cannot be one. `websites`
    (store id -> website id) gives the guest the website of its order's store: identity
    joins a guest to the account with its e-mail on that website."""
    if not isinstance(raw, dict):
        return f"Magento order is not a JSON object ({type(raw).__name__}): ignored"
    data, notes = clean_record(raw)
    email = str(data.get("customer_email") or "").strip().lower()
    if not email:
        return f"guest order {data.get('increment_id')!r:.40} without e-mail: ignored"
    # An e-mail cannot be longer than 254 characters; a longer value still gets a key that
    # fits PostgreSQL's index row limit.
    key = email if len(email) <= 254 else "#" + hashlib.sha256(email.encode()).hexdigest()
    return Collected(
        key=f"guest:{key}",
        customer_id=None,
        website_id=(websites or {}).get(small_int(data.get("store_id")) or -1),
        email=email,
        data=data,
        stamp=parse_magento_time(data.get("created_at")),
        notes=notes,
    )


class Collector:
    """Reads Magento and upserts the ledger in chunks."""

    def __init__(
        self,
        ctx: RunContext,
        magento: Any,
        cfg: ContactExportSettings,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._magento = magento
        self._cfg = cfg
        self._listing = ListingReport()  #: whether the customer listing read everyone
        #: Called after each chunk reaches the ledger (the export may claim it meanwhile).
        self._on_stored = on_stored

    async def run(self) -> int:
        """Collect customers (and guests); returns how many records were read."""
        ctx = self._ctx
        state = await ctx.pool.fetchrow(QUERIES["profile_state_get"], ctx.profile.id)
        plan = plan_collect(
            state=state,
            cfg=self._cfg,
            mode=ctx.profile.collect_mode,
            force_full=ctx.options.full,
            now=ctx.clock(),
        )
        log.info(
            "collect_started",
            full=plan.full,
            since=plan.customers_since.isoformat() if plan.customers_since else None,
        )
        # Every customer id listed, held only when the delete check below will read it: a
        # store of 200,000 customers makes it a 14 MiB set.
        check_deleted = plan.full and effective_delete_policy(ctx.profile.api_behaviour, self._cfg)
        seen_ids: set[int] | None = set() if check_deleted else None
        newest = await self._store(self._customers(plan), seen_ids, "customers")
        guest_newest = None
        if self._cfg.include_guests:
            websites = await self._store_websites()
            guest_newest = await self._store(self._guests(plan, websites), None, "guests")
        await ctx.pool.execute(
            QUERIES["profile_set_watermarks"],
            ctx.profile.id,
            newest,
            guest_newest,
            ctx.clock() if plan.full else None,
            ctx.clock(),
        )
        if seen_ids is not None:
            await self._flag_deleted(seen_ids)
        log.info("collect_finished", collected=ctx.counts.collected, full=plan.full)
        return ctx.counts.collected

    async def _customers(self, plan: CollectPlan) -> AsyncIterator[Collected | None]:
        store = self._cfg.store
        async for customer in self._magento.iter_customers(
            updated_since=plan.customers_since,
            website_ids=store.website_ids or None if store.restrict else None,
            store_ids=store.store_ids or None if store.restrict else None,
            page_size=self._ctx.profile.collection_size,
            listing=self._listing,
        ):
            entry = self._isolated(customer_record, customer)
            if entry is None:
                self._listing.gap("a customer record could not be read")
            yield entry

    async def _store_websites(self) -> dict[int, int]:
        """Store id -> website id; without it guests have no website (noted, not fatal).
        Customers were read already, so a 401 here is the integration's store ACL."""
        try:
            views = await self._magento.store_views()
        except ApiError as exc:
            self._ctx.counts.note(
                "warning", f"Magento store views not read ({exc}): guests have no website"
            )
            return {}
        pairs = ((small_int(v.get("id")), small_int(v.get("website_id"))) for v in views
                 if isinstance(v, dict))  # fmt: skip
        return {s: w for s, w in pairs if s is not None and w is not None}

    async def _guests(
        self, plan: CollectPlan, websites: dict[int, int]
    ) -> AsyncIterator[Collected | None]:
        """Guest orders grouped by e-mail; the newest order's details win."""
        store = self._cfg.store
        async for order in self._magento.iter_guest_orders(
            created_since=plan.guests_since,
            store_ids=store.store_ids or None if store.restrict else None,
            page_size=self._ctx.profile.collection_size,
        ):
            yield self._isolated(lambda raw: guest_record(raw, websites), order)

    def _isolated(self, read: Callable[[Any], Collected | str], raw: Any) -> Collected | None:
        """One Magento record as a ledger entry; a record that cannot be one is noted, and
        never stops the collect."""
        try:
            entry = read(raw)
        except Exception as exc:  # a bug meeting an odd record: note it, go on with the rest
            log.exception("collect_record_failed")
            entry = f"Magento record not collected: internal error: {type(exc).__name__}: {exc}"
        if isinstance(entry, str):
            reason, _ = clean_text(entry)
            self._ctx.counts.note("error", reason)
            log.warning("collect_record_ignored", reason=reason)
            return None
        if entry.notes:
            self._ctx.counts.note(
                "warning", f"{entry.key}: cleaned: {describe(entry.notes)}", source_key=entry.key
            )
        return entry

    async def _store(
        self, records: AsyncIterator[Collected | None], seen: set[int] | None, stage: str
    ) -> datetime | None:
        newest: datetime | None = None
        chunk: dict[str, Collected] = {}
        async for entry in records:
            if entry is None:
                continue
            if seen is not None and entry.customer_id is not None:
                seen.add(entry.customer_id)
            newest = self._newer(newest, entry)
            # Later records of one key (repeat guest orders) replace earlier ones.
            chunk[entry.key] = entry
            if len(chunk) >= CHUNK:
                await self._flush(chunk, stage)
        await self._flush(chunk, stage)
        return newest

    def _newer(self, newest: datetime | None, entry: Collected) -> datetime | None:
        """The watermark candidate; a stamp after our own clock cannot be trusted (a
        future-dated record would pin the watermark ahead and hide every later change)."""
        stamp = entry.stamp
        if stamp is None or stamp < OLDEST_STAMP:
            return newest
        now = self._ctx.clock()
        if stamp > now + timedelta(seconds=self._cfg.collect_overlap_seconds):
            self._ctx.counts.note(
                "warning",
                f"{entry.key}: updated_at {stamp.isoformat()} is in the future; "
                "the collect watermark stops at now",
                source_key=entry.key,
            )
        stamp = min(stamp, now)
        return stamp if newest is None or stamp > newest else newest

    async def _flush(self, chunk: dict[str, Collected], stage: str) -> None:
        if not chunk:
            return
        entries = list(chunk.values())
        chunk.clear()
        profile_id = self._ctx.profile.id
        if not self._cfg.events.queue_new_customers:
            entries = [
                e
                for e in entries
                if await self._ctx.pool.fetchval(QUERIES["entity_exists"], profile_id, e.key)
            ]
        if entries:
            try:
                await self._ctx.pool.execute(
                    QUERIES["entity_upsert"], *upsert_arguments(profile_id, entries)
                )
            except UNSTORABLE:
                # The statement is atomic: find the record PostgreSQL refuses, store the others.
                for entry in entries:
                    await self._store_one(entry)
        self._ctx.counts.collected += len(entries)
        if self._on_stored is not None:
            self._on_stored()
        if self._ctx.options.progress:
            self._ctx.options.progress(f"collect {stage}", self._ctx.counts.collected, None)

    async def _store_one(self, entry: Collected) -> None:
        """Store one record; one PostgreSQL still refuses is queued as skipped with the reason."""
        try:
            await self._ctx.pool.execute(
                QUERIES["entity_upsert"], *upsert_arguments(self._ctx.profile.id, [entry])
            )
            return
        except UNSTORABLE as exc:
            reason, _ = clean_text(f"Magento record not storable: {type(exc).__name__}: {exc}")
        log.warning("collect_record_unstorable", source_key=entry.key, reason=reason)
        self._ctx.counts.note("error", reason, source_key=entry.key)
        try:
            await self._ctx.pool.execute(
                QUERIES["entity_upsert_unstorable"],
                self._ctx.profile.id,
                entry.key,
                entry.customer_id,
                {"reason": reason},
            )
        except UNSTORABLE:
            log.exception("collect_record_lost", source_key=entry.key)

    async def _flag_deleted(self, seen_ids: set[int]) -> None:
        """Ledger customers a complete full pass no longer lists: queued for the delete policy
        when Magento answers 404 for them. A partial listing judges nobody; any answer but
        404 leaves the customer alone; an error that is not about one customer ends the check
        (the next full pass tries again)."""
        if not self._listing.complete:
            reason = "; ".join(self._listing.gaps[:3]) or "the listing did not finish"
            self._ctx.counts.note(
                "warning", f"deleted customers not checked: incomplete customer listing ({reason})"
            )
            log.warning("delete_check_skipped", reason=reason)
            return
        rows = await self._ctx.pool.fetch(QUERIES["entity_customer_ids"], self._ctx.profile.id)
        for row in rows:
            customer_id = row["magento_customer_id"]
            if customer_id in seen_ids:
                continue
            try:
                gone = await confirm_deleted(self._magento, customer_id)
            except ApiError as exc:
                self._ctx.counts.note(
                    "warning", f"deleted customers check stopped at customer {customer_id}: {exc}"
                )
                log.warning("delete_check_stopped", customer_id=customer_id, error=str(exc))
                return
            if gone:
                await self._ctx.pool.execute(QUERIES["entity_mark_deleted"], row["id"])
                log.info("customer_deleted_in_magento", customer_id=customer_id)
