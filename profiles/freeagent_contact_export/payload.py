"""Map one Magento buyer to the FreeAgent contact body: a small pure function.

``build_contact_payload`` does no I/O and never raises; a buyer FreeAgent cannot accept comes
back as ``Skipped(reason)`` for the ledger.  Decisions worth knowing:

* Text is NFC-normalised, whitespace-collapsed and stripped of control and invisible format
  characters (Postgres JSONB cannot store ``\\u0000``), then cut to 255 characters (noted).  A value
  with no letter or digit at all ("-", ".", "--") counts as missing: checkout forms force
  buyers to type something into fields they do not have.
* Names: the customer's own first/last name; if that pair is incomplete, the billing address's
  pair.  FreeAgent needs ``organisation_name`` or *both* names, so a lone first (or last) name
  without a company is skipped rather than guessed into the other field.  With a company, any
  names present are sent as well.
* Company: a B2B company name (enriched by collect) wins over the billing address's company.
* E-mail is sent as Magento holds it (trimmed, invisible characters removed): FreeAgent
  validates it, and its 422 goes on the ledger row. Matching uses ``email_key`` (lower-cased).
* Country is sent as an English name, never an ISO code; an unknown code is left out.
* Anything left out or cut (an unknown country, text over 255 characters) is reported in
  ``notes`` for the ledger row; nothing is dropped silently.
"""

from __future__ import annotations

import unicodedata

from pydantic import ValidationError

from .clean import Note
from .countries import FreeAgentLocale, country_name, freeagent_locale
from .models import MAX_TEXT, Buyer, ContactOptions, ContactPayload, MagentoAddress, Skipped

NO_NAME = "no name and no company: FreeAgent needs organisation_name or first_name and last_name"


def build_contact_payload(
    buyer: Buyer, options: ContactOptions, notes: list[Note] | None = None
) -> ContactPayload | Skipped:
    """The FreeAgent contact for ``buyer`` with the profile's defaults, or why there is none.

    Every value left out or cut on the way is appended to ``notes`` (when given), so the
    caller can put it on the ledger row: the mapping never drops data silently.
    """
    seen: list[Note] = [] if notes is None else notes
    first, last = _names(buyer, seen)
    organisation = _fit(_clean(buyer.company_name), "organisation_name", seen) or _fit(
        _clean(_company(buyer.billing)), "organisation_name", seen
    )
    problem = _name_problem(first, last, organisation)
    if problem is not None:
        return problem
    try:
        return ContactPayload(
            first_name=first,
            last_name=last,
            organisation_name=organisation,
            email=contact_email(buyer.email, seen),
            sales_tax_registration_number=_vat_number(buyer, seen),
            locale=_locale(buyer.store_id, options, seen),
            **_address(buyer.billing, seen),
            **_defaults(options),
        )
    except ValidationError as exc:  # a bug in this module, not in the data: say so, don't crash
        return Skipped(f"payload failed validation ({exc.error_count()} errors): {exc}")


def contact_email(value: object, notes: list[Note] | None = None) -> str | None:
    """The e-mail to send: what Magento holds, trimmed, without control or invisible format
    characters; None only when nothing is left.

    Not validated and not lower-cased: whether an address is acceptable is FreeAgent's call,
    and its 422 goes on the ledger row. fa-sync used to drop addresses it disliked
    (``jane@localhost``, a 65-character local part, non-ASCII) and create the contact
    without them, losing the e-mail with no trace.
    """
    if not isinstance(value, str):
        return None
    if value.isprintable():  # no Cc, Cf or Cs character: nothing to remove (the common case)
        return value.strip() or None
    kept = "".join(char for char in value if _visible(char) and not _control(char))
    if len(kept) != len(value) and notes is not None:
        n = len(value) - len(kept)
        change = f"removed {n} control or invisible character{'s' if n > 1 else ''}"
        notes.append({"field": "email", "change": change})
    return kept.strip() or None


def email_key(value: object) -> str | None:
    """How e-mails are matched (FreeAgent index, shared contacts, locks): the e-mail as sent,
    lower-cased like PostgreSQL's lower(); None only for an empty e-mail."""
    email = contact_email(value)
    return email.lower() if email else None


# Zero-width (non-)joiners shape Indic/Arabic text and emoji; every other format character
# (ZWSP, BOM, soft hyphen, bidi overrides) is invisible noise that only defeats comparisons.
_KEEP_FORMAT = frozenset("\u200c\u200d")


def _visible(char: str) -> bool:
    """Whitespace (collapsed later) or a character that can be stored and shown."""
    category = unicodedata.category(char)
    if category == "Cf":
        return char in _KEEP_FORMAT
    return char.isspace() or category not in ("Cc", "Cs")


def _control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _clean(value: object) -> str | None:
    """Tidy text, or None when nothing meaningful (no letter or digit) is left.

    Not noted: NFC, whitespace and invisible characters change no visible content, and a
    value of only punctuation ("-") is a checkout-form placeholder, not data. Control
    characters were already removed, and noted, by collect.
    """
    if not isinstance(value, str):
        return None
    kept = value if value.isprintable() else "".join(filter(_visible, value))
    text = " ".join(unicodedata.normalize("NFC", kept).split())
    return text if any(char.isalnum() for char in text) else None


