"""Hypothesis strategies for Magento JSON and profile contact options.

They produce *shaped* data: the keys and nesting Magento really uses (reference magento-api.md
§2, §4), with every optional key sometimes missing (Magento omits nulls) and values drawn from
what real stores send: unicode names, placeholder "-" names, padded regions ("London "),
huge strings, ids as strings, ``[]`` for empty objects, newline-joined streets, bad country
codes and odd timestamps.  Anything Magento could not send (an ``id`` of "abc") is left out:
that is a collect-stage error, not a mapping input.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import strategies as st

from profiles.freeagent_contact_export.countries import FREEAGENT_LOCALES
from profiles.freeagent_contact_export.models import ContactOptions

JSON = dict[str, Any]

# --- text ------------------------------------------------------------------------------

_REAL_NAMES = ["Jane", "O'Brien", "Zoë", "José María", "Łukasz", "Ørsted", "李", "محمد", "Nguyễn"]
_PLACEHOLDERS = ["", " ", "-", ".", "--", " . ", "\t", "\u200b"]

#: Anything printable or not, including controls, NUL and lone surrogates (JSON "\ud800").
_any_char = st.one_of(st.characters(), st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp"]))


@cache
def _huge() -> st.SearchStrategy[str]:
    """Strings far past 255 characters, built by repetition so they stay cheap to generate."""
    return st.builds(
        lambda unit, times: unit * times, st.text(min_size=1, max_size=4), st.integers(60, 400)
    )


def _padded(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Surround with the whitespace Magento keeps: spaces, tabs, newlines, no-break spaces."""
    pad = st.text(alphabet=" \t\n\u00a0\u3000", max_size=3)
    return st.builds(lambda a, s, b: a + s + b, pad, inner, pad)


@cache
def texts() -> st.SearchStrategy[str]:
    """Free text as Magento stores it in name, company and address fields."""
    real = st.sampled_from(_REAL_NAMES)
    return st.one_of(
        _padded(real),
        # A real value with control/format/surrogate characters pasted inside it.
        st.builds(lambda a, junk, b: a + junk + b, real, st.text(_any_char, max_size=3), real),
        st.sampled_from(_PLACEHOLDERS),
        st.text(max_size=30),
        st.text(alphabet=_any_char, max_size=12),
        _huge(),
    )


@cache
def names() -> st.SearchStrategy[str]:
    """Person and company names: mostly real (so payloads get built), sometimes junk."""
    real = _padded(st.sampled_from(_REAL_NAMES))
    return st.one_of(real, real, real, texts())


@cache
def emails() -> st.SearchStrategy[str]:
    """Valid addresses in odd case and padding, plus the junk that checkout lets through."""
    return st.one_of(
        st.emails().map(lambda e: e.upper() if len(e) % 2 else e),
        _padded(st.sampled_from(["Jane.Doe@Example.COM", "jane@bücher.de", "a@b.co"])),
        st.sampled_from(["", "-", "no-at-sign", "a@b", "two@@example.com", "x@y.com, z@w.com"]),
        texts(),
    )


@cache
def _id() -> st.SearchStrategy[int | str]:
    """Entity ids; PHP sometimes serialises them as numeric strings."""
    number = st.integers(1, 10**6)
    return st.one_of(number, number.map(str))


@cache
def _timestamp() -> st.SearchStrategy[str]:
    """Magento's UTC "YYYY-MM-DD HH:MM:SS", with MySQL's zero date as the junk case."""
    return st.one_of(
        st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
        st.just("0000-00-00 00:00:00"),
    )


@cache
def country_ids() -> st.SearchStrategy[str]:
    """ISO codes Magento stores, plus lower case, aliases, alpha-3, blanks and unknown codes."""
    return st.one_of(
        st.sampled_from(["GB", "US", "FR", "DE", "KR", "IE", "TW", "NL", "JP", "BR", "CH"]),
        st.sampled_from(["gb", " fr ", "UK", "GBR", "ZZ", "XK", "", "United Kingdom"]),
        st.text(alphabet=st.characters(categories=["Lu"]), min_size=2, max_size=2),
    )


