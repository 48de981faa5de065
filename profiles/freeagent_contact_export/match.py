"""First-run matching: which contact an unlinked ledger row gets, decided without guessing.

In order, for a row with a usable e-mail:

1. another ledger row of the profile with the same identity (identity.py) already has a
   contact: the row shares it (``share``; the owner writes it, the sharer never does);
2. the FreeAgent contacts with the e-mail (case-insensitive, every view, Hidden included),
   leaving out those a ledger row of another identity owns: one is linked (``link``), several
   wait for a person (``review``, nothing written), none means ``create``.

A row without a usable e-mail is never linked automatically: it is created, or with
``unmatched: review`` it waits for a person when a FreeAgent contact nobody owns has the same
person or company name. A person's decision (`fa-sync match link/create`) wins over all this.

`decide` is pure; `MatchInputs.gather_many` reads what it needs for a group of rows in one
statement (the dry run uses both too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

import asyncpg

from daemon.db.queries import QUERIES
from daemon.db.records import ContactEntity
from profiles.freeagent_contact_export.config import ContactExportSettings
from profiles.freeagent_contact_export.identity import (
    Identity,
    IdentityMode,
    Party,
    identity_of,
    normalise_name,
)
from profiles.freeagent_contact_export.models import ContactOptions, Skipped
from profiles.freeagent_contact_export.payload import build_contact_payload, email_key
from profiles.freeagent_contact_export.prepared import read_buyer

#: Where a query runs: the pool, or the connection the caller holds (the identity lock's).
Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
Action = Literal["share", "link", "review", "create"]
#: Names of other rows need only the mapping's name rules, not the profile's defaults.
_BARE = ContactOptions()


@dataclass(frozen=True)
class Candidate:
    """A FreeAgent contact a row could be linked to, and which ledger rows already use it."""

    url: str
    name: str  #: for people reading `match list`
    email: str | None
    status: str | None  #: Active | Hidden
    owners: tuple[Party, ...] = ()


@dataclass(frozen=True)
class MatchDecision:
    action: Action
    reason: str
    url: str | None = None
    shared_with: str | None = None  #: source_key of the row whose contact is shared
    candidates: tuple[Candidate, ...] = ()
    identity: str | None = None  #: the row's identity key (None: a person chose to create)

    def review_metadata(self) -> dict[str, Any]:
        """metadata.review of a row left for a person."""
        return {
            "reason": self.reason,
            "candidates": [
                {"url": c.url, "name": c.name, "email": c.email, "status": c.status}
                for c in self.candidates
            ],
        }


def party_of(row: ContactEntity, payload: dict[str, Any] | None = None) -> Party:
    """A ledger row as identity sees it. Without `payload` the row's collected record is
    mapped again, so names are compared as FreeAgent would get them."""
    if payload is None:
        buyer = read_buyer(row)
        built = buyer if isinstance(buyer, Skipped) else build_contact_payload(buyer, _BARE)
        payload = {} if isinstance(built, Skipped) else built.to_api()
    return Party(
        row_id=row.id,
        profile_id=row.profile_id,
        source_key=row.source_key,
        website_id=row.website_id,
        email=email_key(payload.get("email")),
        first_name=payload.get("first_name"),
        last_name=payload.get("last_name"),
        organisation_name=payload.get("organisation_name"),
        url=row.freeagent_url,
    )


def _contact_name(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    person = " ".join(str(data[k]) for k in ("first_name", "last_name") if data.get(k))
    org = str(data.get("organisation_name") or "")
    return " / ".join(x for x in (person, org) if x)


def _same_name(me: Party, contact: dict[str, Any]) -> bool:
    """Person names (both) or company name equal, normalised."""
    org = normalise_name(me.organisation_name)
    if org and org == normalise_name(contact.get("organisation_name")):
        return True
    first, last = normalise_name(me.first_name), normalise_name(me.last_name)
    return bool(first and last) and (first, last) == (
        normalise_name(contact.get("first_name")),
        normalise_name(contact.get("last_name")),
    )


def decide(
    me: Party,
    mode: IdentityMode,
    peers: Sequence[Party],
    candidates: Sequence[Candidate],
    *,
    unmatched: str = "create",
    forced_create: bool = False,
) -> MatchDecision:
    """Share, link, review or create, for an unlinked row. `peers`: the profile's other rows
    with the same e-mail; `candidates`: FreeAgent contacts with the e-mail (or, for a row
    without one, with the same name), each with the ledger rows that own it."""
    if forced_create:
        return MatchDecision("create", "a person chose a new contact (fa-sync match create)")
    mine = identity_of(me, mode, peers)
    if not mine.by_email:
        return replace(_without_email(me, candidates, unmatched), identity=mine.key)
    return replace(_by_email(me, mine, mode, peers, candidates), identity=mine.key)


def _everyone(me: Party, peers: Sequence[Party], candidates: Sequence[Candidate]) -> list[Party]:
    """Every row known to this decision. Another row's identity is judged among all of them,
    itself and `me` included: a guest peer joins *its* account, which may be `me` (the peers
    query leaves `me` out) or, for an owner in another profile, a row of that profile."""
    return [me, *peers, *(o for c in candidates for o in c.owners)]


def _by_email(
    me: Party,
    mine: Identity,
    mode: IdentityMode,
    peers: Sequence[Party],
    candidates: Sequence[Candidate],
) -> MatchDecision:
    everyone = _everyone(me, peers, candidates)
    keys = {p.row_id: identity_of(p, mode, everyone).key for p in peers}
    # A contact some row of another identity also uses (linked before `identity` changed)
    # is nobody's to share: it would pull a third person into a merged contact.
    mixed = {p.url for p in peers if p.url and keys[p.row_id] != mine.key}
    sharing = sorted(
        (p for p in peers if p.url and p.url not in mixed and p.row_id != me.row_id
         and p.profile_id == me.profile_id and keys[p.row_id] == mine.key),
        key=lambda p: p.row_id,
    )  # fmt: skip
    if sharing:
        owner = sharing[0]
        return MatchDecision(
            "share", f"same {mode.value} identity as {owner.source_key}", owner.url,
            shared_with=owner.source_key,
        )  # fmt: skip
    free = [c for c in candidates if _usable(c, mine, mode, everyone)]
    if len(free) == 1:
        reason = f"the one FreeAgent contact with e-mail {me.email}"
        return MatchDecision("link", reason, free[0].url)
    if len(free) > 1:
        reason = f"{len(free)} FreeAgent contacts have e-mail {me.email}: a person decides"
        return MatchDecision("review", reason, candidates=tuple(free))
    return MatchDecision("create", f"no FreeAgent contact free to link with e-mail {me.email}")


def _usable(c: Candidate, mine: Identity, mode: IdentityMode, everyone: Sequence[Party]) -> bool:
    """A contact nobody owns, or one owned by rows of this same identity (another profile)."""
    return all(identity_of(o, mode, everyone).key == mine.key for o in c.owners)


def _without_email(me: Party, candidates: Sequence[Candidate], unmatched: str) -> MatchDecision:
    if unmatched == "review":
        same = tuple(c for c in candidates if not c.owners)
        if same:
            reason = (
                f"no usable e-mail, and {len(same)} FreeAgent contact(s) nobody links have the "
                "same name: a person decides (never linked by name automatically)"
            )
            return MatchDecision("review", reason, candidates=same)
    return MatchDecision("create", "no usable e-mail: never linked automatically")


@dataclass(frozen=True)
class MatchInputs:
    """What `decide` needs for one row, read from the ledger and the contact index."""

    me: Party
    peers: tuple[Party, ...]
    candidates: tuple[Candidate, ...]

    @classmethod
    async def gather_many(
        cls,
        db: Db,
        *,
        client_id: int,
        asked: Sequence[tuple[ContactEntity, dict[str, Any]]],
        by_name: bool = True,
    ) -> list[MatchInputs]:
        """What `decide` needs for each asked row: one statement for every row with an e-mail
        (a group of decisions under one lock transaction costs one round trip, not three per
        row). `by_name`: look for same-name contacts when a row has no e-mail (only
        `unmatched: review` uses them; the lookup scans the client's contacts)."""
        parties = [party_of(row, payload) for row, payload in asked]
        emailed = [i for i, me in enumerate(parties) if me.email]
        peers: dict[int, list[Party]] = {}
        owners: dict[int, list[Party]] = {}
        found: dict[int, list[Any]] = {}
        if emailed:
            records = await db.fetch(
                QUERIES["match_inputs_many"],
                client_id,
                [asked[i][0].id for i in emailed],
                [asked[i][0].profile_id for i in emailed],
                [asked[i][0].email for i in emailed],
                [parties[i].email for i in emailed],
            )
            for r in records:
                if r["kind"] == "contact":
                    found.setdefault(r["asked"], []).append(
                        {"url": r["c_url"], "email": r["c_email"], "status": r["c_status"],
                         "data": r["c_data"], "fa_updated_at": r["c_updated_at"]}
                    )  # fmt: skip
                else:
                    into = peers if r["kind"] == "peer" else owners
                    into.setdefault(r["asked"], []).append(party_of(ContactEntity.from_row(r)))
        result = []
        for (row, _), me in zip(asked, parties, strict=True):
            if not me.email:
                result.append(await cls._gather_by_name(db, client_id, row, me, by_name))
                continue
            mine = sorted(peers.get(row.id, []), key=lambda p: p.row_id) if row.email else []
            # fa_contact_by_email's order: fa_updated_at NULLS FIRST, then url
            contacts = sorted(
                found.get(row.id, []),
                key=lambda f: (f["fa_updated_at"] is not None, f["fa_updated_at"] or 0, f["url"]),
            )
            used = sorted(owners.get(row.id, []), key=lambda p: p.row_id)
            result.append(cls(me, tuple(mine), _candidates(contacts, used, row.id)))
        return result

    @classmethod
    async def _gather_by_name(
        cls, db: Db, client_id: int, row: ContactEntity, me: Party, by_name: bool
    ) -> MatchInputs:
        """A row without an e-mail: same-name contacts, when `by_name` asks for them."""
        if not by_name:
            return cls(me, (), ())
        found = await db.fetch(
            QUERIES["fa_contact_by_name"],
            client_id,
            (me.organisation_name or "").lower() or None,
            (me.last_name or "").lower() or None,
        )
        found = [f for f in found if _same_name(me, f["data"] or {})]
        owners = await _owners(db, client_id, [str(f["url"]) for f in found])
        return cls(me, (), _candidates(found, owners, row.id))


def _candidates(
    found: Sequence[Any], owners: Sequence[Party], row_id: int
) -> tuple[Candidate, ...]:
    """Contacts found, each with the rows (other than `row_id`) that use it."""
    return tuple(
        Candidate(
            url=str(f["url"]),
            name=_contact_name(f["data"]),
            email=f["email"],
            status=f["status"],
            owners=tuple(o for o in owners if o.url == f["url"] and o.row_id != row_id),
        )
        for f in found
    )


async def _owners(db: Db, client_id: int, urls: list[str]) -> list[Party]:
    if not urls:
        return []
    records = await db.fetch(QUERIES["entity_url_owners"], client_id, urls)
    return [party_of(ContactEntity.from_row(r)) for r in records]


async def match_rows(
    db: Db,
    *,
    client_id: int,
    cfg: ContactExportSettings,
    asked: Sequence[tuple[ContactEntity, dict[str, Any]]],
) -> list[MatchDecision]:
    """The matching decisions for unlinked rows, as the export takes them, read in one round
    trip."""
    gathered = await MatchInputs.gather_many(
        db, client_id=client_id, asked=asked, by_name=cfg.unmatched == "review"
    )
    return [_decide_row(inputs, cfg, row) for inputs, (row, _) in zip(gathered, asked, strict=True)]


def _decide_row(
    inputs: MatchInputs, cfg: ContactExportSettings, row: ContactEntity
) -> MatchDecision:
    """The decision for one row from what was gathered for it (a person's earlier
    `match create` forces a create)."""
    review = row.metadata.get("review")
    forced = isinstance(review, dict) and review.get("decision") == "create"
    return decide(
        inputs.me, cfg.identity, inputs.peers, inputs.candidates,
        unmatched=cfg.unmatched, forced_create=forced,
    )  # fmt: skip