def _fit(text: str | None, field: str, notes: list[Note]) -> str | None:
    """Cut to FreeAgent's (assumed) 255-character limit without leaving a trailing space.

    FreeAgent documents no limit; 255 is the usual Rails string column. The cut is noted.
    """
    if not text:
        return None
    if len(text) > MAX_TEXT:
        notes.append({"field": field, "change": f"cut from {len(text)} to {MAX_TEXT} characters"})
    return text[:MAX_TEXT].rstrip()


def _names(buyer: Buyer, notes: list[Note]) -> tuple[str | None, str | None]:
    """The buyer's own first/last pair if complete, else the billing address's pair."""
    own = (_clean(buyer.first_name), _clean(buyer.last_name))
    billing = (
        (_clean(buyer.billing.firstname), _clean(buyer.billing.lastname))
        if buyer.billing is not None
        else (None, None)
    )
    first, last = own if all(own) or not all(billing) else billing
    return _fit(first, "first_name", notes), _fit(last, "last_name", notes)


def _name_problem(first: str | None, last: str | None, organisation: str | None) -> Skipped | None:
    """FreeAgent's rule: organisation_name, or both first_name and last_name."""
    if organisation or (first and last):
        return None
    if first or last:
        present = "first_name" if first else "last_name"
        return Skipped(
            f"only {present} and no company: FreeAgent needs organisation_name "
            "or first_name and last_name"
        )
    return Skipped(NO_NAME)


def _company(address: MagentoAddress | None) -> str | None:
    return address.company if address is not None else None


def _address(address: MagentoAddress | None, notes: list[Note]) -> dict[str, str | None]:
    """Phone and postal fields of the billing address; nothing when there is none."""
    if address is None:
        return {}
    region = address.region
    region_text = (_clean(region.region) or _clean(region.region_code)) if region else None
    return {
        **_street(address.street, notes),
        "phone_number": _fit(_clean(address.telephone), "phone_number", notes),
        "town": _fit(_clean(address.city), "town", notes),
        "region": _fit(region_text, "region", notes),
        "postcode": _fit(_clean(address.postcode), "postcode", notes),
        "country": _country(address.country_id, notes),
    }


def _country(code: str | None, notes: list[Note]) -> str | None:
    """The English name; an unknown code is left out (a bare "ZZ" on an invoice is worse
    than no country, and FreeAgent may refuse it) and noted."""
    name = country_name(code)
    if name is None and code is not None and code.strip():
        change = f"country_id {code[:40]!r} is not a known country: left out"
        notes.append({"field": "country", "change": change})
    return name


def _street(lines: list[str], notes: list[Note]) -> dict[str, str | None]:
    """Lines 1-2 as address1/2; FreeAgent has three lines, so the 3rd+ are joined into the last."""
    kept = [text for text in map(_clean, lines) if text]
    return {
        "address1": _fit(kept[0], "address1", notes) if kept else None,
        "address2": _fit(kept[1], "address2", notes) if len(kept) > 1 else None,
        "address3": _fit(", ".join(kept[2:]), "address3", notes) if len(kept) > 2 else None,
    }


def _vat_number(buyer: Buyer, notes: list[Note]) -> str | None:
    """Billing address vat_id (what was invoiced), else the account's taxvat; compact form."""
    vat_id = buyer.billing.vat_id if buyer.billing is not None else None
    for raw in (vat_id, buyer.taxvat):
        text = _clean(raw)
        if text:
            return _fit("".join(text.split()).upper(), "sales_tax_registration_number", notes)
    return None


def _locale(
    store_id: int | None, options: ContactOptions, notes: list[Note]
) -> FreeAgentLocale | None:
    """Store mapping first, then the store's Magento locale, then the profile default.

    Falling back is noted when the store's locale was looked up (storeConfigs read this run)
    and FreeAgent has no language for it (pt_PT) or Magento does not list the store.
    """
    if store_id is None:
        return options.locale
    if store_id in options.store_locales:
        return options.store_locales[store_id]
    magento = options.derive_locale_from_store.get(store_id)
    derived = freeagent_locale(magento)
    if derived is not None:
        return derived
    if options.derive_locale_from_store:
        fallback = f"default {options.locale}" if options.locale else "FreeAgent's default"
        why = (
            f"store {store_id} locale {magento[:20]!r} has no FreeAgent language"
            if magento
            else f"store {store_id} is not in Magento's storeConfigs"
        )
        notes.append({"field": "locale", "change": f"{why}: {fallback} used"})
    return options.locale


def _defaults(options: ContactOptions) -> dict[str, object]:
    """The profile's contact defaults; None ones are left out of the payload."""
    return options.model_dump(
        include={
            "status",
            "default_payment_terms_in_days",
            "uses_contact_invoice_sequence",
            "contact_name_on_invoices",
            "charge_sales_tax",
        }
    )
