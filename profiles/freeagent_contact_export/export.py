"""Export: create, update or remove FreeAgent contacts for claimed rows, and record it.

FreeAgent has no upsert and no idempotency key, and may commit a POST after we stopped waiting
(a slow request, or a gateway 504 while the backend finishes). So a create is written ahead,
and a create whose outcome is unknown is never sent again before it has certainly settled:

    pending/processing --(identity lock: nobody else creating this e-mail; match.py:
    another row of this identity has a contact -> linked (shared); one FreeAgent contact ->
    linked and updated; several -> needs_review, nothing written; none -->)
    creating: intent {at, identity, what was sent} committed with the lock, then the POST
      201 ............................................ created
      429 / 4xx / never sent (FreeAgent did not act) .. intent cleared; retried or failed as usual
      timeout / dropped / 5xx / 504 (it may have) ..... settling: stays creating, not claimed
                                                        before intent.at + settle window
    creating, settled --(refresh the index; contacts created since intent.at - slack carrying
    exactly what was sent)-->
      one ......... created (reconciled; updated if the customer changed meanwhile)
      none ........ a new intent and POST, as above
      several ..... failed, listing the candidate URLs: a person decides, we never guess

A crash at any step leaves the row creating with its intent: reconciled once it has settled.
The settle window is FA_SYNC_CREATE_SETTLE_SECONDS, at least 10 HTTP timeouts
(Settings.settle_window). While another row's create of the same e-mail (same lock key at the
same FreeAgent client) is unsettled, rows of that e-mail wait (a transient retry): matching
must see that contact before it decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from daemon.context import RunContext
from daemon.db.queries import QUERIES
from daemon.db.records import ContactEntity, EntityStatus
from daemon.errors import (
    ApiError,
    AuthError,
    EndpointError,
    FaSyncError,
    LeaseLost,
    RejectedRecord,
    TransientApiError,
)
from daemon.failures import GONE
from daemon.logs import get_logger
from profiles.freeagent_contact_export.clean import Note, describe
from profiles.freeagent_contact_export.config import ContactExportSettings
from profiles.freeagent_contact_export.create import CreateProtocol, Resolution
from profiles.freeagent_contact_export.drift import DriftDecision, check_drift, written_record
from profiles.freeagent_contact_export.failures import RUN_LEVEL, UNSTORABLE, failure_json
from profiles.freeagent_contact_export.groupcommit import Slot
from profiles.freeagent_contact_export.models import (
    Skipped,
    payload_hash,
)
from profiles.freeagent_contact_export.outage import OutageDetector
from profiles.freeagent_contact_export.outcomes import Outcome, OutcomeWriter
from profiles.freeagent_contact_export.payload import build_contact_payload, email_key
from profiles.freeagent_contact_export.prepared import (
    Prepared,
    read_buyer,
    record_backoff,
    update_body,
)
from profiles.freeagent_contact_export.removal import effective_delete_policy, remove_contact
from profiles.freeagent_contact_export.resolve import ContactIndex

log = get_logger(__name__)


class ShuttingDown(FaSyncError):
    """The process is stopping: a row that has sent nothing yet is left as it was (its claim
    handed back at the end of the run), while the requests already sent are finished."""


class Exporter:
    """Sends claimed rows to FreeAgent with bounded concurrency and records each outcome."""

    def __init__(
        self,
        *,
        ctx: RunContext,
        freeagent: Any,
        index: ContactIndex,
        cfg: ContactExportSettings,
        client_id: int,
        store_locales: Mapping[int, str] | None = None,
    ) -> None:
        self._ctx = ctx
        self._fa = freeagent
        self._index = index
        self._cfg = cfg
        self._client_id = client_id
        #: store_locales: store_id -> Magento locale, read once per run (locales.py).
        self._options = cfg.contact_options().model_copy(
            update={"derive_locale_from_store": dict(store_locales or {})}
        )
        self._limit = asyncio.Semaphore(max(1, ctx.settings.export_concurrency))
        #: entity id -> the concurrency slot its worker holds (released by _finish).
        self._slots: dict[int, Slot] = {}
        #: entity id -> what the mapping left out or cut, until the row's outcome is written.
        self._adjusted: dict[int, list[Note]] = {}
        #: entity id -> metadata.drift of an update about to be written.
        self._drifts: dict[int, dict[str, Any]] = {}
        #: Set once a run-level error was seen: no row sends anything after it.
        self._stopped: EndpointError | AuthError | LeaseLost | None = None
        #: e-mail key -> done when the rows of that e-mail now exporting are (export_batch).
        self._chains: dict[str, asyncio.Future[None]] = {}
        self._outage = OutageDetector(ctx.settings.outage_after_failures)
        self._outcomes = OutcomeWriter(ctx=ctx, index=index)
        #: The create settle protocol (create.py); `creates.settling` counts unsettled ones.
        self.creates = CreateProtocol(
            ctx=ctx, freeagent=freeagent, index=index, cfg=cfg, client_id=client_id,
            write=self._write, history_entry=self._history_entry,
        )  # fmt: skip

    async def export_batch(self, rows: list[ContactEntity]) -> None:
        """Export rows concurrently; an auth failure or a lost lease stops the run.

        Rows of one e-mail run one after the other, oldest first, so which of several
        customers sharing an e-mail creates (and owns) the contact does not depend on timing.
        That holds across batches exporting at once too: a row waits for the rows of its
        e-mail in an earlier batch (a create it would otherwise find unsettled).
        """
        groups: dict[str, list[ContactEntity]] = {}
        for row in sorted(rows, key=lambda r: r.id):
            groups.setdefault((row.email or f"#{row.id}").strip().lower(), []).append(row)
        results = await asyncio.gather(
            *(self._in_order(key, group) for key, group in groups.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await self._outage.flush(self._fail)

    async def _in_order(self, key: str, rows: list[ContactEntity]) -> None:
        before = self._chains.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chains[key] = mine
        try:
            if before is not None:
                await before
            for row in rows:
                await self._guarded(row)
        finally:
            mine.set_result(None)
            if self._chains.get(key) is mine:
                del self._chains[key]

    async def _guarded(self, row: ContactEntity) -> None:
        """Export one row; whatever goes wrong with this record fails this record only.

        The row takes one of the `export_concurrency` slots just before its first FreeAgent
        request (`_network`) and holds it until its outcome is ready to be written
        (`_finish`). So every row of a batch reaches its decision at once (a first sync's
        creates: one statement for the batch, create.py), and the outcome write is awaited
        without a slot, another row's requests going on meanwhile."""
        slot = Slot(self._limit)
        self._slots[row.id] = slot
        try:
            await self._guarded_in_slot(row)
        except ShuttingDown:
            pass  # left as it was, for the next run
        finally:
            self._slots.pop(row.id, None)
            slot.release()

    async def _network(self, row: ContactEntity) -> None:
        """Take the row's concurrency slot before its first FreeAgent request. A run stopped
        meanwhile stops here, before this row sends anything."""
        slot = self._slots.get(row.id)
        if slot is not None and not slot.held:
            await slot.acquire()
            if self._ctx.stopping.is_set():
                raise ShuttingDown(f"entity {row.id} left for the next run")
        if self._stopped is not None:
            raise self._stopped

    async def _guarded_in_slot(self, row: ContactEntity) -> None:
        if self._stopped is not None:
            raise self._stopped  # the run is stopping: leave the row untouched
        try:
            await self._export(row)
            await self._outage.record_ok(self._fail)
        except (AuthError, LeaseLost) as exc:
            self._stopped = exc
            raise
        except EndpointError as exc:
            # About the account or the endpoint, not this record: stop the run and leave
            # the row as it was (the runner hands it back; no attempt is counted).
            self._stopped = exc
            raise
        except TransientApiError as exc:
            outage = await self._outage.record_transient(row, exc, self._fail)
            if outage is not None:
                self._stopped = outage
                raise outage from exc
        except ApiError as exc:  # RejectedRecord (422...) and other refusals of this record
            await self._fail(row, exc, permanent=True)
        except UNSTORABLE as exc:  # PostgreSQL refused a value of this record
            log.warning("record_unstorable", entity_id=row.id, error=str(exc))
            await self._fail(row, exc, permanent=True)
        except RUN_LEVEL:
            raise
        except Exception as exc:  # a bug meeting an odd record: fail it, not the run
            log.exception("record_crashed", entity_id=row.id)
            await self._fail(row, exc, permanent=True)

    async def _export(self, row: ContactEntity) -> None:
        if row.metadata.get("deleted_in_magento"):
            await self._network(row)
            await self._remove(row)
            return
        buyer = read_buyer(row)
        notes: list[Note] = []
        built = (
            buyer
            if isinstance(buyer, Skipped)
            else build_contact_payload(buyer, self._options, notes)
        )
        if isinstance(built, Skipped):
            await self._finish(row, EntityStatus.SKIPPED, error={"reason": built.reason})
            self._ctx.counts.skipped += 1
            log.info("record_skipped", entity_id=row.id, reason=built.reason)
            return
        self._note_adjusted(row, notes)
        email = email_key(built.email)
        prepared = Prepared(row, built.to_api(), payload_hash(built), email)
        found = await self._resolve(prepared)
        url, how = found.url, found.how
        if url is None:
            # waiting: released until another create settles; review: left for a person
            if how not in ("waiting", "review"):
                await self._create_or_skip(prepared, found.intent)
            return
        if how == "reconciled":
            await self._adopt_reconciled(prepared, url)
            return
        if how == "shared" or (how == "stored" and row.metadata.get("shared_with")):
            # The contact belongs to the row it is shared with; updating it from two
            # customers would make it flip between their details. Kept in every identity
            # mode: a row linked before a change of `identity` keeps its contact.
            shared_with = found.shared_with or row.metadata.get("shared_with")
            await self._finish(
                row, EntityStatus.LINKED, url=url, hash_=prepared.hash, shared_with=shared_with
            )
            self._ctx.counts.linked += 1
            return
        await self._update_or_keep(prepared, url, linked_now=how == "index")

    async def _resolve(self, p: Prepared) -> Resolution:
        """The contact of an unfinished create, the stored URL, an index hit, or absent (then
        with a committed intent). HTTP (index refresh) runs before the identity lock."""
        intent = p.row.metadata.get("create_intent")
        if intent:
            self.creates.check_settled(intent)
            await self._network(p.row)
            found = await self.creates.reconcile(p, intent)
            if found:
                log.info("create_reconciled", entity_id=p.row.id, url=found)
                return Resolution(found, "reconciled")
        elif p.row.freeagent_url:
            return Resolution(p.row.freeagent_url, "stored")
        may_create = self._ctx.profile.api_behaviour != "update"
        return await self.creates.decide(p, look=True, may_create=may_create)

    async def _adopt_reconciled(self, p: Prepared, url: str) -> None:
        """An earlier POST did create the contact: keep it, bring it up to date if needed."""
        if p.row.metadata.get("create_intent", {}).get("payload_hash") != p.hash:
            await self._fa.update_contact(url, p.payload)
        await self._finish(
            p.row, EntityStatus.CREATED, url=url, hash_=p.hash, sent=p.payload, reconciled=True
        )
        self._ctx.counts.created += 1

    async def _create_or_skip(self, p: Prepared, intent: dict[str, Any] | None) -> None:
        if intent is None:  # no contact, and api_behaviour forbids creating one
            reason = "api_behaviour is update: no FreeAgent contact exists to update"
            await self._finish(p.row, EntityStatus.SKIPPED, error={"reason": reason})
            self._ctx.counts.skipped += 1
            return
        try:
            await self._network(p.row)
        except (EndpointError, AuthError, ShuttingDown):
            # The run stopped while this row waited for a slot: nothing was sent, so its
            # intent goes (no settle window to wait out before it is tried again).
            await self._write("entity_clear_intent", p.row)
            raise
        contact = await self.creates.create(p, intent)
        url = str(contact["url"])
        await self._finish(
            p.row, EntityStatus.CREATED, url=url, hash_=p.hash, sent=p.payload, remember=contact
        )
        self._ctx.counts.created += 1
        log.info("contact_created", entity_id=p.row.id, url=url)

    async def _update_or_keep(self, p: Prepared, url: str, linked_now: bool) -> None:
        behaviour = self._ctx.profile.api_behaviour
        if behaviour == "create":
            status = EntityStatus.LINKED if linked_now else EntityStatus.UNCHANGED
            await self._finish(
                p.row,
                status,
                url=url,
                note="api_behaviour is create: existing contacts are not updated",
            )
            self._ctx.counts.linked += linked_now
            self._ctx.counts.unchanged += not linked_now
            return
        if not linked_now and p.hash == p.row.payload_hash:
            await self._finish(p.row, EntityStatus.UNCHANGED, url=url)
            self._ctx.counts.unchanged += 1
            return
        await self._network(p.row)
        body = update_body(p, linked_now=linked_now)
        decision = await self._check_drift(p, url, body, linked_now)
        if decision is None:
            return
        try:
            if decision.action == "send":
                await self._fa.update_contact(url, decision.body)
        except RejectedRecord as exc:
            if exc.status not in GONE:
                raise
            await self._replace_gone(p, url, exc.status)
            return
        sent = decision.action == "send"
        if sent:
            status = EntityStatus.UPDATED
        else:  # FreeAgent holds what we would send: linked as it is, or nothing left
            status = EntityStatus.LINKED if linked_now else EntityStatus.UNCHANGED
        await self._finish(
            p.row,
            status,
            url=url,
            hash_=p.hash,
            sent=p.payload,
            linked_existing=linked_now or None,
            written=written_record(self._ctx.clock(), decision.written),
            kept_fields=decision.kept,
            drift=self._drifts.pop(p.row.id, None),
        )
        self._ctx.counts.updated += sent
        self._ctx.counts.linked += not sent and linked_now
        self._ctx.counts.unchanged += not sent and not linked_now
        if sent:
            log.info("contact_updated", entity_id=p.row.id, url=url, linked_existing=linked_now)

    async def _replace_gone(self, p: Prepared, url: str, status: int | None) -> None:
        """The contact was deleted in FreeAgent (404/410): it leaves the index, so nothing
        links to it again, and a new one is created unless api_behaviour forbids creating."""
        log.warning("contact_gone", entity_id=p.row.id, url=url, status=status)
        await self._ctx.pool.execute(QUERIES["fa_contact_forget"], self._client_id, url)
        if self._ctx.profile.api_behaviour == "update":
            reason = (
                f"FreeAgent contact {url} was deleted there (HTTP {status}); "
                "api_behaviour is update: not recreated"
            )
            await self._finish(p.row, EntityStatus.SKIPPED, error={"reason": reason})
            self._ctx.counts.skipped += 1
            return
        intent = (await self.creates.decide(p, look=False, may_create=True)).intent
        if intent is None:  # another row is creating this person: wait for it
            return
        contact = await self.creates.create(p, intent)
        await self._finish(
            p.row, EntityStatus.CREATED, url=str(contact["url"]), hash_=p.hash,
            sent=p.payload, replaced=url, remember=contact,
        )  # fmt: skip
        self._ctx.counts.created += 1
        log.info("contact_created", entity_id=p.row.id, url=contact["url"], replaced=url)

    async def _check_drift(
        self, p: Prepared, url: str, body: dict[str, Any], linked_now: bool
    ) -> DriftDecision | None:
        """on_drift applied to an update (drift.py); None when the row now waits for review."""
        policy, drift, decision = await check_drift(
            self._index, self._cfg.on_drift, p.row, url, body, linked_now=linked_now
        )
        if drift is None:
            return decision
        note, row = drift.as_json(policy, self._ctx.clock()), p.row
        self._ctx.counts.drifted += 1
        self._ctx.counts.note("warning", drift.message(row.source_key, policy), entity_id=row.id)
        if decision.action != "review":
            self._drifts[p.row.id] = note
            return decision
        await self._finish(p.row, EntityStatus.NEEDS_REVIEW, url=url, drift=note)
        self._ctx.counts.needs_review += 1
        return None

    async def _remove(self, row: ContactEntity) -> None:
        """The Magento customer is gone: the delete policy decides (removal.py)."""
        policy = effective_delete_policy(self._ctx.profile.api_behaviour, self._cfg) or "none"
        done = await remove_contact(self._ctx.pool, self._fa, self._client_id, policy, row)
        await self._finish(row, done.status, removal=done.as_json(policy))
        self._ctx.counts.removed += 1
        log.info("customer_removed", entity_id=row.id, policy=policy, outcome=str(done.status))

    def _note_adjusted(self, row: ContactEntity, notes: list[Note]) -> None:
        """Values the mapping left out or cut: kept for this row's outcome and the run."""
        if not notes:
            return
        self._adjusted[row.id] = notes
        self._ctx.counts.note(
            "warning", f"{row.source_key}: sent adjusted: {describe(notes)}", entity_id=row.id
        )

    async def _finish(
        self,
        row: ContactEntity,
        status: EntityStatus,
        *,
        url: str | None = None,
        hash_: str | None = None,
        error: dict[str, Any] | None = None,
        sent: Iterable[str] | None = None,
        remember: dict[str, Any] | None = None,
        **meta: Any,
    ) -> None:
        """Record the row's outcome (with other workers', outcomes.py); a contact just
        created (remember) is indexed first."""
        meta = {k: v for k, v in meta.items() if v is not None}
        if row.id in self._adjusted:
            meta["adjusted"] = self._adjusted.pop(row.id)
        if hash_ is not None and sent is not None:
            meta["sent_fields"] = sorted(sent)
            if isinstance(sent, dict):  # a create: the next drift check compares with this
                meta.setdefault("written", written_record(self._ctx.clock(), sent))
        entry = self._history_entry(status, **({"error": error} if error else {}))
        slot = self._slots.pop(row.id, None)
        if slot is not None:
            slot.release()  # nothing left to send for this row
        await self._outcomes.write(
            Outcome(row.id, str(status), url, hash_, error, meta, entry, remember)
        )

    def _history_entry(self, status: EntityStatus, **extra: Any) -> dict[str, Any]:
        """One element of the row's attempt_history."""
        return {"at": self._ctx.clock().isoformat(), "run_id": self._ctx.run.id,
                "outcome": str(status), **extra}  # fmt: skip

    async def _write(
        self, query: str, row: ContactEntity, *args: Any, conn: asyncpg.Connection | None = None
    ) -> None:
        """A ledger write fenced by this run: if another replica took over, stop at once.
        Under the identity lock pass its connection (never wait for a second one)."""
        db = conn or self._ctx.pool
        done = await db.fetchval(
            QUERIES[query], row.id, self._ctx.run.id, self._ctx.run.fence, *args
        )
        if done is None:
            raise LeaseLost(f"run {self._ctx.run.id}: lease lost; entity {row.id} not recorded")

    async def _fail(self, row: ContactEntity, exc: Exception, *, permanent: bool) -> None:
        """Permanent errors fail at once; transient ones retry with backoff up to the limit."""
        profile = self._ctx.profile
        attempts = row.attempts + 1
        retry = not permanent and profile.retry_enabled and attempts < profile.retry_max_attempts
        intent = "create_intent" in row.metadata or row.status == EntityStatus.CREATING
        if retry:
            status = EntityStatus.CREATING if intent else EntityStatus.PENDING
            next_at = self._ctx.clock() + record_backoff(
                self._ctx.settings.record_retry_base_seconds, attempts
            )
            self._ctx.counts.retrying += 1
        else:
            status, next_at = EntityStatus.FAILED, None
            self._ctx.counts.failed += 1
        error = failure_json(exc, self._adjusted.pop(row.id, None))
        entry = self._history_entry(status, attempt=attempts, error=error)
        await self._write("entity_fail", row, str(status), error, next_at, entry)
        log.warning(
            "record_failed" if status is EntityStatus.FAILED else "record_retry_scheduled",
            entity_id=row.id,
            error=error["message"],
            status=error["status"],
            attempts=attempts,
            next_attempt_at=next_at.isoformat() if next_at else None,
        )
        self._ctx.counts.note(
            "error" if status is EntityStatus.FAILED else "warning",
            error["message"],
            entity_id=row.id,
            email=row.email,
        )