@cache
def _vat_numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["GB 123 456 789", " fr12345678901 ", "DE-123456789"]), texts()
    )


# --- Magento customers -----------------------------------------------------------------


@cache
def _empty_object() -> st.SearchStrategy[Any]:
    """PHP writes an empty associative array as ``[]``."""
    return st.sampled_from([{}, []])


@cache
def regions() -> st.SearchStrategy[JSON]:
    """``RegionInterface``; free-text regions have region_id 0 and code == name."""
    typed = _padded(st.sampled_from(["London", "Greater Manchester", "Île-de-France"]))
    free_text = typed.map(lambda r: {"region": r, "region_code": r, "region_id": 0})
    listed = st.fixed_dictionaries(
        {},
        optional={
            "region": texts(),
            "region_code": st.sampled_from(["CA", "TX", "BY"]),
            "region_id": _id(),
        },
    )
    return st.one_of(free_text, listed)


@cache
def _street() -> st.SearchStrategy[Any]:
    lines = st.lists(texts(), max_size=6)
    return st.one_of(lines, lines.map("\n".join))


def _address_fields() -> dict[str, st.SearchStrategy[Any]]:
    """Keys customer and order addresses share, all optional."""
    return {
        "firstname": names(),
        "lastname": names(),
        "middlename": texts(),
        "prefix": texts(),
        "suffix": texts(),
        "company": names(),
        "street": _street(),
        "city": texts(),
        "postcode": st.one_of(st.sampled_from(["SW1A 1AA", " ec1a 1bb ", "75001"]), texts()),
        "country_id": country_ids(),
        "telephone": st.one_of(
            st.sampled_from(["+44 20 7946 0000", "0"]), texts(), st.integers(0, 10**10)
        ),
        "fax": texts(),
        "vat_id": _vat_numbers(),
        "customer_id": _id(),
    }


@cache
def customer_addresses() -> st.SearchStrategy[JSON]:
    """One ``AddressInterface`` without its id; default flags appear only when true (or junk)."""
    flag = st.sampled_from([True, False, 1, "1", ""])
    return st.fixed_dictionaries(
        {},
        optional={
            **_address_fields(),
            "region": st.one_of(regions(), texts()),
            "region_id": _id(),
            "default_billing": flag,
            "default_shipping": flag,
        },
    )


@cache
def _addresses() -> st.SearchStrategy[list[JSON]]:
    """Up to three addresses with distinct ids (ids as ints, the way Magento sends them)."""
    numbered = st.lists(customer_addresses(), max_size=3)
    return numbered.map(lambda items: [{**item, "id": 100 + n} for n, item in enumerate(items)])


@cache
def _extension_attributes() -> st.SearchStrategy[Any]:
    company = st.fixed_dictionaries(
        {"company_id": _id()}, optional={"company_name": names(), "job_title": texts()}
    )
    return st.one_of(
        _empty_object(),
        st.fixed_dictionaries(
            {}, optional={"is_subscribed": st.booleans(), "company_attributes": company}
        ),
    )


@cache
def _custom_attributes() -> st.SearchStrategy[Any]:
    entry = st.fixed_dictionaries({"attribute_code": st.text(max_size=10), "value": texts()})
    return st.one_of(st.lists(entry, max_size=3), _empty_object())


@cache
def _customer_fields() -> st.SearchStrategy[JSON]:
    """Customer keys other than addresses and the default-address ids."""
    return st.fixed_dictionaries(
        {"id": _id()},
        optional={
            "email": emails(),
            "firstname": names(),
            "lastname": names(),
            "middlename": texts(),
            "prefix": texts(),
            "suffix": texts(),
            "group_id": _id(),
            "website_id": _id(),
            "store_id": st.integers(0, 5),
            "taxvat": _vat_numbers(),
            "created_at": _timestamp(),
            "updated_at": _timestamp(),
            "custom_attributes": _custom_attributes(),
            "extension_attributes": _extension_attributes(),
        },
    )


