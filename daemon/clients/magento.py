"""Magento 2 REST: customers, guest orders and store lists, read with keyset paging.

Page-number paging over Magento is fragile: 2.3 repeats the last page past the end, and rows
inserted or deleted mid-scan shift pages. So every list here is read by keyset: filter
`entity_id gt <last id seen>`, sort `entity_id ASC`, always page 1 of a fixed size. The scan
ends when a page lists everything Magento still counts (`total_count`, which covers only the
ids past the last one seen), on an empty page, or on a page with no new id. A short page alone
proves nothing: a store whose plugins hide some records serves short pages mid-listing.

Authentication is the integration access token, either as Bearer (needs Magento's
enable_integration_as_bearer on 2.4.4+) or as an OAuth 1.0a HMAC-SHA256 signature. A
signature covers the exact URL and a single-use nonce, so the query string is encoded here
once, sent unchanged (`yarl.URL(..., encoded=True)`), and re-signed on every attempt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from authlib.oauth1.rfc5849.client_auth import ClientAuth  # type: ignore[import-untyped]
from authlib.oauth1.rfc5849.errors import InsecureTransportError  # type: ignore[import-untyped]
from authlib.oauth1.rfc5849.signature import (  # type: ignore[import-untyped]
    generate_signature_base_string,
)
from authlib.oauth1.rfc5849.util import escape  # type: ignore[import-untyped]
from yarl import URL

from daemon.clients.listing import ListingReport
from daemon.clients.readcache import ReadCache
from daemon.clients.transport import Response, Transport
from daemon.db.records import MagentoConnectionRow
from daemon.errors import AuthError, ConfigError, RejectedRecord, TransientApiError
from daemon.logs import get_logger
from daemon.numbers import whole_number

SERVICE = "magento"
SIGNATURE_HMAC_SHA256 = "HMAC-SHA256"

log = get_logger(__name__)


def sign_hmac_sha256(client: Any, request: Any) -> str:
    """HMAC-SHA256 over the RFC 5849 base string; key = consumer_secret&token_secret."""
    base_string = generate_signature_base_string(request)
    key = f"{escape(client.client_secret or '')}&{escape(client.token_secret or '')}"
    digest = hmac.new(key.encode(), str(base_string).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class MagentoOAuth1(ClientAuth):  # type: ignore[misc]  # authlib ships no type hints
    """authlib's OAuth 1 signer plus HMAC-SHA256, which Magento wants (SHA1 is deprecated).

    The method is registered on this subclass's own table, not on authlib's class.
    """

    SIGNATURE_METHODS: ClassVar[dict[str, Callable[[Any, Any], str]]] = {
        **ClientAuth.SIGNATURE_METHODS,
        SIGNATURE_HMAC_SHA256: sign_hmac_sha256,
    }


@dataclass(frozen=True)
class Filter:
    """One searchCriteria condition; each goes into its own filter group, so they AND."""

    field: str  #: column name (entity_id, not id)
    value: str
    condition_type: str = "eq"


@dataclass(frozen=True)
class AnyOf:
    """Conditions OR'ed inside one filter group (Magento ORs within a group, ANDs groups)."""

    filters: tuple[Filter, ...]


def search_criteria(
    filters: Sequence[Filter | AnyOf], *, sort_field: str, page_size: int
) -> list[tuple[str, str]]:
    """Query pairs with explicit integer indexes (`[]` is an SQL error on Magento), spelt as
    Adobe's search guide spells them (filter_groups/condition_type, sortOrders/pageSize/
    currentPage); always page 1, sorted ascending (keyset paging)."""
    pairs: list[tuple[str, str]] = []
    for group, term in enumerate(filters):
        members = term.filters if isinstance(term, AnyOf) else (term,)
        for index, condition in enumerate(members):
            prefix = f"searchCriteria[filter_groups][{group}][filters][{index}]"
            pairs += [
                (f"{prefix}[field]", condition.field),
                (f"{prefix}[value]", condition.value),
                (f"{prefix}[condition_type]", condition.condition_type),
            ]
    pairs += [
        ("searchCriteria[sortOrders][0][field]", sort_field),
        ("searchCriteria[sortOrders][0][direction]", "ASC"),
        ("searchCriteria[pageSize]", str(page_size)),
        ("searchCriteria[currentPage]", "1"),
    ]
    return pairs


def encode_query(pairs: Sequence[tuple[str, str]]) -> str:
    """RFC 3986 encoding of keys and values (brackets, spaces, commas): the exact bytes
    that are signed and sent."""
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in pairs)


