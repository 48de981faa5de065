"""Collect: Magento customers and guest buyers -> the contact ledger (the queue).

Incremental by Magento's updated_at since the last successful collect (append mode), with an
overlap for late commits; a full pass on demand, in replace mode, and every
full_collect_every_hours because address-only edits leave updated_at alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.context import RunContext
from daemon.db.queries import QUERIES
from daemon.logs import get_logger
from profiles.freeagent_contact_export.config import ContactExportSettings

log = get_logger(__name__)

#: Ledger rows written per executemany round trip.
CHUNK = 200


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
    last_full = state["last_full_collect_at"] if state else None
    due = cfg.full_collect_every_hours is not None and (
        last_full is None or now - last_full >= timedelta(hours=cfg.full_collect_every_hours)
    )
    full = force_full or mode == "replace" or watermark is None or due
    overlap = timedelta(seconds=cfg.collect_overlap_seconds)
    guest_mark = state["guest_watermark"] if state else None
    return CollectPlan(
        full=full,
        customers_since=None if full or watermark is None else watermark - overlap,
        guests_since=None if full or guest_mark is None else guest_mark - overlap,
    )


class Collector:
    """Reads Magento and upserts the ledger in chunks."""

    def __init__(self, ctx: RunContext, magento: Any, cfg: ContactExportSettings) -> None:
        self._ctx = ctx
        self._magento = magento
        self._cfg = cfg

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
        seen_ids: set[int] = set()
        newest = await self._store(self._customers(plan), seen_ids, "customers")
        guest_newest = None
        if self._cfg.include_guests:
            guest_newest = await self._store(self._guests(plan), None, "guests")
        await ctx.pool.execute(
            QUERIES["profile_set_watermarks"],
            ctx.profile.id,
            newest,
            guest_newest,
            ctx.clock() if plan.full else None,
        )
        if plan.full and self._cfg.events.hide_deleted_customers:
            await self._flag_deleted(seen_ids)
        log.info("collect_finished", collected=ctx.counts.collected, full=plan.full)
        return ctx.counts.collected

    async def _customers(self, plan: CollectPlan) -> AsyncIterator[tuple[Any, ...]]:
        store = self._cfg.store
        async for customer in self._magento.iter_customers(
            updated_since=plan.customers_since,
            website_ids=store.website_ids or None if store.restrict else None,
            store_ids=store.store_ids or None if store.restrict else None,
            page_size=self._ctx.profile.collection_size,
        ):
            cid = customer.get("id")
            if not isinstance(cid, int):
                self._ctx.counts.note("warning", "Magento customer without an integer id ignored")
                continue
            yield (
                f"customer:{cid}",
                cid,
                customer.get("website_id"),
                customer.get("email"),
                customer,
                parse_magento_time(customer.get("updated_at")),
            )

    async def _guests(self, plan: CollectPlan) -> AsyncIterator[tuple[Any, ...]]:
        """Guest orders grouped by e-mail; the newest order's details win."""
        store = self._cfg.store
        async for order in self._magento.iter_guest_orders(
            created_since=plan.guests_since,
            store_ids=store.store_ids or None if store.restrict else None,
            page_size=self._ctx.profile.collection_size,
        ):
            email = str(order.get("customer_email") or "").strip().lower()
            if not email:
                self._ctx.counts.note(
                    "warning", "guest order without e-mail ignored", order=order.get("increment_id")
                )
                continue
            yield (
                f"guest:{email}",
                None,
                None,
                email,
                order,
                parse_magento_time(order.get("created_at")),
            )

    async def _store(
        self, records: AsyncIterator[tuple[Any, ...]], seen: set[int] | None, stage: str
    ) -> datetime | None:
        newest: datetime | None = None
        chunk: dict[str, tuple[Any, ...]] = {}
        async for key, cid, website, email, data, stamp in records:
            if seen is not None and cid is not None:
                seen.add(cid)
            if stamp and (newest is None or stamp > newest):
                newest = stamp
            # Later records of one key (repeat guest orders) replace earlier ones.
            chunk[key] = (self._ctx.profile.id, key, cid, website, email, data)
            if len(chunk) >= CHUNK:
                await self._flush(chunk, stage)
        await self._flush(chunk, stage)
        return newest

    async def _flush(self, chunk: dict[str, tuple[Any, ...]], stage: str) -> None:
        if not chunk:
            return
        rows = list(chunk.values())
        chunk.clear()
        if not self._cfg.events.queue_new_customers:
            rows = [
                r
                for r in rows
                if await self._ctx.pool.fetchval(QUERIES["entity_exists"], r[0], r[1])
            ]
        async with self._ctx.pool.acquire() as conn:
            await conn.executemany(QUERIES["entity_upsert"], rows)
        self._ctx.counts.collected += len(rows)
        if self._ctx.options.progress:
            self._ctx.options.progress(f"collect {stage}", self._ctx.counts.collected, None)

    async def _flag_deleted(self, seen_ids: set[int]) -> None:
        """Ledger customers missing from a full pass: confirm with Magento, then queue a hide."""
        rows = await self._ctx.pool.fetch(QUERIES["entity_customer_ids"], self._ctx.profile.id)
        for row in rows:
            if row["magento_customer_id"] in seen_ids:
                continue
            if await self._magento.get_customer(row["magento_customer_id"]) is None:
                await self._ctx.pool.execute(QUERIES["entity_mark_deleted"], row["id"])
                log.info("customer_deleted_in_magento", customer_id=row["magento_customer_id"])