@st.composite
def magento_customers(draw: st.DrawFn) -> JSON:
    """A ``/V1/customers/search`` item; default_billing may point at no address at all."""
    customer = draw(_customer_fields())
    addresses = draw(_addresses())
    keep_empty_list = draw(st.booleans())  # Magento sends "addresses": [] or omits it
    if addresses or keep_empty_list:
        customer["addresses"] = addresses
    # Documented as a string id, seen as an int too; 999999999 points at no address.
    known = [a["id"] for a in addresses] + [999_999_999]
    default_id = st.sampled_from(known + [str(n) for n in known])
    for key in ("default_billing", "default_shipping"):
        if draw(st.booleans()):
            customer[key] = draw(default_id)
    return customer


# --- Magento guest orders --------------------------------------------------------------


@cache
def order_addresses() -> st.SearchStrategy[JSON]:
    """``OrderAddressInterface``: region is a plain string here."""
    return st.fixed_dictionaries(
        {"address_type": st.just("billing")},
        optional={
            **_address_fields(),
            "entity_id": _id(),
            "parent_id": _id(),
            "email": emails(),
            "region": texts(),
            "region_code": st.sampled_from(["TX", "London ", ""]),
            "region_id": _id(),
        },
    )


@cache
def guest_orders() -> st.SearchStrategy[JSON]:
    """A ``/V1/orders`` guest item, trimmed by ``fields=`` to the buyer's details."""
    return st.fixed_dictionaries(
        {
            "entity_id": _id(),
            "increment_id": st.one_of(st.from_regex(r"\A[0-9]{9}\Z"), st.integers(1, 10**9)),
        },
        optional={
            "customer_email": emails(),
            "customer_firstname": names(),
            "customer_lastname": names(),
            "customer_taxvat": _vat_numbers(),
            "customer_is_guest": st.sampled_from([1, True]),
            "store_id": st.integers(0, 5),
            "created_at": _timestamp(),
            "updated_at": _timestamp(),
            "billing_address": order_addresses(),
            "extension_attributes": _empty_object(),
        },
    )


# --- profile options -------------------------------------------------------------------

_MAGENTO_LOCALES = ["en_GB", "en_US", "fr_FR", "fr_CA", "nb_NO", "pt_PT", "sr_Latn_RS", "xx_YY", ""]


@cache
def contact_options() -> st.SearchStrategy[ContactOptions]:
    """Valid profile settings (any combination), as the runner would load them from JSONB."""
    locale = st.sampled_from(FREEAGENT_LOCALES)
    store = st.integers(0, 5)
    settings = st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(["Active", "Hidden", "hidden"]),
            "default_payment_terms_in_days": st.none() | st.integers(0, 365),
            "uses_contact_invoice_sequence": st.none() | st.booleans(),
            "contact_name_on_invoices": st.none() | st.booleans(),
            "charge_sales_tax": st.none() | st.sampled_from(["Auto", "Always", "Never", "never"]),
            "locale": st.none() | locale,
            # JSONB object keys are strings; the model turns them back into store ids.
            "store_locales": st.dictionaries(store.map(str), locale, max_size=3),
            "derive_locale_from_store": st.dictionaries(
                store, st.sampled_from(_MAGENTO_LOCALES), max_size=3
            ),
        },
    )
    return settings.map(ContactOptions.model_validate)


# --- hostile Magento: what the REST API serves when imports and plugins bypass validation --

#: Name parts shared with FreeAgent "decoy" contacts, so a name-only link would show.
DECOY_FIRST, DECOY_LAST, DECOY_COMPANY = "John", "Smith", "ACME Ltd"

