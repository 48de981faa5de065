"""Resolve: which FreeAgent contact a ledger row maps to.

FreeAgent has no search by e-mail and no uniqueness, so we keep an index of its contacts
(`freeagent_contact`), refreshed incrementally with `updated_since`. That never reports a
deletion (reference §6), and a deleted contact left in the index could be linked to a customer
(and, under api_behaviour create, never written again), so every SWEEP_EVERY the refresh is a
sweep instead: a full listing, then each indexed contact it did not list looked up by URL and
dropped if FreeAgent answers 404/410. A row's stored URL wins;
else match.py asks the index by e-mail (identity.py says who is the same contact). A create
whose outcome was unknown is looked for apart from that (`find_created_since`): by everything
it sent, among contacts created after its intent.

Every method takes an optional connection: under the identity lock the work runs on the lock's
own connection, so a worker never waits for a second pooled connection while holding one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from daemon.db.queries import QUERIES
from daemon.errors import RejectedRecord, TransientApiError
from daemon.logs import get_logger
from profiles.freeagent_contact_export.collect import parse_magento_time

log = get_logger(__name__)

#: Re-read contacts updated this long before the newest one indexed (FreeAgent clock, commits).
#: Listings are newest first, so a contact changed while one is read has an updated_at after
#: the newest this refresh indexes and the next refresh lists it: no change is lost for good
#: (the reasoning, and what only the sweep repairs: daemon/clients/freeagent_paging.py).
REFRESH_OVERLAP = timedelta(minutes=5)
#: Contacts indexed per round trip while refreshing.
REMEMBER_CHUNK = 200
#: How often a refresh is a sweep (a full listing that also drops deleted contacts).
SWEEP_EVERY = timedelta(hours=24)
#: What a reconciled contact must share with the create that was sent (absent = absent).
IDENTIFYING = ("email", "first_name", "last_name", "organisation_name", "address1", "postcode")

#: Where a query runs: the pool, or the connection the caller holds (the identity lock's).
Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection"


def parse_fa_time(value: Any) -> datetime | None:
    """FreeAgent timestamps: ISO 8601 UTC with milliseconds and a Z."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return parse_magento_time(value)


def _norm(value: Any) -> str | None:
    text = " ".join(str(value).split()) if value is not None else ""
    return text.lower() or None


def identifying(payload: dict[str, Any]) -> dict[str, str | None]:
    """The fields that tell one create from another, normalised (case, spaces)."""
    return {k: _norm(payload.get(k)) for k in IDENTIFYING}


