"""FreeAgent's contact rules, as pure functions: what may be written, what is valid, what is shown.

Kept apart from HTTP so the rules read like the reference (§4 attributes, §5 list options)
and can be checked without a server. Everything here is strict on purpose: the simulator
should refuse what the live API might refuse, so our client fails here first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pycountry

MAX_STRING = 255  #: FreeAgent's columns are Rails strings; longer values are refused
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100  #: larger per_page values are clamped, not refused
DEFAULT_COUNTRY = "United Kingdom"  #: the demo company's country, used when none is sent

STRING_FIELDS = frozenset(
    {
        "organisation_name", "first_name", "last_name", "email", "billing_email",
        "phone_number", "mobile", "address1", "address2", "address3", "town", "region",
        "postcode", "country", "sales_tax_registration_number", "unique_tax_reference",
        "subcontractor_verification_number",
    }
)  # fmt: skip
# FreeAgent's own locale codes, several not ISO (cz, dk, nk, se, rs): reference §4.
LOCALES = frozenset(
    {
        "bg", "ca", "cy", "cz", "de", "dk", "en", "en-US", "es", "et", "fi", "fr", "fr-BE",
        "fr-CA", "is", "it", "lv-LV", "nl", "nl-BE", "nk", "pl-PL", "pt-BR", "ro", "rs", "ru",
        "se", "sk", "tr",
    }
)  # fmt: skip
CHOICES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "status": frozenset({"Active", "Hidden"}),
        "charge_sales_tax": frozenset({"Auto", "Always", "Never"}),
        "cis_deduction_rate": frozenset({"cis_gross", "cis_standard", "cis_higher"}),
        "locale": LOCALES,
    }
)
BOOLEAN_FIELDS = frozenset(
    {"uses_contact_invoice_sequence", "contact_name_on_invoices", "is_cis_subcontractor"}
)
INTEGER_FIELDS = frozenset({"default_payment_terms_in_days"})
WRITABLE = STRING_FIELDS | BOOLEAN_FIELDS | INTEGER_FIELDS | frozenset(CHOICES)

#: Only users with permission level >= 3 see or set these (reference §3).
DETAIL_FIELDS = frozenset(
    {
        "email", "billing_email", "phone_number", "mobile", "address1", "address2",
        "address3", "town", "region", "postcode", "country",
    }
)  # fmt: skip
#: What a new contact holds before the client's fields are applied.
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "status": "Active",
        "charge_sales_tax": "Auto",
        "country": DEFAULT_COUNTRY,
        "contact_name_on_invoices": True,
        "uses_contact_invoice_sequence": False,
    }
)
#: Read-only fields the live API adds to every contact; sending them back is refused.
READ_ONLY: Mapping[str, Any] = MappingProxyType(
    {
        "active_projects_count": 0,
        "account_balance": "0.0",
        "emails_invoices_automatically": False,
        "emails_payment_reminders": False,
        "emails_thank_you_notes": False,
        "uses_contact_level_email_settings": False,
    }
)
#: Every view the live API knows; we hold no bills or projects, so some are always empty.
VIEWS = frozenset(
    {
        "all", "active", "clients", "suppliers", "active_projects", "completed_projects",
        "open_clients", "open_suppliers", "hidden",
    }
)  # fmt: skip
SORTS = frozenset({"name", "created_at", "updated_at"})

_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_FORMATS: Mapping[str, re.Pattern[str]] = MappingProxyType(
    {
        "unique_tax_reference": re.compile(r"^\d{10}$"),
        "subcontractor_verification_number": re.compile(r"^V\d{10}[A-Z]{0,2}$"),
    }
)


class ContactError(Exception):
    """A write the API refuses: 400 for malformed/unpermitted input, 422 for invalid values."""

    def __init__(self, status: int, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.status = status
        self.messages = messages

    def body(self) -> dict[str, Any]:
        """422 uses the validation list shape; 400 the single-error shape (reference §7)."""
        if self.status == 422:
            return {"errors": [{"message": m} for m in self.messages]}
        return {"errors": {"error": {"message": "; ".join(self.messages)}}}


#: FreeAgent's only published country list, the EC VAT MOSS place_of_supply values (reference
#: addendum): for these countries only this spelling is accepted ("Czech Republic", never
#: "Czechia"; "Netherlands", never "The Netherlands"), since with charge_sales_tax Auto a wrong
#: spelling changes the tax.
EU_SPELLINGS: Mapping[str, str] = MappingProxyType(
    {
        "AT": "Austria", "BE": "Belgium", "BG": "Bulgaria", "HR": "Croatia", "CY": "Cyprus",
        "CZ": "Czech Republic", "DK": "Denmark", "EE": "Estonia", "FI": "Finland",
        "FR": "France", "DE": "Germany", "GR": "Greece", "HU": "Hungary", "IE": "Ireland",
        "IT": "Italy", "LV": "Latvia", "LT": "Lithuania", "LU": "Luxembourg", "MT": "Malta",
        "NL": "Netherlands", "PL": "Poland", "PT": "Portugal", "RO": "Romania",
        "SK": "Slovakia", "SI": "Slovenia", "ES": "Spain", "SE": "Sweden",
    }
)  # fmt: skip


#: Outside the EU, the common English name where ISO's short name is a formal or local one
#: (the names FreeAgent's examples and UI use are English; accepted spellings are unverified,
#: reference §11). pycountry's own common_name (South Korea, Vietnam, Iran...) needs no entry.
COMMON_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "TR": "Turkey", "RU": "Russia", "BN": "Brunei", "CI": "Ivory Coast", "CV": "Cape Verde",
        "PS": "Palestine", "VA": "Vatican City", "FM": "Micronesia",
    }
)  # fmt: skip


def _country_names() -> frozenset[str]:
    """One spelling per country, exactly as written (accepted spellings are unverified, so
    the harsher reading: case matters, and neither ISO's formal names nor other variants
    pass): EU countries as FreeAgent's own list spells them, the others by COMMON_NAMES, else
    pycountry's common_name, else its short name."""
    names: set[str] = set()
    for country in pycountry.countries:
        code = country.alpha_2
        common = getattr(country, "common_name", None)
        names.add(EU_SPELLINGS.get(code) or COMMON_NAMES.get(code) or common or country.name)
    return frozenset(names)


