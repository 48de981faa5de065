"""Map one Magento buyer to the FreeAgent contact body: a small pure function.

``build_contact_payload`` does no I/O and never raises; a buyer FreeAgent cannot accept comes
back as ``Skipped(reason)`` for the ledger.  Decisions worth knowing:

* Text is NFC-normalised, whitespace-collapsed and stripped of control and invisible format
  characters (Postgres JSONB cannot store ``\\u0000``), then cut to 255 characters.  A value
  with no letter or digit at all ("-", ".", "--") counts as missing: checkout forms force
  buyers to type something into fields they do not have.
* Names: the customer's own first/last name; if that pair is incomplete, the billing address's
  pair.  FreeAgent needs ``organisation_name`` or *both* names, so a lone first (or last) name
  without a company is skipped rather than guessed into the other field.  With a company, any
  names present are sent as well.
* Company: a B2B company name (enriched by collect) wins over the billing address's company.
* E-mail is lower-cased; an invalid one is dropped (the contact is still useful without it).
* Country is sent as an English name, never an ISO code; an unknown code means no country.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import ValidationError

from .countries import FreeAgentLocale, country_name, freeagent_locale
from .models import MAX_TEXT, Buyer, ContactOptions, ContactPayload, MagentoAddress, Skipped

NO_NAME = "no name and no company: FreeAgent needs organisation_name or first_name and last_name"

# Local part: RFC 5322 "atext" dot-atoms; domain: LDH labels after IDNA encoding.
_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_MAX_EMAIL = 254  # RFC 5321 path limit; longer cannot be delivered anyway.


def build_contact_payload(buyer: Buyer, options: ContactOptions) -> ContactPayload | Skipped:
    """The FreeAgent contact for ``buyer`` with the profile's defaults, or why there is none."""
    first, last = _names(buyer)
    organisation = _fit(_clean(buyer.company_name)) or _fit(_clean(_company(buyer.billing)))
    problem = _name_problem(first, last, organisation)
    if problem is not None:
        return problem
    try:
        return ContactPayload(
            first_name=first,
            last_name=last,
            organisation_name=organisation,
            email=normalise_email(buyer.email),
            sales_tax_registration_number=_vat_number(buyer),
            locale=_locale(buyer.store_id, options),
            **_address(buyer.billing),
            **_defaults(options),
        )
    except ValidationError as exc:  # a bug in this module, not in the data: say so, don't crash
        return Skipped(f"payload failed validation ({exc.error_count()} errors): {exc}")


def normalise_email(value: object) -> str | None:
    """Trimmed, lower-cased address with an ASCII (IDNA) domain, or None if it is not one.

    Shared with matching code so that "Jane@Example.COM " and "jane@example.com" agree.
    """
    if not isinstance(value, str):
        return None
    local, at, domain = value.strip().lower().rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    email = f"{local}{at}{domain}"
    if len(email) > _MAX_EMAIL or len(local) > 64 or not _EMAIL.fullmatch(email):
        return None
    return email


# Zero-width (non-)joiners shape Indic/Arabic text and emoji; every other format character
# (ZWSP, BOM, soft hyphen, bidi overrides) is invisible noise that only defeats comparisons.
_KEEP_FORMAT = frozenset("\u200c\u200d")


def _visible(char: str) -> bool:
    """Whitespace (collapsed later) or a character that can be stored and shown."""
    category = unicodedata.category(char)
    if category == "Cf":
        return char in _KEEP_FORMAT
    return char.isspace() or category not in ("Cc", "Cs")


def _clean(value: object) -> str | None:
    """Tidy text, or None when nothing meaningful (no letter or digit) is left."""
    if not isinstance(value, str):
        return None
    kept = "".join(filter(_visible, value))
    text = " ".join(unicodedata.normalize("NFC", kept).split())
    return text if any(char.isalnum() for char in text) else None


def _fit(text: str | None) -> str | None:
    """Cut to FreeAgent's (assumed) 255-character limit without leaving a trailing space."""
    return text[:MAX_TEXT].rstrip() if text else None


def _names(buyer: Buyer) -> tuple[str | None, str | None]:
    """The buyer's own first/last pair if complete, else the billing address's pair."""
    first, last = _fit(_clean(buyer.first_name)), _fit(_clean(buyer.last_name))
    if (first and last) or buyer.billing is None:
        return first, last
    billing_first = _fit(_clean(buyer.billing.firstname))
    billing_last = _fit(_clean(buyer.billing.lastname))
    if billing_first and billing_last:
        return billing_first, billing_last
    return first, last


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


def _address(address: MagentoAddress | None) -> dict[str, str | None]:
    """Phone and postal fields of the billing address; nothing when there is none."""
    if address is None:
        return {}
    region = address.region
    region_text = (_clean(region.region) or _clean(region.region_code)) if region else None
    return {
        **_street(address.street),
        "phone_number": _fit(_clean(address.telephone)),
        "town": _fit(_clean(address.city)),
        "region": _fit(region_text),
        "postcode": _fit(_clean(address.postcode)),
        "country": country_name(address.country_id),
    }


def _street(lines: list[str]) -> dict[str, str | None]:
    """Lines 1-2 as address1/2; FreeAgent has three lines, so the 3rd+ are joined into the last."""
    kept = [text for text in map(_clean, lines) if text]
    return {
        "address1": _fit(kept[0]) if kept else None,
        "address2": _fit(kept[1]) if len(kept) > 1 else None,
        "address3": _fit(", ".join(kept[2:])) if len(kept) > 2 else None,
    }


def _vat_number(buyer: Buyer) -> str | None:
    """Billing address vat_id (what was invoiced), else the account's taxvat; compact form."""
    vat_id = buyer.billing.vat_id if buyer.billing is not None else None
    for raw in (vat_id, buyer.taxvat):
        text = _clean(raw)
        if text:
            return _fit("".join(text.split()).upper())
    return None


def _locale(store_id: int | None, options: ContactOptions) -> FreeAgentLocale | None:
    """Store mapping first, then the store's Magento locale, then the profile default."""
    if store_id is not None:
        if store_id in options.store_locales:
            return options.store_locales[store_id]
        derived = freeagent_locale(options.derive_locale_from_store.get(store_id))
        if derived is not None:
            return derived
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