class ContactIndex:
    """The FreeAgent contacts of one client, as far as we have seen them."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        client_id: int,
        freeagent: Any,
        sweep_every: timedelta = SWEEP_EVERY,
    ) -> None:
        self._pool = pool
        self._client_id = client_id
        self._freeagent = freeagent
        self._sweep_every = sweep_every
        #: The lookups' refreshes so far: (since, begun). One begun after a create settled,
        #: from no later than its `since`, has listed whatever that create made.
        self._looked: list[tuple[datetime, datetime]] = []
        self._looking = asyncio.Lock()

    async def refresh(self, *, since: datetime | None = None, full: bool = False) -> int:
        """Read contacts changed since the newest indexed one (or since `since`).

        A full read (asked for, an empty index, or the last sweep over `sweep_every` ago) is a
        sweep: afterwards the index holds only contacts FreeAgent still has. A dry run never
        sweeps (fa_contact_sweep_state)."""
        started = None
        if since is None:
            state = await self._pool.fetchrow(
                QUERIES["fa_contact_sweep_state"],
                self._client_id,
                self._sweep_every.total_seconds(),
            )
            if not (full or state["due"]) and state["mark"] is not None:
                since = state["mark"] - REFRESH_OVERLAP
            started = state["now"] if since is None and state["allowed"] else None
        seen = await self._read(since)
        if started is not None:
            await self._sweep(started)
        return seen

    async def _sweep(self, started: datetime) -> None:
        """After a full listing begun at `started` (database clock, as seen_at): each indexed
        contact it did not list is looked up by URL, and dropped only when FreeAgent answers
        404/410. Not listing is not proof: a contact moves a page earlier when one before it
        is deleted mid-scan, and so is skipped."""
        unseen = await self._pool.fetch(QUERIES["fa_contact_unseen"], self._client_id, started)
        dropped = 0
        for row in unseen:
            url = str(row["url"])
            try:
                contact = await self._freeagent.get_contact(url)
            except RejectedRecord as exc:  # not this API's URL, or a 4xx that is not 404/410
                log.warning("contact_index_sweep_kept", url=url, error=str(exc))
                continue
            if contact is None:
                await self._pool.execute(QUERIES["fa_contact_forget"], self._client_id, url)
                dropped += 1
            else:
                await self._remember_page([contact])
        await self._pool.execute(QUERIES["fa_contact_swept"], self._client_id, started)
        log.info("contact_index_swept", unseen=len(unseen), dropped=dropped)

    async def _read(self, since: datetime | None) -> int:
        """List and index the contacts changed since `since` (all of them: None)."""
        seen = 0
        page: list[dict[str, Any]] = []
        # view=all may omit Hidden contacts (unverified): read hidden too, a duplicate of a
        # hidden contact is still a duplicate.
        for view in ("all", "hidden"):
            async for contact in self._freeagent.iter_contacts(view=view, updated_since=since):
                page.append(contact)
                seen += 1
                if len(page) >= REMEMBER_CHUNK:
                    await self._remember_page(page)
                    page = []
        # One pipelined round trip per chunk, not one per contact: an incremental refresh
        # re-reads REFRESH_OVERLAP's worth of contacts on every run.
        await self._remember_page(page)
        log.info("contact_index_refreshed", seen=seen, since=since.isoformat() if since else None)
        return seen

    async def _remember_page(self, contacts: list[dict[str, Any]]) -> None:
        """Index contacts listed by a refresh, in one pipelined round trip."""
        rows = [args for c in contacts if (args := self._upsert_args(c)) is not None]
        if rows:
            # In URL order, as the outcome writes index theirs: two transactions writing the
            # same contacts then wait for each other in one order, never in a cycle.
            rows.sort(key=lambda args: args[1])
            await self._pool.executemany(QUERIES["fa_contact_upsert"], rows)

    @property
    def client_id(self) -> int:
        return self._client_id

    def index_rows(self, contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """entity_finish_many's contacts: what fa_contact_upsert stores, one per URL
        (the last one seen), as JSON objects in URL order."""
        rows: dict[str, dict[str, Any]] = {}
        for contact in contacts:
            args = self._upsert_args(contact)
            if args is None:
                continue
            _, url, email, organisation, first, last, status, data, updated = args
            rows[url] = {
                "url": url, "email": email, "organisation_name": organisation,
                "first_name": first, "last_name": last, "status": status, "data": data,
                "fa_updated_at": updated.isoformat() if updated else None,
            }  # fmt: skip
        return [rows[url] for url in sorted(rows)]  # URL order: see _remember_page

    def _upsert_args(self, contact: dict[str, Any]) -> tuple[Any, ...] | None:
        """fa_contact_upsert's arguments for a contact; None without a URL."""
        url = contact.get("url")
        if not isinstance(url, str):
            return None
        return (
            self._client_id,
            url,
            contact.get("email"),
            contact.get("organisation_name"),
            contact.get("first_name"),
            contact.get("last_name"),
            contact.get("status"),
            contact,
            parse_fa_time(contact.get("updated_at")),
        )

    async def contact(self, url: str) -> dict[str, Any] | None:
        """The contact as the index last saw it (refreshed at the start of each export)."""
        data = await self._pool.fetchval(QUERIES["fa_contact_get"], self._client_id, url)
        return data if isinstance(data, dict) else None

    async def find_created_since(
        self, sent: dict[str, Any], since: datetime, *, settled: datetime, now: datetime
    ) -> list[str]:
        """URLs of contacts FreeAgent created at/after `since` (its clock) that carry exactly
        what a create sent: e-mail (or its absence), names, organisation, address1, postcode.

        For reconciling a create whose outcome was unknown and which has settled (`settled`,
        at or before `now`: FreeAgent has committed it if it ever will); works without an
        e-mail. The index is refreshed from `since` first, unless a refresh of this index
        begun after `settled` from no later than `since` did it already: the creates a crash
        left settle together, and each would otherwise list the same contacts again.
        Contacts another ledger row owns are never candidates. Several URLs mean the caller
        cannot tell which is its own and must not guess.
        """
        async with self._looking:
            if not any(s <= since and begun >= settled for s, begun in self._looked):
                await self.refresh(since=since)
                self._looked.append((since, now))
        want = identifying(sent)
        rows = await self._pool.fetch(QUERIES["fa_contact_changed_since"], self._client_id, since)
        found = []
        for row in rows:
            data = row["data"] if isinstance(row["data"], dict) else {}
            # FreeAgent omits empty fields: without created_at, updated_at bounds it (a contact
            # last updated before `since` cannot have been created after it).
            created = parse_fa_time(data.get("created_at")) or row["fa_updated_at"]
            if created is not None and created >= since and identifying(data) == want:
                found.append(str(row["url"]))
        return found


