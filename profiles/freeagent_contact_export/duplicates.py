"""Duplicates audit: FreeAgent contacts sharing an e-mail or an exact name.

FreeAgent enforces no uniqueness and has no merge; its own advice is to hide the copies. The
audit reads every contact (all views, Hidden included) into the index, drops index entries
FreeAgent no longer has (resolve.py's sweep), groups, and says which member a ledger row links.

`hide_unlinked` hides, in e-mail groups only, the Active copies no ledger row uses, and only
when some member of the group is linked (otherwise nothing says which one is right). Groups
sharing only a name are listed for a person: a name is not an identity, and two people called
Ann Lee are not duplicates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from daemon.db.queries import QUERIES
from profiles.freeagent_contact_export.resolve import ContactIndex

#: Width of the plain-text listing: readable on an 80-column terminal.
WIDTH = 80


@dataclass(frozen=True)
class Member:
    """One contact of a group."""

    url: str
    name: str  #: as FreeAgent shows it: organisation, else first and last name
    email: str | None
    status: str  #: Active | Hidden
    ledger_row: int | None  #: the ledger row linking it (lowest id), if any


@dataclass(frozen=True)
class Group:
    """Contacts sharing one e-mail (case-insensitive) or one exact name."""

    by: str  #: "email" | "name"
    value: str
    members: list[Member]

    @property
    def linked(self) -> list[Member]:
        return [m for m in self.members if m.ledger_row is not None]

    def to_hide(self) -> list[Member]:
        """The copies hide_unlinked hides: unlinked Active members of a linked e-mail group."""
        if self.by != "email" or not self.linked:
            return []
        return [m for m in self.members if m.ledger_row is None and m.status != "Hidden"]

    def as_json(self) -> dict[str, Any]:
        return {"by": self.by, "value": self.value, "members": [asdict(m) for m in self.members]}


def display_name(contact: dict[str, Any]) -> str:
    """FreeAgent's display name: the organisation, else first and last name."""
    org = str(contact.get("organisation_name") or "").strip()
    person = " ".join(
        str(contact.get(k) or "").strip() for k in ("first_name", "last_name")
    ).strip()
    return org or person


def _member(contact: dict[str, Any], links: dict[str, int]) -> Member:
    url = str(contact["url"])
    status = str(contact.get("status") or "Active")
    return Member(url, display_name(contact), contact.get("email") or None, status, links.get(url))


def group_duplicates(contacts: list[dict[str, Any]], links: dict[str, int]) -> list[Group]:
    """Groups of two or more contacts by e-mail, then by exact name (a name group whose
    members all share one e-mail group adds nothing and is left out). Pure."""
    members = [_member(c, links) for c in contacts if c.get("url")]
    by_email: dict[str, list[Member]] = {}
    by_name: dict[str, list[Member]] = {}
    for m in members:
        if m.email and m.email.strip():
            by_email.setdefault(m.email.strip().lower(), []).append(m)
        if m.name:
            by_name.setdefault(m.name, []).append(m)
    groups = [Group("email", k, v) for k, v in sorted(by_email.items()) if len(v) > 1]
    seen = [frozenset(m.url for m in g.members) for g in groups]
    groups += [
        Group("name", k, v)
        for k, v in sorted(by_name.items())
        if len(v) > 1 and not any({m.url for m in v} <= urls for urls in seen)
    ]
    return groups


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render(groups: list[Group]) -> list[str]:
    """The listing, one header per group and one line per contact, within WIDTH columns."""
    if not groups:
        return ["no duplicate contacts"]
    lines: list[str] = []
    for g in groups:
        lines.append(_cut(f"{g.by} {g.value!r}: {len(g.members)} contacts", WIDTH))
        for m in g.members:
            link = f"ledger row {m.ledger_row}" if m.ledger_row is not None else "unlinked"
            contact = "#" + m.url.rstrip("/").rsplit("/", 1)[-1]
            line = f"  {contact:<9} {_cut(m.name or '-', 28):<28} {m.status:<7} {link}"
            if g.by == "name" and m.email:
                line += f" {m.email}"
            lines.append(_cut(line, WIDTH))
    return lines


async def audit(pool: asyncpg.Pool, index: ContactIndex, client_id: int) -> list[Group]:
    """Refresh the index in full (a sweep: contacts FreeAgent no longer has are dropped),
    then group."""
    await index.refresh(full=True)
    contacts = [dict(r["data"]) for r in await pool.fetch(QUERIES["fa_contact_list"], client_id)]
    links = {
        str(r["freeagent_url"]): int(r["id"])
        for r in await pool.fetch(QUERIES["entity_links_of_client"], client_id)
    }
    return group_duplicates(contacts, links)


async def hide_unlinked(
    freeagent: Any, groups: list[Group], *, dry_run: bool
) -> list[tuple[Group, Member]]:
    """Hide (or, dry, only list) the unlinked copies of linked e-mail groups."""
    done = []
    for group in groups:
        for member in group.to_hide():
            if not dry_run:
                await freeagent.hide_contact(member.url)
            done.append((group, member))
    return done
