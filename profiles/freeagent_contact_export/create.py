"""The create settle protocol: write-ahead intent, one POST, settle, reconcile.

The state machine is drawn in export.py's module docstring. This module holds its steps so
that no POST is ever sent twice before the first has certainly settled at FreeAgent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg

from daemon.context import RunContext
from daemon.db.queries import QUERIES
from daemon.db.records import EntityStatus
from daemon.errors import ApiError, LeaseLost, OutcomeUnknown, RejectedRecord, TransientApiError
from daemon.logs import get_logger
from profiles.freeagent_contact_export.config import ContactExportSettings
from profiles.freeagent_contact_export.groupcommit import GroupCommit
from profiles.freeagent_contact_export.identity import Party, identity_of, lock_key
from profiles.freeagent_contact_export.match import MatchDecision, decide, match_rows, party_of
from profiles.freeagent_contact_export.resolve import (
    LOCK_WAIT_SECONDS,
    ContactIndex,
    identifying,
    identity_locks,
    lock_wait_bounded,
    milliseconds,
)

if TYPE_CHECKING:
    from profiles.freeagent_contact_export.prepared import Prepared

log = get_logger(__name__)

#: Contacts created this long before an intent still count as ours when reconciling
#: (our clock against FreeAgent's).
INTENT_SLACK = timedelta(minutes=2)

#: Exporter._write: a fenced ledger write (query name, row, args..., conn=...).
Write = Callable[..., Awaitable[None]]
#: Exporter._history_entry: one attempt_history element.
HistoryEntry = Callable[..., dict[str, Any]]


class CreateSettling(TransientApiError):
    """A create whose outcome is unknown, already recorded as settling on its row.

    Raised so the exporter can count it towards an outage; the row must not be written
    again (it is no longer claimed by this run)."""


class Resolution(NamedTuple):
    """Which contact a row maps to, how that was found, and the create intent if one was
    committed (how = "absent": the caller sends the POST)."""

    url: str | None
    #: stored, reconciled, index (linked now), shared (another row's contact), absent, and
    #: waiting or review (both already recorded on the row)
    how: str
    intent: dict[str, Any] | None = None
    shared_with: str | None = None  #: source_key of the row whose contact is shared


class _Ask(NamedTuple):
    """One row waiting for its decision."""

    p: Prepared
    key: int  #: identity lock key
    look: bool
    may_create: bool
    party: Party


class CreateProtocol:
    """Decides under the identity lock, POSTs once, and settles or reconciles the outcome."""

    def __init__(
        self,
        *,
        ctx: RunContext,
        freeagent: Any,
        index: ContactIndex,
        cfg: ContactExportSettings,
        client_id: int,
        write: Write,
        history_entry: HistoryEntry,
    ) -> None:
        self._ctx = ctx
        self._cfg = cfg
        self._fa = freeagent
        self._index = index
        self._client_id = client_id
        self._write = write
        self._history_entry = history_entry
        self._settle = ctx.settings.settle_window()
        #: Rows deciding at once share one lock transaction.
        self._decisions: GroupCommit[_Ask, Resolution] = GroupCommit(self._decide_all)
        #: Creates of this run whose outcome is unknown, now settling.
        self.settling = 0

    async def decide(self, p: Prepared, *, look: bool, may_create: bool) -> Resolution:
        """Under the identity lock, on its own connection: wait for another row's unsettled
        create of this e-mail, match (look: share, link, or leave for review; match.py), or
        commit a create intent (may_create). The lock's transaction commits the intent before
        the POST is sent.

        Workers deciding at the same moment share one lock transaction (groupcommit.py):
        every row still gets exactly these steps, in submission order, under its own lock."""
        party = party_of(p.row, p.payload)
        key = lock_key(self._client_id, identity_of(party, self._cfg.identity))
        return await self._decisions.submit(_Ask(p, key, look, may_create, party))

    async def _decide_all(self, asks: list[_Ask]) -> list[Resolution | Exception]:
        """Decide a group of rows: those a first sync creates in one statement (the common
        case, `_decide_creates`), the rest under their locks the long way (`_decide_locked`)."""
        decided = await self._decide_creates(asks)
        rest = [a for a in asks if a.p.row.id not in decided]
        slow = dict(zip((a.p.row.id for a in rest), await self._decide_slow(rest), strict=True))
        return [decided[a.p.row.id] if a.p.row.id in decided else slow[a.p.row.id] for a in asks]

    def _creates_if_unmatched(self, asks: list[_Ask]) -> dict[int, MatchDecision]:
        """Asks whose decision with nothing matching them is a create by e-mail: the only
        ones fa_decide_creates may decide. A person's `match create` and rows without an
        e-mail go the long way, and so do rows sharing a lock key with another ask (the
        second must see the first's intent)."""
        keys = Counter(a.key for a in asks)
        found = {}
        for a in asks:
            if not (a.look and a.may_create and a.party.email and keys[a.key] == 1):
                continue
            review = a.p.row.metadata.get("review")
            if isinstance(review, dict) and review.get("decision") == "create":
                continue
            decision = decide(a.party, self._cfg.identity, (), (), unmatched=self._cfg.unmatched)
            if decision.action == "create":
                found[a.p.row.id] = decision
        return found

    async def _decide_creates(self, asks: list[_Ask]) -> dict[int, Resolution | Exception]:
        """One statement (fa_decide_creates) locks the rows that would be created if nothing
        matched them, checks under the locks that nothing does, and commits their intents.
        The decisions are exactly `_decide_locked`'s for them; rows it finds matched come
        back undecided."""
        decisions = self._creates_if_unmatched(asks)
        if not decisions:
            return {}
        chosen = [a for a in asks if a.p.row.id in decisions]
        marks = {a.p.row.id: self._intent(a, decisions[a.p.row.id]) for a in chosen}
        with lock_wait_bounded(LOCK_WAIT_SECONDS):
            rows = await self._ctx.pool.fetch(
                QUERIES["decide_creates"], self._client_id, self._ctx.run.id,
                self._ctx.run.fence, milliseconds(LOCK_WAIT_SECONDS),
                [a.p.row.id for a in chosen], [a.key for a in chosen],
                [a.p.row.profile_id for a in chosen], [a.p.row.email for a in chosen],
                [a.party.email for a in chosen], list(marks.values()),
            )  # fmt: skip
        outcome = {r["id"]: r["outcome"] for r in rows}
        by_id = {a.p.row.id: a for a in chosen}
        return {
            i: Resolution(None, "absent", marks[i]["intent"])
            if outcome[i] == "marked" else self._lost(by_id[i])
            for i in by_id if outcome[i] != "slow"
        }  # fmt: skip

    def _intent(self, ask: _Ask, decision: MatchDecision | None) -> dict[str, Any]:
        """The intent row ({id, intent, next_at}) of a create decided now."""
        p, now = ask.p, self._ctx.clock()
        intent = {
            "at": now.isoformat(),
            "identity": str(ask.key),
            "identity_key": decision.identity if decision else None,
            "sent": identifying(p.payload),
            "email": p.email,
            "attempt": p.row.attempts + 1,
            "payload_hash": p.hash,
            "run_id": self._ctx.run.id,
        }
        return {"id": p.row.id, "intent": intent, "next_at": (now + self._settle).isoformat()}

    async def _decide_slow(self, asks: list[_Ask]) -> list[Resolution | Exception]:
        """Decide several rows in one transaction holding every row's identity lock."""
        if not asks:
            return []
        results: list[Resolution | Exception] = []
        marks: dict[int, dict[str, Any]] = {}  #: entity id -> its intent row
        keys = [a.key for a in asks]
        async with identity_locks(self._ctx.pool, keys, self._client_id) as (conn, rows):
            creating: dict[str, list[tuple[int, datetime]]] = {}
            for row in rows:
                creating.setdefault(row["identity"], []).append((row["id"], row["intent_at"]))
            # Every looking row's match inputs in one read, taken under the locks.
            looking = [a for a in asks if a.look]
            matched = dict(zip(
                (a.p.row.id for a in looking),
                await match_rows(conn, client_id=self._client_id, cfg=self._cfg,
                                 asked=[(a.p.row, a.p.payload) for a in looking]),
                strict=True,
            ))  # fmt: skip
            for ask in asks:
                try:
                    results.append(await self._decide_locked(ask, creating, marks, conn, matched))
                except LeaseLost as exc:  # this row's defer found it taken over
                    results.append(exc)
            done = set()
            if marks:
                done = {
                    r["id"]
                    for r in await conn.fetch(
                        QUERIES["entity_mark_creating_many"],
                        self._ctx.run.id,
                        self._ctx.run.fence,
                        list(marks.values()),
                    )
                }
        return [
            self._lost(a) if isinstance(r, Resolution) and r.how == "absent"
            and a.p.row.id not in done else r
            for a, r in zip(asks, results, strict=True)
        ]  # fmt: skip

    async def _decide_locked(
        self,
        ask: _Ask,
        creating: dict[str, list[tuple[int, datetime]]],
        marks: dict[int, dict[str, Any]],
        conn: asyncpg.Connection,
        matched: dict[int, MatchDecision],
    ) -> Resolution:
        """One row's decision, its lock held: the steps `decide` promises."""
        p = ask.p
        others = [c for c in creating.get(str(ask.key), []) if c[0] != p.row.id]
        if others:
            await self._wait_for(p, others[0][0], others[0][1], conn)
            return Resolution(None, "waiting")
        decision = None
        if ask.look:
            decision = matched[p.row.id]
            if decision.action == "share":
                return Resolution(decision.url, "shared", shared_with=decision.shared_with)
            if decision.action == "link":
                return Resolution(decision.url, "index")
            if decision.action == "review":
                await self._review(p, decision, conn)
                return Resolution(None, "review")
        if not ask.may_create:
            return Resolution(None, "index")
        marks[p.row.id] = mark = self._intent(ask, decision)
        # A later row of this person in the same group now sees this create in flight.
        at = datetime.fromisoformat(mark["intent"]["at"])
        creating.setdefault(str(ask.key), []).insert(0, (p.row.id, at))
        return Resolution(None, "absent", mark["intent"])

    def _lost(self, ask: _Ask) -> LeaseLost:
        """The fenced intent write found the row taken over: this run lost its lease."""
        return LeaseLost(f"run {self._ctx.run.id}: lease lost; entity {ask.p.row.id} not recorded")

    async def _review(self, p: Prepared, decision: MatchDecision, conn: asyncpg.Connection) -> None:
        """Several contacts could be this customer: nothing is written, a person decides."""
        review = {**decision.review_metadata(), "at": self._ctx.clock().isoformat(),
                  "run_id": self._ctx.run.id}  # fmt: skip
        error = {"reason": decision.reason}
        entry = self._history_entry(EntityStatus.NEEDS_REVIEW, error=error)
        await self._write("entity_needs_review", p.row, review, error, entry, conn=conn)
        self._ctx.counts.needs_review += 1
        self._ctx.counts.note("warning", decision.reason, entity_id=p.row.id, email=p.row.email)
        log.info("match_needs_review", entity_id=p.row.id, candidates=len(decision.candidates))

    async def _wait_for(
        self, p: Prepared, other: int, other_at: datetime, conn: asyncpg.Connection
    ) -> None:
        """Another row is creating this person: release ours until that create has settled
        (it may be the contact we would link to). Not an attempt: nothing was tried."""
        now = self._ctx.clock()
        until = max(other_at + self._settle, now)
        message = (
            f"ledger row {other} is creating this contact and its outcome is not settled; "
            f"this row waits until {until.isoformat()}"
        )
        error = {"service": "fa-sync", "status": None, "message": message, "body": None}
        entry = self._history_entry(EntityStatus.PENDING, error=error)
        await self._write("entity_defer", p.row, until, error, entry, conn=conn)
        self._ctx.counts.retrying += 1
        self._ctx.counts.note("warning", message, entity_id=p.row.id, email=p.row.email)
        log.info("create_waits_for_other_row", entity_id=p.row.id, other=other)

    def check_settled(self, intent: dict[str, Any]) -> None:
        """Claims skip unsettled rows; a row that got here anyway must still not look yet."""
        settles = datetime.fromisoformat(intent["at"]) + self._settle
        if self._ctx.clock() < settles:
            raise TransientApiError(
                f"the create sent at {intent['at']} may still be committed by FreeAgent; "
                f"looked up after {settles.isoformat()}",
                service="fa-sync",
            )

    async def reconcile(self, p: Prepared, intent: dict[str, Any]) -> str | None:
        """The contact a settled create made, if it made one; several candidates: a person
        decides (adopting the wrong one would merge two customers)."""
        at = datetime.fromisoformat(intent["at"])
        sent = intent.get("sent") or p.payload
        since = at - INTENT_SLACK
        found = await self._index.find_created_since(
            sent, since, settled=at + self._settle, now=self._ctx.clock()
        )
        if len(found) > 1:
            raise RejectedRecord(
                f"a create whose outcome was unknown may be any of {len(found)} FreeAgent "
                f"contacts created since {since.isoformat()} with the same details: "
                f"{', '.join(found)}; set the right freeagent_url on this row (or delete the "
                "others in FreeAgent), then retry it",
                service="fa-sync",
            )
        return found[0] if found else None

    async def create(self, p: Prepared, intent: dict[str, Any]) -> dict[str, Any]:
        """POST once, its intent already committed; returns the contact, which the caller
        indexes with the row's outcome (Exporter._finish, remember=). When the outcome is
        unknown the row is left settling and CreateSettling raised. Never re-sent here: only
        a later lookup decides."""

        async def restamp() -> None:
            await self._restamp(p, intent)

        try:
            contact: dict[str, Any] = await self._fa.create_contact(p.payload, before_send=restamp)
        except OutcomeUnknown as exc:
            await self._settling(p, intent, exc)
            raise CreateSettling(
                str(exc), status=exc.status, body=exc.body, service=exc.service
            ) from exc
        except ApiError:
            # Refused unprocessed (429, 4xx) or never sent: no contact can appear later.
            await self._write("entity_clear_intent", p.row)
            raise
        return contact

    async def _restamp(self, p: Prepared, intent: dict[str, Any]) -> None:
        """Keep the settle window running from the POST. A create is decided with its batch,
        ahead of its turn for a concurrency slot and a rate grant (at FreeAgent's limits that
        can be minutes); an intent older than a tenth of the window when its POST goes out is
        stamped again first, so a crash after the POST still waits out nine tenths of the
        window before the contact is looked for."""
        now = self._ctx.clock()
        if now - datetime.fromisoformat(intent["at"]) <= self._settle / 10:
            return
        await self._write("entity_restamp_intent", p.row, now.isoformat(), now + self._settle)
        intent["at"] = now.isoformat()

    async def _settling(self, p: Prepared, intent: dict[str, Any], exc: ApiError) -> None:
        """Keep the intent and release the row until the create has certainly settled."""
        settles = datetime.fromisoformat(intent["at"]) + self._settle
        error = exc.as_json()
        entry = self._history_entry(
            EntityStatus.CREATING, error=error, settling_until=settles.isoformat()
        )
        await self._write("entity_create_settling", p.row, settles, error, entry)
        self.settling += 1
        self._ctx.counts.retrying += 1
        log.warning(
            "create_settling", entity_id=p.row.id, error=str(exc), until=settles.isoformat()
        )
        self._ctx.counts.note(
            "warning",
            f"create outcome unknown ({exc}); settling until {settles.isoformat()}, "
            "then looked up before any new create",
            entity_id=p.row.id,
            email=p.row.email,
        )
