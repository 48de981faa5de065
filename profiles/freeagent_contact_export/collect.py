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
from profiles.freeagent_contact_export.guests import (
    GuestScope,
    guest_scope,
    sales_refused,
    store_websites,
)
from profiles.freeagent_contact_export.payload import contact_email
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
    #: The e-mail as the export sends it (payload.contact_email: trimmed, without control or
    #: invisible characters), so ledger rows are grouped and matched by what identity keys on:
    #: a pasted zero-width space must not split one person into two rows that each link (and
    #: write) one FreeAgent contact. Guests: lower-cased, as their key.
    email: str | None
    data: dict[str, Any]  #: the record after clean_record
    stamp: datetime | None  #: updated_at (customers) or created_at (guest orders)
    notes: list[Note]  #: what cleaning changed, for metadata.cleaned
    #: Why the record is kept as skipped rather than queued (None: queued for export).
    skip: str | None = None

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
    return Collected(
        key=f"customer:{cid}",
        customer_id=cid,
        website_id=small_int(data.get("website_id")),
        email=contact_email(data.get("email")),
        data=data,
        stamp=parse_magento_time(data.get("updated_at")),
        notes=notes,
    )


def guest_email(order: dict[str, Any]) -> Any:
    """The guest's e-mail as the export reads it (Buyer.from_guest_order): the order's
    customer_email, else its billing address's when customer_email holds no address
    (reference §4); else customer_email as it is (None when absent)."""
    billing = order.get("billing_address")
    fallback = billing.get("email") if isinstance(billing, dict) else None
    own = order.get("customer_email")
    real = (v for v in (own, fallback) if v is not None and any(map(str.isalnum, str(v))))
    return next(real, own)


def guest_record(raw: Any, websites: dict[int, int] | None = None) -> Collected | str:
    """A guest order as a ledger entry keyed by e-mail, or why it cannot be one. `websites`
    (store id -> website id) gives the guest the website of its order's store: identity
    joins a guest to the account with its e-mail on that website. An order without any
    e-mail is kept as a skipped entry keyed by the order (`skip` says why)."""
    if not isinstance(raw, dict):
        return f"Magento order is not a JSON object ({type(raw).__name__}): ignored"
    data, notes = clean_record(raw)
    address = guest_email(data)
    email = str(address or "").strip().lower()
    if not email:
        return _without_email(data, notes)
    # An e-mail cannot be longer than 254 characters; a longer value still gets a key that
    # fits PostgreSQL's index row limit.
    key = email if len(email) <= 254 else "#" + hashlib.sha256(email.encode()).hexdigest()
    sent = contact_email(address)
    return Collected(
        key=f"guest:{key}",
        customer_id=None,
        website_id=(websites or {}).get(small_int(data.get("store_id")) or -1),
        email=sent.lower() if sent else None,
        data=data,
        stamp=parse_magento_time(data.get("created_at")),
        notes=notes,
    )


def _without_email(data: dict[str, Any], notes: list[Note]) -> Collected | str:
    """A guest order with no e-mail anywhere cannot become a contact, but is not dropped
    silently: it is kept on the ledger as skipped, keyed by the order, saying why."""
    order_id = small_int(data.get("entity_id"))
    reason = (
        f"guest order {data.get('increment_id')!r:.40} (entity_id {data.get('entity_id')!r:.20}) "
        "has no e-mail, neither customer_email nor billing_address.email: not exported"
    )
    if order_id is None:
        return f"{reason} (no usable entity_id to keep it by)"
    return Collected(f"guest:#order-{order_id}", None, None, None, data, None, notes, reason)


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
        if self._listing.short:
            self._held("customer", self._listing)
            newest = None
        guest_newest = await self._collect_guests(plan) if self._cfg.include_guests else None
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

    def _held(self, which: str, listing: ListingReport) -> None:
        """A listing that missed records Magento counts keeps its watermark where it was, so
        the next run reads them again: say so."""
        reason = "; ".join(listing.short[:3])
        self._ctx.counts.note(
            "warning",
            f"{which} watermark not advanced: Magento's listing missed records it counts "
            f"({reason}); the next run reads again from the same point",
        )
        log.warning("watermark_held", listing=which, reason=reason)

    async def _collect_guests(self, plan: CollectPlan) -> datetime | None:
        """Guest buyers within the store restriction (see guests.py); the guest watermark
        candidate, or None when guests were skipped or their listing missed orders."""
        scope, warning = guest_scope(self._cfg.store, await store_websites(self._magento))
        if warning is not None:
            self._ctx.counts.note("warning", warning)
            log.warning("guest_scope", warning=warning)
        if scope is None or scope.empty:
            return None
        listing = ListingReport()
        try:
            newest = await self._store(self._guests(plan, scope, listing), None, "guests")
        except ApiError as exc:
            if (refused := sales_refused(exc)) is None:
                raise
            self._ctx.counts.note("warning", refused)
            log.warning("guests_skipped", reason=refused)
            return None
        if listing.short:
            self._held("guest", listing)
            return None
        return newest

    async def _guests(
        self, plan: CollectPlan, scope: GuestScope, listing: ListingReport
    ) -> AsyncIterator[Collected | None]:
        """Guest orders grouped by e-mail; the newest order's details win. An order outside
        the chosen stores (a server ignoring the filter) is passed over."""
        websites = dict(scope.websites)
        async for order in self._magento.iter_guest_orders(
            created_since=plan.guests_since,
            store_ids=scope.store_ids,
            page_size=self._ctx.profile.collection_size,
            listing=listing,
        ):
            if not isinstance(order, dict) or scope.admits(order):
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
            if entry.skip is not None:
                await self._keep_skipped(entry, entry.skip)
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
            reason = f"Magento record not storable: {type(exc).__name__}: {exc}"
        log.warning("collect_record_unstorable", source_key=entry.key)
        await self._keep_skipped(entry, reason)

    async def _keep_skipped(self, entry: Collected, why: str) -> None:
        """Keep a record that cannot be exported on the ledger as skipped, with the reason
        (on its row and in the run's messages): never lost silently."""
        reason, _ = clean_text(why)
        log.warning("collect_record_skipped", source_key=entry.key, reason=reason)
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