#: How long a decision waits for another worker's identity lock before it gives up (transient).
LOCK_WAIT_SECONDS = 60.0


def milliseconds(seconds: float) -> str:
    """A PostgreSQL time setting (lock_timeout, idle_in_transaction_session_timeout)."""
    return f"{int(seconds * 1000)}ms"


@contextmanager
def lock_wait_bounded(wait_seconds: float, whose: str = "a contact's") -> Iterator[None]:
    """An identity lock not granted within its lock_timeout: a transient error (the row is
    retried later), never a guess."""
    try:
        yield
    except asyncpg.LockNotAvailableError as exc:
        raise TransientApiError(
            f"another worker has held {whose} lock for over {wait_seconds:.0f} s",
            service="fa-sync",
        ) from exc


@asynccontextmanager
async def identity_lock(
    pool: asyncpg.Pool, key: int, *, wait_seconds: float = 60.0, hold_seconds: float = 600.0
) -> AsyncIterator[asyncpg.Connection]:
    """Hold a transaction-level advisory lock while a contact is resolved and its create
    intent written; yields the connection, which is the only one the holder may use.

    Two rows with one e-mail (two websites, a guest and an account, two profiles on one
    FreeAgent client, two replicas) then decide one after the other: the second sees the
    first's committed intent (and waits for it to settle) or the contact it created. Nothing
    slow runs inside: no HTTP request (those draw from the rate budget, which needs a pooled
    connection) and no other pooled connection, so holders can never starve the pool.
    Transaction-scoped, so it also works behind PgBouncer in transaction mode. Both ends are
    bounded: a waiter gives up after wait_seconds (the row is retried later), and PostgreSQL
    ends the transaction of a holder that stays idle for hold_seconds (a frozen replica),
    which releases the lock.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            QUERIES["lock_timeouts"], milliseconds(wait_seconds), milliseconds(hold_seconds)
        )
        with lock_wait_bounded(wait_seconds, "this contact's"):
            await conn.execute(QUERIES["identity_lock"], key)
        yield conn


@asynccontextmanager
async def identity_locks(
    pool: asyncpg.Pool,
    keys: list[int],
    client_id: int,
    *,
    wait_seconds: float = LOCK_WAIT_SECONDS,
    hold_seconds: float = 600.0,
) -> AsyncIterator[tuple[asyncpg.Connection, list[asyncpg.Record]]]:
    """identity_lock for several people at once (the exporter decides its workers' rows
    together), with the same bounds, in one round trip: yields the connection and the rows
    at this client whose create of one of these people is unsettled (id, identity,
    intent_at; newest first), read after the locks were taken. Keys are locked in ascending
    order, so two holders of overlapping sets never wait for each other in a cycle."""
    async with pool.acquire() as conn, conn.transaction():
        with lock_wait_bounded(wait_seconds):
            creating = await conn.fetch(
                QUERIES["identity_locks"], keys, milliseconds(wait_seconds),
                milliseconds(hold_seconds), client_id,
            )  # fmt: skip
        yield conn, creating
