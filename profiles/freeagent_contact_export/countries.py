"""Magento codes → FreeAgent vocabulary: country names and invoice locales.

FreeAgent's ``country`` is free text whose accepted spellings are undocumented; every doc
example and live fixture uses common English names ("United Kingdom"), and FreeAgent's only
published list spells "Czech Republic" and "Netherlands" (reference §4 and addendum). So we
send the common English name: pycountry's ``common_name`` where it has one ("South Korea",
"Vietnam", "Iran"), a pinned name where ISO's is a formal one ("Turkey", not "Türkiye";
"Russia", not "Russian Federation"), else the ISO 3166 short name; never the ISO code Magento
stores. The pinned names also keep a pycountry upgrade from silently changing what we send (a
changed name would change every payload hash and re-write every contact).

FreeAgent's ``locale`` uses its own, partly non-ISO codes (``cz``, ``dk``, ``nk``, ``se``,
``rs``), so Magento locales (``cs_CZ``, ``nb_NO`` ...) are mapped explicitly, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

import pycountry

#: FreeAgent's invoice/estimate languages, exactly as the contact reference (§4) lists them.
FreeAgentLocale = Literal[
    "bg", "ca", "cy", "cz", "de", "dk", "en", "en-US", "es", "et", "fi", "fr", "fr-BE",
    "fr-CA", "is", "it", "lv-LV", "nl", "nl-BE", "nk", "pl-PL", "pt-BR", "ro", "rs", "ru",
    "se", "sk", "tr",
]  # fmt: skip
FREEAGENT_LOCALES: tuple[FreeAgentLocale, ...] = get_args(FreeAgentLocale)

# Pinned names. CZ as FreeAgent's only published country list (the EC VAT MOSS
# place_of_supply values) spells it, "Czech Republic", not pycountry's "Czechia" (with
# charge_sales_tax Auto a spelling FreeAgent does not know changes the VAT; the other EU names
# already agree). The rest are the common English names where ISO's short name is a formal or
# a local one ("Türkiye", "Russian Federation", "Brunei Darussalam", "Cabo Verde"...); the
# common_name pycountry gives (KR, VN, IR, TW ...) is pinned too, so an upgrade cannot move it.
# XK (Kosovo) is in Magento's country list but not in ISO 3166: with no known FreeAgent
# spelling it is left unmapped, so no country is sent and the record notes why.
_PINNED_NAMES: Mapping[str, str] = {
    "GB": "United Kingdom",
    "US": "United States",
    "CZ": "Czech Republic",
    "TR": "Turkey",
    "RU": "Russia",
    "BN": "Brunei",
    "CI": "Ivory Coast",
    "CV": "Cape Verde",
    "PS": "Palestine",
    "VA": "Vatican City",
    "FM": "Micronesia",
    "BO": "Bolivia",
    "IR": "Iran",
    "KP": "North Korea",
    "KR": "South Korea",
    "LA": "Laos",
    "MD": "Moldova",
    "SY": "Syria",
    "TW": "Taiwan",
    "TZ": "Tanzania",
    "VE": "Venezuela",
    "VN": "Vietnam",
}

# Codes that are not ISO alpha-2 but turn up in hand-edited data: "UK" for GB, and the EU's
# "EL" for Greece (used in VAT numbers, so copied into address country fields by some imports).
_CODE_ALIASES: Mapping[str, str] = {"UK": "GB", "EL": "GR"}


def _build_country_names() -> Mapping[str, str]:
    """ISO alpha-2 → common English name: the pinned one, else pycountry's common_name, else
    its short name."""
    names = {
        country.alpha_2: getattr(country, "common_name", None) or country.name
        for country in pycountry.countries
    }
    names.update(_PINNED_NAMES)
    return MappingProxyType(names)


def _build_alpha3() -> Mapping[str, str]:
    """ISO alpha-3 → alpha-2, for the odd integration that stores three-letter codes."""
    return MappingProxyType({c.alpha_3: c.alpha_2 for c in pycountry.countries})


#: ISO 3166 alpha-2 code → the English country name we send to FreeAgent.
COUNTRY_NAMES: Mapping[str, str] = _build_country_names()
#: Every country value a payload may carry (for checks in tests and simulators).
FREEAGENT_COUNTRY_NAMES: frozenset[str] = frozenset(COUNTRY_NAMES.values())
_ALPHA3_TO_ALPHA2: Mapping[str, str] = _build_alpha3()


def country_name(code: object) -> str | None:
    """English country name for a Magento ``country_id``, or None when the code is unknown.

    None (not the code) on a miss: FreeAgent stores whatever text it is given, and a bare
    "ZZ" on an invoice address is worse than no country at all.
    """
    if not isinstance(code, str):
        return None
    key = code.strip().upper()
    key = _CODE_ALIASES.get(key, _ALPHA3_TO_ALPHA2.get(key, key))
    return COUNTRY_NAMES.get(key)


# Magento locale (language_REGION, as in storeConfigs.locale) → FreeAgent locale.  Exact
# entries win; otherwise the language alone decides via _LANGUAGE_LOCALES.
_MAGENTO_LOCALES: Mapping[str, FreeAgentLocale] = {
    "en_GB": "en",
    "en_US": "en-US",
    "fr_BE": "fr-BE",
    "fr_CA": "fr-CA",
    "nl_BE": "nl-BE",
    "pt_BR": "pt-BR",
    "sr_RS": "rs",
    "sr_Cyrl_RS": "rs",
    "sr_Latn_RS": "rs",
}

# Language → FreeAgent locale for every other region (de_AT → de, es_MX → es ...).
# Portuguese is deliberately absent: FreeAgent only has Brazilian Portuguese, and pt_PT
# customers should get the profile's default rather than a guessed dialect.
_LANGUAGE_LOCALES: Mapping[str, FreeAgentLocale] = {
    "bg": "bg", "ca": "ca", "cy": "cy", "cs": "cz", "de": "de", "da": "dk", "en": "en",
    "es": "es", "et": "et", "fi": "fi", "fr": "fr", "is": "is", "it": "it", "lv": "lv-LV",
    "nl": "nl", "nb": "nk", "nn": "nk", "no": "nk", "pl": "pl-PL", "ro": "ro", "sr": "rs",
    "ru": "ru", "sv": "se", "sk": "sk", "tr": "tr",
}  # fmt: skip

#: Case-folded FreeAgent locale → canonical spelling ("en-us" → "en-US").
_CANONICAL_LOCALES: Mapping[str, FreeAgentLocale] = {
    locale.casefold(): locale for locale in FREEAGENT_LOCALES
}


def _magento_key(parts: list[str]) -> str:
    """Canonical Magento spelling of a split locale: language lower, script title, region upper."""
    language, *rest = parts
    fixed = [part.upper() if len(part) <= 3 else part.title() for part in rest]
    return "_".join([language.lower(), *fixed])


def freeagent_locale(value: object) -> FreeAgentLocale | None:
    """FreeAgent locale for a FreeAgent or Magento locale string, or None if it has none.

    Accepts FreeAgent codes in any case, Magento codes as ``ll_RR``/``ll-RR``/``ll_Scrp_RR``,
    and bare ISO 639-1 languages ("cs" → "cz"); anything else is None so callers fall back
    to the profile default.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    canonical = _CANONICAL_LOCALES.get(text.casefold())
    if canonical is not None:
        return canonical
    parts = text.replace("-", "_").split("_")
    exact = _MAGENTO_LOCALES.get(_magento_key(parts))
    if exact is not None:
        return exact
    return _LANGUAGE_LOCALES.get(parts[0].lower())