COUNTRIES = _country_names()


def format_timestamp(moment: datetime) -> str:
    """UTC with milliseconds and a Z, the live API's shape: 2026-08-16T12:43:38.000Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 to an aware datetime; a value without offset is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def humanise(name: str) -> str:
    """Rails' attribute label: first_name -> First name."""
    return name.replace("_", " ").capitalize()


def prepare_changes(
    existing: Mapping[str, Any], attributes: Any, permission_level: int
) -> dict[str, Any]:
    """The stored contact after applying `attributes` to `existing` (empty for a create).

    None or "" clears a field. Raises ContactError exactly when the API would refuse.
    """
    if not isinstance(attributes, dict):
        raise ContactError(400, ["param is missing or the value is empty: contact"])
    unpermitted = [name for name in attributes if name not in WRITABLE]
    if unpermitted:
        raise ContactError(400, [f"found unpermitted parameters: {', '.join(unpermitted)}"])
    merged, errors = {**DEFAULTS, **existing}, []
    for name, value in attributes.items():
        if name in DETAIL_FIELDS and permission_level < 3:
            continue  # the live API ignores detail fields for low-permission users
        cleaned, error = clean_value(name, value)
        if error:
            errors.append(f"{humanise(name)} {error}")
        elif cleaned is None:
            merged.pop(name, None)
        else:
            merged[name] = cleaned
    merged = {**DEFAULTS, **merged}  # cleared defaults come back, as a blank form would
    errors.extend(name_errors(merged))
    if errors:
        raise ContactError(422, errors)
    return merged


def clean_value(name: str, value: Any) -> tuple[Any, str | None]:
    """(value to store, None) or (None, Rails-style error); (None, None) means clear."""
    if value is None or value == "":
        return None, None
    if name in BOOLEAN_FIELDS:
        return (value, None) if isinstance(value, bool) else (None, "is invalid")
    if name in INTEGER_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool):
            return None, "is not a number"
        return (value, None) if value >= 0 else (None, "must be greater than or equal to 0")
    if not isinstance(value, str):
        return None, "is invalid"
    if len(value) > MAX_STRING:
        return None, f"is too long (maximum is {MAX_STRING} characters)"
    return _clean_string(name, value)


def _clean_string(name: str, value: str) -> tuple[Any, str | None]:
    """Field-specific checks for string attributes."""
    if name in CHOICES:
        return (value, None) if value in CHOICES[name] else (None, "is not included in the list")
    if name == "country":
        known = value in COUNTRIES
        return (value, None) if known else (None, "is not a recognised country name")
    if name in {"email", "billing_email"}:
        # One address: whether two comma-separated ones are accepted is unverified (§11).
        return (value, None) if _EMAIL.match(value) else (None, "is invalid")
    if name in _FORMATS and not _FORMATS[name].match(value):
        return None, "is invalid"
    return value, None


