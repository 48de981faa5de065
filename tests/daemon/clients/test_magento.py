"""MagentoClient: keyset paging, filters, guest orders, stores, Bearer and OAuth 1.0a."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from daemon.clients.magento import AnyOf, Filter, ListingReport, encode_query, search_criteria
from daemon.clients.transport import Response
from daemon.errors import AuthError
from simulators.magento import MagentoState

from .conftest import MakeMagento


def _searches(state: MagentoState, path_end: str) -> list[dict[str, str]]:
    return [r.query for r in state.requests if r.path.endswith(path_end)]


def test_search_criteria_uses_explicit_indexes_and_separate_groups() -> None:
    """Each filter gets its own group (AND), indexes are integers, keys as Adobe documents."""
    pairs = dict(
        search_criteria(
            [Filter("website_id", "1,2", "in"), Filter("entity_id", "7", "gt")],
            sort_field="entity_id",
            page_size=50,
        )
    )
    assert pairs["searchCriteria[filter_groups][0][filters][0][field]"] == "website_id"
    assert pairs["searchCriteria[filter_groups][1][filters][0][condition_type]"] == "gt"
    assert pairs["searchCriteria[sortOrders][0][direction]"] == "ASC"
    assert pairs["searchCriteria[pageSize]"] == "50"
    assert pairs["searchCriteria[currentPage]"] == "1"


def test_query_encoding_escapes_brackets_and_spaces_once() -> None:
    """The query is encoded once, RFC 3986 style: what is signed is what is sent."""
    assert encode_query([("a[b]", "2024-01-02 03:04:05")]) == "a%5Bb%5D=2024-01-02%2003%3A04%3A05"


async def test_keyset_paging_returns_every_customer_once(make_magento: MakeMagento) -> None:
    """57 customers in pages of 10 come back once each, in id order, always page 1."""
    rig = await make_magento(MagentoState.seeded(57))
    ids = [c["id"] async for c in rig.client.iter_customers(page_size=10)]
    assert ids == sorted(rig.state.customers)
    searches = _searches(rig.state, "/customers/search")
    assert len(searches) == 6
    assert all(q["searchCriteria[currentPage]"] == "1" for q in searches)


async def test_keyset_paging_survives_the_23_page_overflow(make_magento: MakeMagento) -> None:
    """On a 2.3-style install (last page repeated) every customer still comes once."""
    state = MagentoState.seeded(40)
    state.overflow_mode = "repeat_last"
    rig = await make_magento(state)
    ids = [c["id"] async for c in rig.client.iter_customers(page_size=10)]
    assert ids == sorted(state.customers)


async def test_website_filter_restricts_customers(make_magento: MakeMagento) -> None:
    """website_ids keeps only customers of those websites."""
    rig = await make_magento(MagentoState.seeded(40))
    got = [c async for c in rig.client.iter_customers(website_ids=[2], page_size=7)]
    expected = sorted(i for i, c in rig.state.customers.items() if c["website_id"] == 2)
    assert [c["id"] for c in got] == expected and expected


async def test_updated_since_filter_is_inclusive_utc(make_magento: MakeMagento) -> None:
    """updated_since asks for updated_at >= the moment, in Magento's UTC text form."""
    rig = await make_magento(MagentoState.seeded(40))
    stamps = sorted(c["updated_at"] for c in rig.state.customers.values())
    pivot = stamps[len(stamps) // 2]
    since = datetime.strptime(pivot, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    got = [c["id"] async for c in rig.client.iter_customers(updated_since=since, page_size=7)]
    expected = sorted(i for i, c in rig.state.customers.items() if c["updated_at"] >= pivot)
    assert got == expected


async def test_guest_orders_are_read_once_each(make_magento: MakeMagento) -> None:
    """Guest-checkout orders come back once each; registered customers' orders do not."""
    rig = await make_magento(MagentoState.seeded(30, guest_orders=13))
    got = [o["entity_id"] async for o in rig.client.iter_guest_orders(page_size=4)]
    expected = sorted(i for i, o in rig.state.orders.items() if o["customer_is_guest"] == 1)
    assert got == expected and len(expected) == 13


async def test_customer_id_sweep_asks_only_for_ids(make_magento: MakeMagento) -> None:
    """The deletion sweep reads every id with a trimmed response."""
    rig = await make_magento(MagentoState.seeded(25))
    ids = [i async for i in rig.client.iter_customer_ids(page_size=10)]
    assert ids == sorted(rig.state.customers)
    assert all(
        q["fields"] == "items[id],total_count" for q in _searches(rig.state, "/customers/search")
    )


async def test_deleted_customer_is_none(make_magento: MakeMagento) -> None:
    """get_customer answers None for an id Magento no longer has (404)."""
    rig = await make_magento()
    first = min(rig.state.customers)
    assert (await rig.client.get_customer(first) or {})["id"] == first
    rig.state.delete_customer(first)
    assert await rig.client.get_customer(first) is None


async def test_store_code_goes_into_the_path(make_magento: MakeMagento) -> None:
    """A connection with a store code calls /rest/<code>/V1/."""
    rig = await make_magento(store_code="fr")
    views = await rig.client.store_views()
    assert {v["code"] for v in views} >= {"default", "fr"}
    assert rig.state.requests[-1].path == "/rest/fr/V1/store/storeViews"


async def test_store_lists_are_returned(make_magento: MakeMagento) -> None:
    """Websites and store configs are read as lists."""
    rig = await make_magento()
    assert any(w["code"] == "base" for w in await rig.client.websites())
    assert any("locale" in c for c in await rig.client.store_configs())


async def test_oauth1_signed_requests_are_accepted(make_magento: MakeMagento) -> None:
    """HMAC-SHA256 signatures work where Bearer integration tokens are switched off."""
    state = MagentoState.seeded(25)
    state.bearer_enabled = False
    rig = await make_magento(state, oauth=True)
    since = datetime(2023, 1, 1, tzinfo=UTC)  # a value with a space and colons, signed
    ids = [c["id"] async for c in rig.client.iter_customers(updated_since=since, page_size=10)]
    assert ids == sorted(state.customers)


async def test_oauth1_retry_is_signed_afresh(
    make_magento: MakeMagento, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry after 429 is signed again with a new nonce, and accepted."""
    state = MagentoState.seeded(5)
    state.bearer_enabled = False
    state.inject_429(1, retry_after=0)
    rig = await make_magento(state, oauth=True)
    signer = rig.client._oauth
    assert signer is not None
    headers: list[str] = []
    original = signer.sign

    def spy(*args: object) -> tuple[object, dict[str, str], object]:
        uri, signed, body = original(*args)
        headers.append(signed["Authorization"])
        return uri, signed, body

    monkeypatch.setattr(signer, "sign", spy)
    assert await rig.client.websites()
    assert [r.status for r in state.requests] == [429, 200]
    nonces = {h.split('oauth_nonce="')[1].split('"')[0] for h in headers}
    assert len(headers) == 2 and len(nonces) == 2


async def test_refused_bearer_token_is_an_auth_error_without_the_token(
    make_magento: MakeMagento,
) -> None:
    """Bearer disabled: AuthError with Magento's substituted words, never the token."""
    state = MagentoState.seeded(5)
    state.bearer_enabled = False
    rig = await make_magento(state)
    with pytest.raises(AuthError) as info:
        await rig.client.websites()
    assert "isn't authorized to access Magento_Backend::stores" in str(info.value)
    assert "demo-magento-token" not in str(info.value)


class _Pages:
    """Stands in for MagentoClient._get: serves the canned `items` lists in turn."""

    def __init__(self, *pages: Any) -> None:
        self.pages = list(pages)
        self.asked_after: list[str] = []

    async def __call__(self, path: str, query: Any = ()) -> Response:
        after = dict(query).get("searchCriteria[filter_groups][0][filters][0][value]", "")
        self.asked_after.append(after)
        items = self.pages.pop(0) if self.pages else []
        return Response(200, CIMultiDictProxy(CIMultiDict()), {"items": items})


#: A full page (size 4) with items Magento should never send, then the rest.
_BAD_PAGE = [{"id": 1}, {"id": "x7"}, {"email": "no-id@example.com"}, "not an object"]


async def test_keyset_paging_passes_over_items_without_an_integer_id(
    make_magento: MakeMagento, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item whose id is missing or not an integer is handed on for the caller to note,
    never ends the scan: paging goes on after the last good id."""
    rig = await make_magento(MagentoState.seeded(1))
    pages = _Pages(_BAD_PAGE, [{"id": "2"}, {"id": 3.0}, {"id": 5}])
    monkeypatch.setattr(rig.client, "_get", pages)
    items = [c async for c in rig.client.iter_customers(page_size=4)]
    assert [c["id"] for c in items if isinstance(c, dict) and "id" in c] == [1, "x7", "2", 3.0, 5]
    assert "not an object" in items and {"email": "no-id@example.com"} in items
    assert pages.asked_after == ["0", "1"]


async def test_id_sweep_skips_items_without_an_integer_id(
    make_magento: MakeMagento, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletion sweep yields only usable ids and reads on past the bad ones."""
    rig = await make_magento(MagentoState.seeded(1))
    monkeypatch.setattr(rig.client, "_get", _Pages(_BAD_PAGE, [{"id": "2"}, {"id": None}]))
    assert [i async for i in rig.client.iter_customer_ids(page_size=4)] == [1, 2]


async def test_items_sent_as_an_object_are_read_as_a_list(
    make_magento: MakeMagento, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PHP serialises a non-sequential array as an object: its values are the items."""
    rig = await make_magento(MagentoState.seeded(1))
    monkeypatch.setattr(rig.client, "_get", _Pages({"0": {"id": 4}, "2": {"id": 6}}))
    assert [c["id"] async for c in rig.client.iter_customers(page_size=4)] == [4, 6]


def test_one_of_several_ids_is_one_group_of_ored_eq_filters() -> None:
    """AnyOf puts its filters in one group (OR), numbered from 0, beside the other groups."""
    pairs = dict(
        search_criteria(
            [AnyOf((Filter("website_id", "1"), Filter("website_id", "2"))), Filter("id", "7")],
            sort_field="entity_id",
            page_size=50,
        )
    )
    group = "searchCriteria[filter_groups][0][filters]"
    assert [pairs[f"{group}[{i}][value]"] for i in (0, 1)] == ["1", "2"]
    assert {pairs[f"{group}[{i}][condition_type]"] for i in (0, 1)} == {"eq"}
    assert pairs["searchCriteria[filter_groups][1][filters][0][field]"] == "id"


async def test_website_filter_survives_in_matching_only_its_first_value(
    make_magento: MakeMagento,
) -> None:
    """On a build where `in` matches only its first value (reference §8.4), customers of
    website 2 are still read when websites 1 and 2 are asked for: no `in` is sent."""
    state = MagentoState.seeded(40)
    state.in_first_value_only = True
    rig = await make_magento(state)
    got = [c["id"] async for c in rig.client.iter_customers(website_ids=[1, 2], page_size=7)]
    expected = sorted(i for i, c in state.customers.items() if c["website_id"] in (1, 2))
    assert got == expected
    assert any(state.customers[i]["website_id"] == 2 for i in got)
    sent = [v for q in _searches(state, "/customers/search") for v in q.values()]
    assert "in" not in sent


async def test_keyset_paging_reads_on_past_short_pages(make_magento: MakeMagento) -> None:
    """Pages shorter than pageSize while total_count says more remain do not end the scan:
    every customer is read, and the listing is complete."""
    state = MagentoState.seeded(30)
    state.page_cap = 4
    rig = await make_magento(state)
    listing = ListingReport()
    ids = [c["id"] async for c in rig.client.iter_customers(page_size=10, listing=listing)]
    assert ids == sorted(state.customers)
    assert listing.complete and listing.short == []


async def test_records_counted_but_not_listed_make_the_listing_short(
    make_magento: MakeMagento,
) -> None:
    """A record Magento counts but leaves out of its page is reported (the scan still reads
    everything after it): the listing is short, so no watermark may pass it."""
    state = MagentoState.seeded(30)
    hidden = sorted(state.customers)[3]
    state.search_omits.add(hidden)
    rig = await make_magento(state)
    listing = ListingReport()
    ids = [c["id"] async for c in rig.client.iter_customers(page_size=10, listing=listing)]
    assert ids == [i for i in sorted(state.customers) if i != hidden]
    assert not listing.complete
    first_page_end = sorted(state.customers)[9]  # the first page: ten ids, one not listed
    assert listing.short == [
        f"1 record(s) Magento counts after id 0 up to id {first_page_end} were not listed"
    ]


async def test_guest_order_listing_reports_orders_it_did_not_list(
    make_magento: MakeMagento,
) -> None:
    """Guest orders are paged like customers: past a short page, and reported short when
    Magento counts an order it never lists (here the last one)."""
    state = MagentoState.seeded(10, guest_orders=9)
    guests = sorted(i for i, o in state.orders.items() if o["customer_is_guest"] == 1)
    state.order_search_omits.add(guests[-1])
    rig = await make_magento(state)
    listing = ListingReport()
    got = [o["entity_id"] async for o in rig.client.iter_guest_orders(page_size=4, listing=listing)]
    assert got == guests[:-1]
    assert listing.short and not listing.complete


async def test_a_listing_without_total_count_is_not_proven_complete(
    make_magento: MakeMagento, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without total_count only a short page can end the scan, and it proves nothing."""
    rig = await make_magento(MagentoState.seeded(1))
    monkeypatch.setattr(rig.client, "_get", _Pages([{"id": 1}, {"id": 2}], [{"id": 3}]))
    listing = ListingReport()
    ids = [c["id"] async for c in rig.client.iter_customers(page_size=2, listing=listing)]
    assert ids == [1, 2, 3]
    assert not listing.complete and listing.short
