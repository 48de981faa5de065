"""The simulated install's websites, store groups and store views (fixed, read-only).

Three websites: `base` (UK, GBP) with the `default` view, `eu` (EUR) with `fr` and `de`, and
`world` (EUR) whose views carry the locales FreeAgent spells its own way (cs_CZ -> cz, da_DK ->
dk, sv_SE -> se, nb_NO -> nk, sr_RS -> rs, en_US -> en-US, fr_BE -> fr-BE, nl_BE -> nl-BE) and
one FreeAgent has no language for (pt_PT).
Like real Magento, the lists include the admin website/group/store (id 0, code `admin`), which
clients must skip; `storeConfigs` does not, because it only covers frontend views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Website:
    """A row of `/V1/store/websites`."""

    id: int  #: website_id on customers
    code: str  #: e.g. base
    name: str  #: admin label
    default_group_id: int  #: its default store group
    currency: str  #: base currency is website-scoped in Magento


@dataclass(frozen=True)
class StoreGroup:
    """A row of `/V1/store/storeGroups`."""

    id: int  #: store_group_id
    website_id: int  #: owning website
    root_category_id: int  #: catalogue root
    default_store_id: int  #: default view of the group
    name: str  #: admin label
    code: str  #: e.g. main_website_store


@dataclass(frozen=True)
class StoreView:
    """A row of `/V1/store/storeViews`, plus what `/V1/store/storeConfigs` says about it."""

    id: int  #: store_id on customers and orders
    code: str  #: the `<store_code>` of /rest/<store_code>/V1/...
    name: str  #: what customers carry as `created_in`
    website_id: int  #: owning website
    store_group_id: int  #: owning group
    locale: str  #: e.g. en_GB
    timezone: str  #: display timezone (API timestamps stay UTC regardless)


WEBSITES: tuple[Website, ...] = (
    Website(0, "admin", "Admin", 0, "GBP"),
    Website(1, "base", "Main Website", 1, "GBP"),
    Website(2, "eu", "EU Website", 2, "EUR"),
    Website(3, "world", "World Website", 3, "EUR"),
)
STORE_GROUPS: tuple[StoreGroup, ...] = (
    StoreGroup(0, 0, 0, 0, "Default", "default"),
    StoreGroup(1, 1, 2, 1, "Main Website Store", "main_website_store"),
    StoreGroup(2, 2, 2, 2, "EU Store", "eu_store"),
    StoreGroup(3, 3, 2, 4, "World Store", "world_store"),
)
STORE_VIEWS: tuple[StoreView, ...] = (
    StoreView(0, "admin", "Admin", 0, 0, "en_US", "UTC"),
    StoreView(1, "default", "Default Store View", 1, 1, "en_GB", "Europe/London"),
    StoreView(2, "fr", "French Store View", 2, 2, "fr_FR", "Europe/Paris"),
    StoreView(3, "de", "German Store View", 2, 2, "de_DE", "Europe/Berlin"),
    StoreView(4, "cz", "Czech Store View", 3, 3, "cs_CZ", "Europe/Prague"),
    StoreView(5, "dk", "Danish Store View", 3, 3, "da_DK", "Europe/Copenhagen"),
    StoreView(6, "se", "Swedish Store View", 3, 3, "sv_SE", "Europe/Stockholm"),
    StoreView(7, "no", "Norwegian Store View", 3, 3, "nb_NO", "Europe/Oslo"),
    StoreView(8, "rs", "Serbian Store View", 3, 3, "sr_RS", "Europe/Belgrade"),
    StoreView(9, "us", "US Store View", 3, 3, "en_US", "America/New_York"),
    StoreView(10, "be_fr", "Belgian French Store View", 3, 3, "fr_BE", "Europe/Brussels"),
    StoreView(11, "be_nl", "Belgian Dutch Store View", 3, 3, "nl_BE", "Europe/Brussels"),
    StoreView(12, "pt", "Portuguese Store View", 3, 3, "pt_PT", "Europe/Lisbon"),
)
#: `all` is accepted in the URL (it switches to the admin store) but is not a view.
ROUTABLE_CODES = frozenset({"all"} | {view.code for view in STORE_VIEWS})


def store_view(store_id: int) -> StoreView:
    """The view with this id; unknown ids fall back to the default view like Magento does."""
    return next((view for view in STORE_VIEWS if view.id == store_id), STORE_VIEWS[1])


def default_store_of(website_id: int) -> int:
    """The store view a new customer of this website lands on (its default group's default)."""
    site = next((w for w in WEBSITES if w.id == website_id), WEBSITES[1])
    return next(g.default_store_id for g in STORE_GROUPS if g.id == site.default_group_id)


def store_name(store_id: int) -> str:
    """`sales_order.store_name`: website, group and view names on three lines."""
    view = store_view(store_id)
    website = next(site.name for site in WEBSITES if site.id == view.website_id)
    group = next(g.name for g in STORE_GROUPS if g.id == view.store_group_id)
    return f"{website}\n{group}\n{view.name}"


def currency_of(store_id: int) -> str:
    """Base currency of the view's website."""
    website_id = store_view(store_id).website_id
    return next(site.currency for site in WEBSITES if site.id == website_id)


def website_rows() -> list[dict[str, Any]]:
    """`/V1/store/websites` body."""
    return [
        {"id": w.id, "code": w.code, "name": w.name, "default_group_id": w.default_group_id}
        for w in WEBSITES
    ]


def store_group_rows() -> list[dict[str, Any]]:
    """`/V1/store/storeGroups` body."""
    return [
        {
            "id": g.id,
            "website_id": g.website_id,
            "root_category_id": g.root_category_id,
            "default_store_id": g.default_store_id,
            "name": g.name,
            "code": g.code,
        }
        for g in STORE_GROUPS
    ]


def store_view_rows() -> list[dict[str, Any]]:
    """`/V1/store/storeViews` body."""
    return [
        {
            "id": v.id,
            "code": v.code,
            "name": v.name,
            "website_id": v.website_id,
            "store_group_id": v.store_group_id,
            "is_active": 1,
        }
        for v in STORE_VIEWS
    ]


def store_config_rows(origin: str, codes: frozenset[str] | None) -> list[dict[str, Any]]:
    """`/V1/store/storeConfigs` body for frontend views, optionally only the `codes` asked for.

    `origin` is the scheme and host the request came in on, so the URLs point back at us.
    """
    return [
        _store_config(view, origin)
        for view in STORE_VIEWS
        if view.id != 0 and (codes is None or view.code in codes)
    ]


def _store_config(view: StoreView, origin: str) -> dict[str, Any]:
    """One StoreConfigInterface: locale, currencies, timezone and the base URLs."""
    base = f"{origin}/" if view.code == "default" else f"{origin}/{view.code}/"
    secure = base.replace("http://", "https://", 1)
    currency = currency_of(view.id)
    return {
        "id": view.id,
        "code": view.code,
        "website_id": view.website_id,
        "locale": view.locale,
        "base_currency_code": currency,
        "default_display_currency_code": currency,
        "timezone": view.timezone,
        "weight_unit": "kgs",
        "base_url": base,
        "base_link_url": base,
        "base_static_url": f"{base}static/version1700000000/",
        "base_media_url": f"{base}media/",
        "secure_base_url": secure,
        "secure_base_link_url": secure,
        "secure_base_static_url": f"{secure}static/version1700000000/",
        "secure_base_media_url": f"{secure}media/",
    }
