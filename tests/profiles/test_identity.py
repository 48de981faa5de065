"""Who is the same contact: identity keys per mode, and first-run matching decisions (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from daemon.db.records import ContactEntity
from daemon.errors import ConfigError
from profiles.freeagent_contact_export.config import load_settings
from profiles.freeagent_contact_export.identity import IdentityMode, Party, identity_of, lock_key
from profiles.freeagent_contact_export.match import Candidate, decide, party_of

ACCOUNT, PER_SITE, EMAIL = IdentityMode.ACCOUNT, IdentityMode.EMAIL_PER_WEBSITE, IdentityMode.EMAIL
MAIL = "tomas@example.com"


def _party(n: int, site: int | None, first: str, last: str, **kw: object) -> Party:
    key = kw.pop("key", f"customer:{n}")
    base = Party(row_id=n, profile_id=1, source_key=str(key), website_id=site, email=MAIL,
                 first_name=first, last_name=last)  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


TOMAS = _party(1, 1, "Tomáš", "Novák")
SIOBHAN = _party(2, 2, "Siobhán", "Murphy")
TOMAS_2 = _party(3, 2, "Tomáš", "Novák")
TOMAS_2_CASE = _party(3, 2, " TOMÁŠ ", "novák")
TOMAS_2_FOLDED = _party(3, 2, "Tomas", "Novak")
TOMAS_2_COMPANY = _party(3, 2, "Tomáš", "Novák", organisation_name="Novák s.r.o.")
TOMAS_2_WIDE = _party(3, 2, "Ｔｏｍáš", "Novák")  # full-width letters: NFKC makes them ASCII
GUEST_1 = _party(9, 1, "Tom", "N", key=f"guest:{MAIL}")
GUEST_2 = _party(9, 2, "Tom", "N", key=f"guest:{MAIL}")
GUEST_NOWHERE = _party(9, None, "Tom", "N", key=f"guest:{MAIL}")
NO_MAIL_A = _party(5, 1, "Ann", "Lee", email=None)
NO_MAIL_B = _party(6, 1, "Ann", "Lee", email=None)
PEERS = (TOMAS, SIOBHAN)


@pytest.mark.parametrize(
    ("mode", "a", "b", "peers", "same"),
    [
        # account: the case, two people registered with one e-mail on two websites
        (ACCOUNT, TOMAS, SIOBHAN, (), False),
        # account: one person with an account on each website, names agree
        (ACCOUNT, TOMAS, TOMAS_2, (), True),
        # account: case and whitespace do not make another person
        (ACCOUNT, TOMAS, TOMAS_2_CASE, (), True),
        # account: NFKC folds compatibility forms (full-width letters)
        (ACCOUNT, TOMAS, TOMAS_2_WIDE, (), True),
        # account: accents are kept, "Novák" is not "Novak"
        (ACCOUNT, TOMAS, TOMAS_2_FOLDED, (), False),
        # account: the company name is part of who it is
        (ACCOUNT, TOMAS, TOMAS_2_COMPANY, (), False),
        # account: a guest joins the account on its own website, whatever name it typed
        (ACCOUNT, GUEST_1, TOMAS, PEERS, True),
        (ACCOUNT, GUEST_2, SIOBHAN, PEERS, True),
        # account: ... and not the account on another website
        (ACCOUNT, GUEST_1, SIOBHAN, PEERS, False),
        # account: a guest of unknown website joins only a single account with its e-mail
        (ACCOUNT, GUEST_NOWHERE, TOMAS, (TOMAS,), True),
        (ACCOUNT, GUEST_NOWHERE, TOMAS, PEERS, False),
        # email_per_website: the website separates, names do not
        (PER_SITE, TOMAS, TOMAS_2, (), False),
        (PER_SITE, SIOBHAN, TOMAS_2, (), True),
        (PER_SITE, GUEST_1, TOMAS, PEERS, True),
        # email: one contact per e-mail across websites
        (EMAIL, TOMAS, SIOBHAN, (), True),
        (EMAIL, GUEST_2, TOMAS, PEERS, True),
        # every mode: rows without an e-mail are never the same, even with one name
        (ACCOUNT, NO_MAIL_A, NO_MAIL_B, (), False),
        (PER_SITE, NO_MAIL_A, NO_MAIL_B, (), False),
        (EMAIL, NO_MAIL_A, NO_MAIL_B, (), False),
    ],
)
def test_identity_per_mode(
    mode: IdentityMode, a: Party, b: Party, peers: tuple[Party, ...], same: bool
) -> None:
    """Two rows are one contact exactly when the mode says so."""
    assert (identity_of(a, mode, peers).key == identity_of(b, mode, peers).key) is same


@pytest.mark.parametrize("mode", list(IdentityMode))
def test_lock_goes_by_email_in_every_mode(mode: IdentityMode) -> None:
    """Rows of one e-mail always serialise (matching must see each other's creates settled);
    look-alikes without an e-mail serialise by name."""
    assert lock_key(1, identity_of(TOMAS, mode)) == lock_key(1, identity_of(SIOBHAN, mode))
    assert lock_key(1, identity_of(TOMAS, mode)) != lock_key(2, identity_of(TOMAS, mode))
    assert lock_key(1, identity_of(NO_MAIL_A, mode)) == lock_key(1, identity_of(NO_MAIL_B, mode))


def test_party_matches_email_case_insensitively() -> None:
    """The e-mail key is the e-mail as sent, lower-cased."""
    row = ContactEntity(
        id=1, profile_id=1, source_key="customer:1", magento_customer_id=1, website_id=1,
        email="Ann@Example.com", freeagent_url=None, status="pending", attempts=0,
        payload_hash=None, source_data={}, metadata={},
    )  # fmt: skip
    party = party_of(row, {"email": "Ann@Example.com", "first_name": "Ann", "last_name": "Lee"})
    assert party.email == "ann@example.com"


def _contact(n: int, *owners: Party) -> Candidate:
    return Candidate(f"https://fa.test/v2/contacts/{n}", f"Contact {n}", MAIL, "Active", owners)


OWNED_TOMAS = replace(TOMAS, url="https://fa.test/v2/contacts/1")
OTHER_PROFILE_TOMAS = replace(TOMAS_2, profile_id=2, url="https://fa.test/v2/contacts/1")
#: Linked to Tomáš's contact while the profile ran `identity: email`.
SIOBHAN_ON_TOMAS = replace(SIOBHAN, url="https://fa.test/v2/contacts/1")
SIOBHAN_AGAIN = _party(4, 3, "Siobhán", "Murphy")


ZOE = {"email": "zoe@example.co.uk"}
#: One person, two profiles of one client: her account ("Zoë Ångström") and her guest order
#: ("Zoe Angstrom", the name typed at checkout) in each.
ZOE_ACCOUNT_P1 = _party(1, 1, "Zoë", "Ångström", url="https://fa.test/v2/contacts/1", **ZOE)
ZOE_GUEST_P1 = _party(61, 1, "Zoe", "Angstrom", key="guest:zoe@example.co.uk",
                      url="https://fa.test/v2/contacts/1", **ZOE)  # fmt: skip
ZOE_ACCOUNT_P2 = _party(30, 1, "Zoë", "Ångström", profile_id=2, **ZOE)
ZOE_GUEST_P2 = _party(62, 1, "Zoe", "Angstrom", key="guest:zoe@example.co.uk", profile_id=2,
                      **ZOE)  # fmt: skip
ZOE_GUEST_P2_OWNS = replace(ZOE_GUEST_P2, url="https://fa.test/v2/contacts/31")


@pytest.mark.parametrize(
    ("me", "mode", "peers", "candidates", "unmatched", "action", "url"),
    [
        # exactly one contact with the e-mail: linked
        (TOMAS, ACCOUNT, (), (_contact(1),), "create", "link", 1),
        # several: a person decides, nothing written
        (TOMAS, ACCOUNT, (), (_contact(1), _contact(2)), "create", "review", None),
        # none: created
        (TOMAS, ACCOUNT, (), (), "create", "create", None),
        # the only one belongs to another identity (Tomáš's): Siobhán gets her own
        (SIOBHAN, ACCOUNT, (OWNED_TOMAS,), (_contact(1, OWNED_TOMAS),), "create", "create", None),
        # one owned by another identity, one free: the free one is linked
        (SIOBHAN, ACCOUNT, (OWNED_TOMAS,), (_contact(1, OWNED_TOMAS), _contact(2)), "create",
         "link", 2),
        # the same person on another website of the profile: shares that row's contact
        (TOMAS_2, ACCOUNT, (OWNED_TOMAS,), (_contact(1, OWNED_TOMAS),), "create", "share", 1),
        # email mode: Siobhán shares Tomáš's contact (one contact per e-mail)
        (SIOBHAN, EMAIL, (OWNED_TOMAS,), (_contact(1, OWNED_TOMAS),), "create", "share", 1),
        # after a change of identity, a merged contact pulls nobody else in: Siobhán's
        # third account gets its own contact, not Tomáš's
        (SIOBHAN_AGAIN, ACCOUNT, (OWNED_TOMAS, SIOBHAN_ON_TOMAS),
         (_contact(1, OWNED_TOMAS, SIOBHAN_ON_TOMAS),), "create", "create", None),
        # a contact used by the same identity in another profile of the client: linked
        (TOMAS, ACCOUNT, (), (_contact(1, OTHER_PROFILE_TOMAS),), "create", "link", 1),
        # a guest whose order names differ from the account's ("Zoe Angstrom" / "Zoë
        # Ångström") joins the account: it shares the contact the account row of its own
        # profile owns (the peers query leaves `me` out, so the guest's account is `me`)
        (ZOE_ACCOUNT_P2, ACCOUNT, (ZOE_GUEST_P2_OWNS,), (_contact(31, ZOE_GUEST_P2_OWNS),),
         "create", "share", 31),
        # ... and while its account has no contact yet, it links the contact another profile's
        # account and guest rows (one person there too) own, instead of creating a third
        (ZOE_GUEST_P2, ACCOUNT, (ZOE_ACCOUNT_P2,), (_contact(1, ZOE_ACCOUNT_P1, ZOE_GUEST_P1),),
         "create", "link", 1),
        # no e-mail: never linked by name; unmatched=create creates
        (NO_MAIL_A, ACCOUNT, (), (_contact(3),), "create", "create", None),
        # no e-mail and unmatched=review: a same-name contact nobody links waits for a person
        (NO_MAIL_A, ACCOUNT, (), (_contact(3),), "review", "review", None),
        # ... but one another row already links is not a candidate
        (NO_MAIL_A, ACCOUNT, (), (_contact(3, NO_MAIL_B),), "review", "create", None),
    ],
)  # fmt: skip
def test_first_run_matching(
    me: Party,
    mode: IdentityMode,
    peers: tuple[Party, ...],
    candidates: tuple[Candidate, ...],
    unmatched: str,
    action: str,
    url: int | None,
) -> None:
    """Share, link, review or create, as the table says; never a contact of another identity."""
    decision = decide(me, mode, peers, candidates, unmatched=unmatched)
    assert decision.action == action, decision.reason
    assert decision.url == (f"https://fa.test/v2/contacts/{url}" if url else None)
    if action == "review":
        assert decision.candidates and decision.review_metadata()["candidates"]


def test_a_persons_create_decision_wins_over_candidates() -> None:
    """`fa-sync match create`: a new contact even though two candidates exist."""
    decision = decide(TOMAS, ACCOUNT, (), (_contact(1), _contact(2)), forced_create=True)
    assert decision.action == "create"


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ({}, ACCOUNT),  # the default
        ({"share_contacts_by_email": True}, EMAIL),  # deprecated alias: today's behaviour
        ({"share_contacts_by_email": False}, ACCOUNT),
        ({"identity": "email_per_website"}, PER_SITE),
    ],
)
def test_identity_setting_and_its_deprecated_alias(raw: dict[str, object], mode: str) -> None:
    """`identity` is read, and the old `share_contacts_by_email` maps onto it."""
    assert load_settings("demo", raw).identity == mode


@pytest.mark.parametrize(
    "raw",
    [
        {"identity": "email", "share_contacts_by_email": True},  # both: ambiguous
        {"share_contacts_by_email": "yes"},
        {"identity": "customer"},
        {"unmatched": "link"},  # never linked automatically by name
    ],
)
def test_bad_identity_settings_are_refused(raw: dict[str, object]) -> None:
    """A setting that cannot be read is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"identity|share_contacts_by_email|unmatched"):
        load_settings("demo", raw)
