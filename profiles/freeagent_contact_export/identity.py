"""Who is the same contact: the identity key of a ledger row, a small pure function.

FreeAgent has no uniqueness, no search by e-mail and no merge, so deciding which Magento
records are one FreeAgent contact is fa-sync's job. The profile setting `identity` says how:

* ``account`` (default): one contact per Magento account. Two accounts with one e-mail (Magento
  allows that on different websites) are one person only when their person and company names
  agree; a guest buyer joins the registered account with the same e-mail on the same website.
* ``email_per_website``: one contact per (e-mail, website).
* ``email``: one contact per e-mail across websites.

Names are compared after Unicode NFKC, case folding and whitespace collapsing; accents are
kept ("Zoë" is not "Zoe"): folding them would merge "Müller" with "Muller", who may well be
two people, and merging two people is worse than a duplicate.

A row without an e-mail is its own identity in every mode: it is never shared or linked
automatically (a name is not an identity). Its lock still goes by its names, so look-alike
rows create one after the other and a create whose outcome was lost can be told apart.

The key decides three things: which ledger rows share one contact, which FreeAgent contacts a
row may be linked to (one owned by a row of another identity never), and the identity written
into a create intent. The advisory lock is coarser on purpose (`Identity.lock`): it goes by
e-mail, so matching by e-mail always sees every create of that e-mail settled first.
"""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class IdentityMode(enum.StrEnum):
    ACCOUNT = "account"
    EMAIL_PER_WEBSITE = "email_per_website"
    EMAIL = "email"


@dataclass(frozen=True)
class Party:
    """What identity needs to know of one ledger row."""

    row_id: int  #: contact_entity.id (older rows have smaller ids)
    profile_id: int
    source_key: str  #: customer:<id> | guest:<e-mail>
    website_id: int | None  #: guests: the website of their order's store (None if unknown)
    email: str | None  #: matching key: the e-mail as sent, lower-cased; None if unusable
    first_name: str | None = None  #: as in the contact payload
    last_name: str | None = None
    organisation_name: str | None = None
    url: str | None = None  #: the FreeAgent contact the row is linked to

    @property
    def is_guest(self) -> bool:
        return self.source_key.startswith("guest:")

    @property
    def names(self) -> str:
        """Person and company names, normalised, as one comparable value."""
        return "|".join(
            normalise_name(v) for v in (self.first_name, self.last_name, self.organisation_name)
        )


@dataclass(frozen=True)
class Identity:
    """A row's identity: `key` (sharing, matching, create intent) and `lock` (serialising)."""

    key: str
    lock: str  #: the e-mail, or for a row without one its names (old formula, kept stable)

    @property
    def by_email(self) -> bool:
        """Only e-mail identities are ever shared or linked automatically."""
        return not self.key.startswith("row:")


def normalise_name(value: Any) -> str:
    """NFKC, case-folded, whitespace collapsed; accents kept."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value))
    return " ".join(text.casefold().split())


def _lock_text(value: Any) -> str:
    """The lock's normalisation (unchanged since the first release: intents in flight during an
    upgrade must still find each other)."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text.lower()


def identity_of(party: Party, mode: IdentityMode, peers: Iterable[Party] = ()) -> Identity:
    """The identity of `party` under `mode`. `peers`: other rows of the profile with the same
    e-mail (only guests in `account` mode need them, to find their account)."""
    if party.email is None:
        lock = "|".join(
            _lock_text(v) for v in (party.organisation_name, party.first_name, party.last_name)
        )
        return Identity(key=f"row:{party.profile_id}:{party.source_key}", lock=lock)
    email = party.email
    if mode is IdentityMode.EMAIL:
        key = f"email:{email}"
    elif mode is IdentityMode.EMAIL_PER_WEBSITE:
        site = "?" if party.website_id is None else str(party.website_id)
        key = f"email:{site}:{email}"
    else:
        account = _account_of_guest(party, peers) if party.is_guest else None
        who = account or party
        key = f"person:{email}|{who.names}"
    return Identity(key=key, lock=email)


def _account_of_guest(guest: Party, peers: Iterable[Party]) -> Party | None:
    """The registered account a guest joins: same e-mail and profile, same website (Magento
    allows one per website). A guest whose website is unknown joins the account only when
    there is exactly one with that e-mail."""
    accounts = [
        p
        for p in peers
        if not p.is_guest and p.email == guest.email and p.profile_id == guest.profile_id
    ]
    if guest.website_id is None:
        return accounts[0] if len(accounts) == 1 else None
    same_site = [p for p in accounts if p.website_id == guest.website_id]
    return min(same_site, key=lambda p: p.row_id) if same_site else None


def lock_key(client_id: int, identity: Identity) -> int:
    """A 64-bit advisory-lock key for "this e-mail (or these names) at this FreeAgent client"."""
    digest = hashlib.blake2b(f"{client_id}:{identity.lock}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