def name_errors(contact: Mapping[str, Any]) -> list[str]:
    """Organisation name, or both first and last name: blank means whitespace too."""
    if str(contact.get("organisation_name") or "").strip():
        return []
    return [
        f"{humanise(name)} can't be blank"
        for name in ("first_name", "last_name")
        if not str(contact.get(name) or "").strip()
    ]


def render_contact(url: str, stored: Mapping[str, Any], permission_level: int) -> dict[str, Any]:
    """The API's view of a contact: url first, empty fields omitted (never null)."""
    visible = {
        name: value
        for name, value in stored.items()
        if value is not None
        and value != ""
        and (permission_level >= 3 or name not in DETAIL_FIELDS)
    }
    return {"url": url, **visible, **READ_ONLY}


@dataclass(frozen=True)
class ListQuery:
    """The parsed query string of GET /v2/contacts."""

    view: str = "active"
    sort: str = "name"
    descending: bool = False
    updated_since: datetime | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> ListQuery:
        """Read view/sort/updated_since/page/per_page; ContactError(400) on nonsense."""
        view = query.get("view", "active")
        if view not in VIEWS:
            raise ContactError(400, [f"Invalid view: {view}"])
        sort = query.get("sort", "name")
        descending, sort = sort.startswith("-"), sort.removeprefix("-")
        if sort not in SORTS:
            raise ContactError(400, [f"Invalid sort: {sort}"])
        page = _positive_int(query, "page", 1)
        per_page = min(_positive_int(query, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        since = _since(query.get("updated_since"))
        return cls(view, sort, descending, since, page, per_page)

    def last_page(self, total: int) -> int:
        """Pages needed for `total` contacts; an empty list still has page 1."""
        return max(1, math.ceil(total / self.per_page))

    def page_of(self, items: list[Any]) -> list[Any]:
        """This query's page of an already filtered and sorted list."""
        start = (self.page - 1) * self.per_page
        return items[start : start + self.per_page]


def _positive_int(query: Mapping[str, str], name: str, default: int) -> int:
    """A 1-based paging number; anything else is a bad request."""
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ContactError(400, [f"Invalid {name}: {raw}"])
    return int(raw)


def _since(raw: str | None) -> datetime | None:
    """updated_since as a datetime; an unparseable value is refused, not ignored."""
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise ContactError(400, [f"Invalid updated_since: {raw}"]) from None


def in_view(
    view: str, stored: Mapping[str, Any], has_invoices: bool, *, all_includes_hidden: bool = False
) -> bool:
    """Whether a contact belongs to a list view; clients are those already invoiced.

    Whether view=all includes Hidden contacts is unverified (reference §9.5, §11): by
    default it does not, the harsher reading, so a client must also list view=hidden.
    """
    active = stored.get("status") != "Hidden"
    membership = {
        "all": active or all_includes_hidden,
        "active": active,
        "hidden": not active,
        "clients": active and has_invoices,
        "open_clients": active and has_invoices,
    }
    return membership.get(view, False)  # supplier and project views: we hold none


def select_contacts(
    contacts: Mapping[int, Mapping[str, Any]],
    invoiced: Iterable[int],
    query: ListQuery,
    *,
    all_includes_hidden: bool = False,
) -> list[int]:
    """Ids of the contacts the list query returns, in its order, before paging.

    updated_since is taken as strictly after (the docs do not say; the harsher reading):
    a contact updated at exactly the time asked for is not listed.
    """
    invoiced_ids = set(invoiced)
    since = query.updated_since
    chosen = [
        contact_id
        for contact_id, stored in contacts.items()
        if in_view(
            query.view, stored, contact_id in invoiced_ids, all_includes_hidden=all_includes_hidden
        )
        and (since is None or parse_timestamp(stored["updated_at"]) > since)
    ]

    def key(contact_id: int) -> tuple[str, int]:
        stored = contacts[contact_id]
        if query.sort == "name":
            parts = ("organisation_name", "last_name", "first_name")
            return "".join(str(stored.get(p) or "") for p in parts).casefold(), contact_id
        return str(stored[query.sort]), contact_id  # fixed-width UTC strings sort as times

    return sorted(chosen, key=key, reverse=query.descending)