def magento_time(moment: datetime) -> str:
    """Magento's "YYYY-MM-DD HH:MM:SS" in UTC (its PHP and MySQL session run in UTC)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no timezone; pass an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _one_of(field: str, ids: Sequence[int] | None) -> list[AnyOf]:
    """`field` equal to one of the ids, or no filter when none are given (None or empty: no
    restriction). OR'ed `eq` filters in one group rather than `in`: on some 2.1/2.2 builds
    `in` matched only its first value (reference §8.4), silently dropping the other websites."""
    if not ids:
        return []
    return [AnyOf(tuple(Filter(field, str(i), "eq") for i in dict.fromkeys(ids)))]


class MagentoClient:
    """One Magento install, read through its REST API."""

    def __init__(
        self,
        *,
        transport: Transport,
        connection: MagentoConnectionRow,
        reads: ReadCache | None = None,
    ) -> None:
        self._transport = transport
        self._connection = connection
        #: Keeps store views and store configs across runs (None: read every time).
        self._reads = reads
        root = connection.base_url.rstrip("/")
        store = f"/{connection.store_code}" if connection.store_code else ""
        self.api_base = f"{root}/rest{store}/V1/"  #: no store code: Magento's default view
        self._oauth = _signer(connection) if connection.uses_oauth1 else None

    # -- customers -----------------------------------------------------------------------

    async def iter_customers(
        self,
        *,
        updated_since: datetime | None = None,
        website_ids: list[int] | None = None,
        store_ids: list[int] | None = None,
        page_size: int = 100,
        listing: ListingReport | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Customers in id order, optionally updated at/after a UTC moment and in some
        websites/store views; every matching customer exactly once. `listing` learns
        whether the scan provably read every match (deletions are judged only then)."""
        filters: list[Filter | AnyOf] = [
            *_one_of("website_id", website_ids),
            *_one_of("store_id", store_ids),
        ]
        if updated_since is not None:
            filters.append(Filter("updated_at", magento_time(updated_since), "gteq"))
        async for item in self._keyset(
            "customers/search", filters, "id", page_size, listing=listing
        ):
            yield item

    async def iter_customer_ids(self, page_size: int = 300) -> AsyncIterator[int]:
        """Every customer id, trimmed to ids (`fields=`): the deletion sweep. 300 is the
        largest page Magento accepts when its web API input limits are switched on."""
        async for item in self._keyset(
            "customers/search", [], "id", page_size, fields="items[id],total_count"
        ):
            customer_id = _item_id(item, "id")
            if customer_id is not None:
                yield customer_id

    async def get_customer(self, customer_id: int) -> dict[str, Any] | None:
        """The full customer (list results may omit attributes); None when deleted (404)."""
        try:
            response = await self._get(f"customers/{int(customer_id)}")
        except RejectedRecord as exc:
            if exc.status == 404:
                return None
            raise
        return dict(_json(response, dict))

    # -- guest orders --------------------------------------------------------------------

    async def iter_guest_orders(
        self,
        *,
        created_since: datetime | None = None,
        store_ids: list[int] | None = None,
        page_size: int = 100,
        listing: ListingReport | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Guest-checkout orders (customer_is_guest = 1) in entity_id order, optionally in
        some store views; `listing` learns whether the scan read every match."""
        filters: list[Filter | AnyOf] = [
            Filter("customer_is_guest", "1", "eq"),
            *_one_of("store_id", store_ids),
        ]
        if created_since is not None:
            filters.append(Filter("created_at", magento_time(created_since), "gteq"))
        async for item in self._keyset("orders", filters, "entity_id", page_size, listing=listing):
            yield item

    # -- stores --------------------------------------------------------------------------

    async def store_views(self) -> list[dict[str, Any]]:
        """Store views: id, code, name, website_id (the admin view, id 0, included)."""
        return await self._store_list("store/storeViews")

    async def websites(self) -> list[dict[str, Any]]:
        """Websites: id, code, name, default_group_id."""
        return list(_json(await self._get("store/websites"), list))

    async def store_configs(self) -> list[dict[str, Any]]:
        """Per store view: locale, currencies, timezone, base URLs."""
        return await self._store_list("store/storeConfigs")

    async def _store_list(self, path: str) -> list[dict[str, Any]]:
        """A store list, from the read cache when the client has one (they change rarely;
        the key is the connection and the URL, so another connection reads afresh)."""

        async def read() -> list[dict[str, Any]]:
            return list(_json(await self._get(path), list))

        if self._reads is None:
            return await read()
        return await self._reads.get(("magento", self._connection.id, self.api_base, path), read)

    # -- plumbing ------------------------------------------------------------------------

    async def _keyset(
        self,
        path: str,
        filters: Sequence[Filter | AnyOf],
        id_key: str,
        page_size: int,
        *,
        fields: str | None = None,
        listing: ListingReport | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Keyset paging on entity_id, read on while Magento counts more past the last id
        (see ListingReport.read_on); also safe against servers that ignore the filter and
        repeat a page (2.3 overflow): a page without a new id ends the scan."""
        page_size = max(1, page_size)
        listing = listing or ListingReport()
        last = 0
        while True:
            criteria = [*filters, Filter("entity_id", str(last), "gt")]
            query = search_criteria(criteria, sort_field="entity_id", page_size=page_size)
            if fields:
                query.append(("fields", fields))
            body = _json(await self._get(path, query), dict)
            items = _items(body.get("items"))
            ids = [_item_id(item, id_key) for item in items]
            for item, item_id in zip(items, ids, strict=True):
                if item_id is None:
                    # Not ours to judge: the caller notes the record; the scan goes on.
                    log.warning("magento_item_without_id", path=path, after_id=last)
                    listing.gap(f"an item without an id after id {last}")
                    yield item
                elif item_id > last:
                    yield item
            if not listing.read_on(last, ids, body.get("total_count"), page_size):
                if listing.short:
                    log.warning("magento_listing_short", path=path, reasons=listing.short[:3])
                return
            last = max(i for i in ids if i is not None)

    async def _get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Response:
        """GET with the query encoded once: what is signed is exactly what is sent."""
        url = self.api_base + path + (f"?{encode_query(query)}" if query else "")

        async def authorize() -> dict[str, str]:
            return self._authorization("GET", url)

        try:
            return await self._transport.request(
                "GET",
                URL(url, encoded=True),
                headers={"Accept": "application/json"},
                service=SERVICE,
                authorize=authorize,
            )
        except AuthError as exc:
            if self._oauth is not None:
                raise
            # Reads like a missing ACL grant, but on 2.4.4+ it is usually the bearer switch.
            raise AuthError(
                f"{exc} (Magento connection {self._connection.name}: Magento 2.4.4+ refuses "
                "integration tokens as Bearer unless Stores > Configuration > Services > OAuth > "
                "'Allow OAuth Access Tokens to be used as standalone Bearer tokens' is on; or give "
                "fa-sync the consumer key/secret and token secret to sign with OAuth 1.0a)",
                status=exc.status,
                body=exc.body,
                service=exc.service,
            ) from exc

    def _authorization(self, method: str, url: str) -> dict[str, str]:
        """Bearer token, or a fresh OAuth 1 signature (new nonce and timestamp) per attempt."""
        if self._oauth is None:
            return {"Authorization": f"Bearer {self._connection.access_token}"}
        try:
            _, headers, _ = self._oauth.sign(method, url, {}, b"")
        except InsecureTransportError as exc:
            raise ConfigError(
                f"Magento connection {self._connection.name}: OAuth 1.0a signing needs an "
                f"https base_url, got {self._connection.base_url}"
            ) from exc
        return {"Authorization": str(headers["Authorization"])}


def _signer(connection: MagentoConnectionRow) -> MagentoOAuth1:
    return MagentoOAuth1(
        connection.consumer_key,
        client_secret=connection.consumer_secret,
        token=connection.access_token,
        token_secret=connection.access_token_secret,
        signature_method=SIGNATURE_HMAC_SHA256,
    )


def _items(value: Any) -> list[Any]:
    """A page's items: PHP sends a non-sequential array as an object (its values are the
    items); anything else is no items."""
    if isinstance(value, dict):
        return list(value.values())
    return value if isinstance(value, list) else []


def _item_id(item: Any, key: str) -> int | None:
    """An item's positive integer id (a number, or digits as a string); None otherwise."""
    number = whole_number(item.get(key) if isinstance(item, dict) else None)
    return number if number is not None and 0 < number < 2**63 else None


def _json(response: Response, kind: type[dict[Any, Any]] | type[list[Any]]) -> Any:
    """The body, if it is the JSON shape expected; a proxy's HTML page is not."""
    if isinstance(response.body, kind):
        return response.body
    kind_name = response.headers.get("Content-Type", "no content type")
    raise TransientApiError(
        f"Magento {response.status} answer is not a JSON {kind.__name__} ({kind_name})",
        status=response.status,
        service=SERVICE,
    )


__all__ = [
    "AnyOf",
    "Filter",
    "ListingReport",
    "MagentoClient",
    "MagentoOAuth1",
    "encode_query",
    "search_criteria",
]