_HOSTILE_CHARS = st.one_of(
    st.sampled_from(["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udfff"]),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),  # 4-byte UTF-8
    st.characters(categories=["Cc", "Cs", "Cf"]),
)


@cache
def hostile_texts() -> st.SearchStrategy[str]:
    """Names with NUL, controls, lone surrogates, 4-byte characters, or 1,000 characters."""
    real = st.sampled_from([*_REAL_NAMES, DECOY_FIRST, DECOY_LAST, "😀 Emoji"])
    junk = st.text(_HOSTILE_CHARS, min_size=1, max_size=3)
    return st.one_of(
        st.builds(lambda a, j, b: a + j + b, real, junk, real),
        st.builds(lambda unit: (unit * 1000)[:1000], st.sampled_from(["x", "é", "😀", "a\x00"])),
        st.text(_HOSTILE_CHARS, max_size=5),
        real,
    )


@cache
def hostile_emails() -> st.SearchStrategy[Any]:
    """Every kind of e-mail fa-sync must never drop silently."""
    return st.one_of(
        st.sampled_from(
            [
                "jane@localhost",
                "a" * 65 + "@example.com",
                "jöhn@bücher.de",
                "user@" + "d" * 250 + ".com",
                "two@@example.com",
                "x@y.com, z@w.com",
                " Mixed.Case@Example.COM ",
                "",
                "   ",
            ]
        ),
        st.builds(
            lambda j: f"ja{j}ne@example.com", st.text(_HOSTILE_CHARS, min_size=1, max_size=2)
        ),
        st.integers(0, 10**6),  # a number where a string is declared
        st.none(),
        emails(),
    )


def _maybe_null(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, st.none())


@cache
def _hostile_address() -> st.SearchStrategy[JSON]:
    return st.fixed_dictionaries(
        {"default_billing": st.just(True)},
        optional={
            "firstname": _maybe_null(hostile_texts()),
            "lastname": _maybe_null(hostile_texts()),
            "company": _maybe_null(st.one_of(hostile_texts(), st.just(DECOY_COMPANY))),
            "street": _maybe_null(st.lists(_maybe_null(hostile_texts()), max_size=4)),
            "city": _maybe_null(hostile_texts()),
            "postcode": _maybe_null(st.one_of(hostile_texts(), st.integers(0, 99999))),
            "country_id": _maybe_null(st.one_of(country_ids(), st.sampled_from(["ZZ", "XX", "1"]))),
            "telephone": _maybe_null(st.one_of(hostile_texts(), st.integers(0, 10**12))),
            "region": _maybe_null(st.one_of(hostile_texts(), regions())),
            "region_id": st.one_of(st.integers(0, 500), st.integers(0, 500).map(str)),
            "vat_id": _maybe_null(hostile_texts()),
        },
    )


@cache
def hostile_customers() -> st.SearchStrategy[JSON]:
    """A customer as the simulator serves it raw (`MagentoState.add_raw_customer`); the id is
    the simulator's. Numbers as strings, unknown store/website ids, nulls, future dates."""
    number = st.one_of(st.integers(0, 99), st.integers(0, 99).map(str))
    return st.fixed_dictionaries(
        {},
        optional={
            "email": hostile_emails(),
            "firstname": _maybe_null(hostile_texts()),
            "lastname": _maybe_null(hostile_texts()),
            "middlename": _maybe_null(hostile_texts()),
            "group_id": number,
            "website_id": st.one_of(number, st.just(77), st.just(10**12)),
            "store_id": st.one_of(number, st.just(99)),
            "taxvat": _maybe_null(hostile_texts()),
            "updated_at": st.one_of(
                st.just("2099-01-01 00:00:00"), st.just("0000-00-00 00:00:00"), _timestamp()
            ),
            "addresses": st.lists(_hostile_address(), max_size=2).map(
                lambda items: [{**a, "id": 500 + n} for n, a in enumerate(items)]
            ),
            "extension_attributes": _maybe_null(_extension_attributes()),
        },
    )
