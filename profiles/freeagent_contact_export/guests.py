"""Which guest-checkout orders a profile collects, and what a refused order listing means.

Customers carry their website_id, so Magento filters them; an order has only its store view.
With the store restriction on, the websites are turned into their store views (from
/V1/store/storeViews) for Magento's filter, and every order read is checked against the same
map, so a filter the server ignores cannot let another website's buyers through. When the
store views cannot be read, guests are skipped with a warning: never exported unfiltered.

Reading orders needs the integration's Sales ACL (Magento_Sales::actions_view), which a
customer-only integration lacks. Its 401/403 skips guests with a warning; the customers
collected already are kept and the run goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daemon.clients.transport import error_message
from daemon.errors import ApiError
from profiles.freeagent_contact_export.clean import small_int
from profiles.freeagent_contact_export.config import StoreSettings

#: The ACL resource Magento checks for GET /V1/orders.
SALES_ACL = "Magento_Sales::actions_view"


@dataclass(frozen=True)
class GuestScope:
    """The guest orders one collect reads."""

    #: Store view id -> website id (empty when the store views could not be read).
    websites: Mapping[int, int]
    #: Websites whose orders are wanted; None: every website.
    wanted: frozenset[int] | None = None
    #: Store views to ask Magento for (OR'ed); None: every store view.
    store_ids: list[int] | None = None

    @property
    def empty(self) -> bool:
        """No store view is wanted: there is nothing to ask Magento for."""
        return self.store_ids == []

    def admits(self, order: Any) -> bool:
        """Whether an order read from Magento belongs to the chosen websites and stores."""
        if self.wanted is None and self.store_ids is None:
            return True
        store = small_int(order.get("store_id")) if isinstance(order, dict) else None
        if store is None:
            return False  # cannot be placed in a website: not provably wanted
        if self.store_ids is not None and store not in self.store_ids:
            return False
        return self.wanted is None or self.websites.get(store) in self.wanted


async def store_websites(magento: Any) -> dict[int, int] | ApiError:
    """Store view id -> website id, or why the store views could not be read (customers were
    read already, so a 401 here is the integration's store ACL)."""
    try:
        views = await magento.store_views()
    except ApiError as exc:
        return exc
    pairs = ((small_int(v.get("id")), small_int(v.get("website_id"))) for v in views
             if isinstance(v, dict))  # fmt: skip
    return {s: w for s, w in pairs if s is not None and w is not None}


def guest_scope(
    store: StoreSettings, websites: Mapping[int, int] | ApiError
) -> tuple[GuestScope | None, str | None]:
    """The orders to read under the store settings (None: guests are skipped this run), and
    the run warning to give, if any."""
    unread = websites if isinstance(websites, ApiError) else None
    known = {} if isinstance(websites, ApiError) else websites
    warning = f"Magento store views not read ({unread}): guests have no website"
    if not store.restrict or not (store.website_ids or store.store_ids):
        return GuestScope(known), warning if unread else None
    stores = set(store.store_ids) if store.store_ids else None
    wanted = frozenset(store.website_ids) if store.website_ids else None
    if wanted is not None:
        if unread is not None:
            return None, (
                f"guests skipped: Magento's store views could not be read ({unread}), so guest "
                f"orders cannot be limited to websites {sorted(wanted)}; none were exported "
                "unfiltered"
            )
        in_sites = {s for s, w in known.items() if w in wanted}
        stores = in_sites if stores is None else stores & in_sites
    return GuestScope(known, wanted, sorted(stores or ())), warning if unread else None


def sales_refused(exc: ApiError) -> str | None:
    """The run warning for an order listing Magento refused for lack of the Sales ACL; None
    when the error is something else (it then ends the run as before)."""
    if exc.status not in (401, 403):
        return None
    words = error_message(exc.body) or f"HTTP {exc.status}"
    return (
        f"guests skipped: the integration lacks Sales access (Magento answered {exc.status} on "
        f"/V1/orders: {words}). Grant it Sales > Operations > Orders > Actions > View "
        f"({SALES_ACL}) in System > Extensions > Integrations, or set include_guests: false"
    )
