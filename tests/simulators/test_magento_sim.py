"""Specification of the Magento 2 REST simulator (simulators/magento*.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
import yarl
from authlib.oauth1 import ClientAuth  # type: ignore[import-untyped]
from authlib.oauth1.rfc5849.signature import (  # type: ignore[import-untyped]
    generate_signature_base_string,
)
from authlib.oauth1.rfc5849.util import escape  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.magento import (
    CUSTOMERS,
    MAGENTO_STATE,
    MagentoState,
    OAuthCredentials,
    create_app,
)
from simulators.magento_search import parse_search_criteria, run_search

BEARER = {"Authorization": "Bearer demo-magento-token"}
SEARCH = "/rest/V1/customers/search"
ORDERS = "/rest/V1/orders"
Pairs = list[tuple[str, str]]


def flt(
    group: int, index: int, field: str, value: str | None = None, cond: str | None = None
) -> Pairs:
    """searchCriteria pairs for one filter, snake_case keys."""
    base = f"searchCriteria[filter_groups][{group}][filters][{index}]"
    pairs = [(f"{base}[field]", field)]
    if value is not None:
        pairs.append((f"{base}[value]", value))
    if cond is not None:
        pairs.append((f"{base}[condition_type]", cond))
    return pairs


def sort(index: int, field: str, direction: str | None = "ASC") -> Pairs:
    """searchCriteria pairs for one sort order."""
    pairs = [(f"searchCriteria[sortOrders][{index}][field]", field)]
    if direction is not None:
        pairs.append((f"searchCriteria[sortOrders][{index}][direction]", direction))
    return pairs


def page(size: int, current: int = 1) -> Pairs:
    """searchCriteria paging pairs."""
    return [("searchCriteria[pageSize]", str(size)), ("searchCriteria[currentPage]", str(current))]


#: Every row in primary-key order: without sortOrders the order is unspecified (reversed
#: here), and with input limits on an omitted pageSize means 20.
ALL_ASC = [*sort(0, "entity_id"), *page(300)]


@pytest.fixture
def state() -> MagentoState:
    """The default seed: 50 customers, 10 guest orders."""
    return MagentoState.seeded()


@pytest.fixture
async def client(aiohttp_client: Any, state: MagentoState) -> Any:
    """A test client on 127.0.0.1 over `state`."""
    return await aiohttp_client(create_app(state))


async def get_json(client: Any, path: str, params: Pairs | None = None, status: int = 200) -> Any:
    """GET with the demo bearer token; assert the status and return the JSON body."""
    response = await client.get(path, params=params or [("searchCriteria", "")], headers=BEARER)
    assert response.status == status, await response.text()
    return await response.json()


def ids(body: dict[str, Any]) -> list[int]:
    """Customer ids of a search envelope, in answer order."""
    return [item["id"] for item in body["items"]]


# --- searchCriteria ---------------------------------------------------------------------------


async def test_filters_in_one_group_are_ored(client, state):
    """Two filters in one group match customers satisfying either."""
    a, b = sorted(state.customers)[:2]
    body = await get_json(
        client, SEARCH, flt(0, 0, "entity_id", str(a)) + flt(0, 1, "entity_id", str(b)) + ALL_ASC
    )
    assert ids(body) == [a, b]
    assert body["total_count"] == 2


async def test_filter_groups_are_anded(client, state):
    """Two groups must both match: website 2 AND store 3 (the de view) only."""
    params = flt(0, 0, "website_id", "2") + flt(1, 0, "store_id", "3") + ALL_ASC
    body = await get_json(client, SEARCH, params)
    expected = [
        c["id"] for c in state.customers.values() if c["website_id"] == 2 and c["store_id"] == 3
    ]
    assert ids(body) == sorted(expected) and expected


async def test_keyset_paging_returns_every_customer_once(client, state):
    """entity_id gt <last> + sort entity_id ASC + page 1 walks all customers exactly once."""
    seen: list[int] = []
    last = 0
    while True:
        params = flt(0, 0, "entity_id", str(last), "gt") + sort(0, "entity_id") + page(7)
        batch = ids(await get_json(client, SEARCH, params))
        if not batch:
            break
        seen += batch
        last = batch[-1]
    assert seen == sorted(state.customers)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(min_value=1, max_value=60))
def test_keyset_paging_is_complete_for_any_page_size(size):
    """Keyset paging visits every customer exactly once whatever the page size."""
    state = MagentoState.seeded(customers=40, guest_orders=0)
    rows = [state.customers[key] for key in sorted(state.customers)]
    seen: list[int] = []
    while True:
        pairs = flt(0, 0, "entity_id", str(seen[-1] if seen else 0), "gt")
        criteria = parse_search_criteria(pairs + sort(0, "entity_id") + page(size))
        assert criteria is not None
        batch = ids(run_search(rows, criteria, CUSTOMERS, state.paging()))
        if not batch:
            break
        seen += batch
    assert seen == sorted(state.customers)


async def test_page_past_the_end_is_empty_in_24_mode(client, state):
    """overflow_mode "empty" (2.4): a page past the end has no items but the true total."""
    body = await get_json(client, SEARCH, sort(0, "entity_id") + page(10, 99))
    assert body["items"] == []
    assert body["total_count"] == len(state.customers)


async def test_page_past_the_end_repeats_last_page_in_23_mode(client, state):
    """overflow_mode "repeat_last" (2.3): a page past the end repeats the last page."""
    state.overflow_mode = "repeat_last"
    last = await get_json(client, SEARCH, sort(0, "entity_id") + page(20, 3))
    beyond = await get_json(client, SEARCH, sort(0, "entity_id") + page(20, 99))
    assert ids(beyond) == ids(last) == sorted(state.customers)[40:]


async def test_filtering_on_id_is_rejected(client):
    """`id` is not a customer column: 400 Invalid attribute name, parameters ["id"]."""
    body = await get_json(client, SEARCH, flt(0, 0, "id", "1"), status=400)
    assert body == {"message": "Invalid attribute name: %1", "parameters": ["id"]}


async def test_camel_and_snake_case_keys_are_both_accepted(client, state):
    """filterGroups/conditionType/sortOrders/pageSize/currentPage mean the snake_case keys."""
    camel = [
        ("searchCriteria[filterGroups][0][filters][0][field]", "website_id"),
        ("searchCriteria[filterGroups][0][filters][0][value]", "2"),
        ("searchCriteria[filterGroups][0][filters][0][conditionType]", "eq"),
        ("searchCriteria[sortOrders][0][field]", "entity_id"),
        ("searchCriteria[sortOrders][0][direction]", "DESC"),
        ("searchCriteria[pageSize]", "3"),
        ("searchCriteria[currentPage]", "2"),
    ]
    snake = [
        (
            key.replace("filterGroups", "filter_groups")
            .replace("conditionType", "condition_type")
            .replace("sortOrders", "sort_orders")
            .replace("pageSize", "page_size")
            .replace("currentPage", "current_page"),
            value,
        )
        for key, value in camel
    ]
    camel_body = await get_json(client, SEARCH, camel)
    snake_body = await get_json(client, SEARCH, snake)
    assert camel_body == snake_body
    assert len(camel_body["items"]) == 3


async def test_search_criteria_is_echoed_in_snake_case(client):
    """search_criteria echoes what was sent, snake_case, condition_type defaulting to eq."""
    body = await get_json(
        client, SEARCH, flt(0, 0, "email", "x@example.com") + sort(0, "entity_id") + page(5, 2)
    )
    assert body["search_criteria"] == {
        "filter_groups": [
            {"filters": [{"field": "email", "condition_type": "eq", "value": "x@example.com"}]}
        ],
        "sort_orders": [{"field": "entity_id", "direction": "ASC"}],
        "page_size": 5,
        "current_page": 2,
    }


async def test_empty_bracket_indexes_are_a_server_error(client):
    """Swagger-style `[]` indexes split field from value in PHP: 500, as in issue 12790."""
    params = [
        ("searchCriteria[filter_groups][][filters][][field]", "email"),
        ("searchCriteria[filter_groups][][filters][][value]", "x@example.com"),
    ]
    body = await get_json(client, SEARCH, params, status=500)
    assert body["message"].startswith("Internal Error.")


async def test_unknown_criteria_property_is_rejected(client):
    """A misspelt property (page_sizes) is a 400 naming the missing accessor."""
    body = await get_json(client, SEARCH, [("searchCriteria[page_sizes]", "5")], status=400)
    assert body["parameters"]["propertyName"] == "page_sizes"


async def test_search_without_criteria_is_rejected(client):
    """searchCriteria is a required argument of getList()."""
    response = await client.get(SEARCH, headers=BEARER)
    assert response.status == 400
    assert (await response.json())["parameters"] == {"fieldName": "searchCriteria"}


async def test_omitted_page_size_returns_all_rows(client, state):
    """Without pageSize (and input limits off) every matching row comes back."""
    state.max_page_size = None
    body = await get_json(client, SEARCH)
    assert len(body["items"]) == body["total_count"] == len(state.customers)


async def test_page_size_above_the_input_limit_is_rejected(client, state):
    """With input limits on, pageSize above the maximum is a 400."""
    state.max_page_size = 300
    body = await get_json(client, SEARCH, page(301), status=400)
    assert body == {
        "message": "Maximum SearchCriteria pageSize is %max",
        "parameters": {"max": 300},
    }


async def test_input_limits_apply_the_default_page_size(client, state):
    """With input limits on, an omitted pageSize means the default page size (20)."""
    state.max_page_size = 300
    body = await get_json(client, SEARCH)
    assert len(body["items"]) == 20
    assert body["total_count"] == len(state.customers)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # SQL LIKE with % wildcards, case-insensitive like the *_general_ci collation
        (
            flt(0, 0, "email", "%@EXAMPLE.DE", "like"),
            {"lukasz.zolkiewski@example.de", "juergen.gross@example.de"},
        ),
        # eq on email ignores case: the upper-cased address is found by its lower-case form
        (flt(0, 0, "email", "john.upper@example.com"), {"JOHN.UPPER@EXAMPLE.COM"}),
        # in takes a comma-separated list
        (
            flt(0, 0, "email", "sam.shared@example.com,mj.watson@example.com", "in"),
            {"sam.shared@example.com", "mj.watson@example.com"},
        ),
        # finset: the value is one element of the column's comma list
        (
            flt(0, 0, "email", "nadia.addressless@example.com", "finset"),
            {"nadia.addressless@example.com"},
        ),
        # joined default-billing columns are filterable
        (flt(0, 0, "billing_country_id", "US"), {"mj.watson@example.com"}),
    ],
)
async def test_condition_types_follow_mysql(client, filters, expected):
    """Condition types compare like MySQL with a case-insensitive collation."""
    body = await get_json(client, SEARCH, filters)
    assert {item["email"] for item in body["items"]} == expected


async def test_nin_excludes_the_listed_values(client, state):
    """nin drops exactly the listed ids."""
    first, second = sorted(state.customers)[:2]
    body = await get_json(
        client, SEARCH, flt(0, 0, "entity_id", f"{first},{second}", "nin") + ALL_ASC
    )
    assert ids(body) == sorted(state.customers)[2:]


async def test_null_matches_only_null_and_neq_never_does(client, state):
    """`null` finds customers without taxvat; `neq` skips them, as SQL NULL semantics say."""
    without = {c["id"] for c in state.customers.values() if "taxvat" not in c}
    null_body = await get_json(client, SEARCH, flt(0, 0, "taxvat", cond="null") + ALL_ASC)
    neq_body = await get_json(client, SEARCH, flt(0, 0, "taxvat", "nothing", "neq") + ALL_ASC)
    assert set(ids(null_body)) == without
    assert set(ids(neq_body)) == set(state.customers) - without


async def test_datetime_range_compares_utc_strings(client, state):
    """from/to in separate groups bound updated_at as "YYYY-MM-DD HH:MM:SS" strings."""
    low, high = "2023-06-01 00:00:00", "2023-09-01 00:00:00"
    params = flt(0, 0, "updated_at", low, "from") + flt(1, 0, "updated_at", high, "to") + ALL_ASC
    body = await get_json(client, SEARCH, params)
    expected = [c["id"] for c in state.customers.values() if low <= c["updated_at"] <= high]
    assert ids(body) == sorted(expected) and expected


async def test_sort_without_direction_is_descending(client, state):
    """A sort order without direction sorts DESC."""
    body = await get_json(client, SEARCH, [*sort(0, "entity_id", direction=None), *page(300)])
    assert ids(body) == sorted(state.customers, reverse=True)


async def test_fields_trims_top_level_and_items(client):
    """fields=items[id,email,updated_at],total_count keeps just those keys."""
    body = await get_json(
        client, SEARCH, [*page(2), ("fields", "items[id,email,updated_at],total_count")]
    )
    assert set(body) == {"items", "total_count"}
    assert all(set(item) == {"id", "email", "updated_at"} for item in body["items"])


async def test_fields_trims_nested_lists(client):
    """fields= recurses: items[id,addresses[city]] trims inside each address too."""
    params = [*ALL_ASC[:2], *page(1), ("fields", "items[id,addresses[city]]")]
    body = await get_json(client, SEARCH, params)
    assert body == {"items": [{"id": 1, "addresses": [{"city": "London"}]}]}


# --- single entities and orders ---------------------------------------------------------------


async def test_unknown_customer_is_404_with_parameters(client):
    """GET /V1/customers/{id} for a missing id answers NoSuchEntity with its parameters."""
    body = await get_json(client, "/rest/V1/customers/99999", status=404)
    assert body == {
        "message": "No such entity with %fieldName = %fieldValue",
        "parameters": {"fieldName": "customerId", "fieldValue": "99999"},
    }


async def test_guest_order_filter(client, state):
    """customer_is_guest eq 1 returns only guest orders, which carry no customer_id."""
    body = await get_json(client, ORDERS, flt(0, 0, "customer_is_guest", "1"))
    assert body["total_count"] == 10
    assert all(o["customer_is_guest"] == 1 and "customer_id" not in o for o in body["items"])


async def test_order_addresses_use_a_plain_string_region(client):
    """Order billing region is a plain string; shipping sits under extension_attributes."""
    body = await get_json(client, ORDERS, flt(0, 0, "customer_is_guest", "1") + page(1))
    order = body["items"][0]
    assert isinstance(order["billing_address"]["region"], str)
    shipping = order["extension_attributes"]["shipping_assignments"][0]["shipping"]["address"]
    assert shipping["address_type"] == "shipping"


async def test_unknown_order_column_is_a_server_error(client):
    """Orders are a flat table: a wrong column name (customerId) ends in an SQL error 500."""
    await get_json(client, ORDERS, flt(0, 0, "customerId", "1"), status=500)


async def test_deleting_a_customer_orphans_their_orders(state):
    """delete_customer removes customer_id from orders but leaves customer_is_guest 0."""
    customer = state.add_customer(email="leaver@example.com", firstname="Lee", lastname="Ver")
    order = state.add_customer_order(customer["id"])
    state.delete_customer(customer["id"])
    kept = state.orders[order["entity_id"]]
    assert "customer_id" not in kept and kept["customer_is_guest"] == 0


# --- state helpers ----------------------------------------------------------------------------


def _clock_at(moment: datetime) -> Callable[[], datetime]:
    """A frozen clock for MagentoState.clock."""
    return lambda: moment


async def test_update_customer_bumps_updated_at(state):
    """Saving a customer moves updated_at to now."""
    state.clock = _clock_at(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    updated = state.update_customer(1, lastname="Changed")
    assert updated["updated_at"] == "2030-01-01 12:00:00"


async def test_update_address_does_not_bump_updated_at(state):
    """An address-only edit leaves the customer's updated_at alone (real Magento quirk)."""
    before = state.customers[1]["updated_at"]
    state.clock = _clock_at(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    state.update_address(1, 0, city="Bristol", postcode="BS1 4DJ")
    assert state.customers[1]["addresses"][0]["city"] == "Bristol"
    assert state.customers[1]["updated_at"] == before


async def test_same_email_twice_on_one_website_is_refused(state):
    """(email, website_id) is unique, case-insensitively."""
    with pytest.raises(ValueError, match="already exists"):
        state.add_customer(email="ZOE.ANGSTROM@example.co.uk", firstname="Z", lastname="A")


# --- seed -------------------------------------------------------------------------------------


def _addresses(state: MagentoState) -> list[dict[str, Any]]:
    """Every customer address of the state."""
    return [a for c in state.customers.values() for a in c.get("addresses", [])]


@pytest.mark.parametrize(
    ("case", "present"),
    [
        (
            "unicode names",
            lambda s: {"Zoë", "Łukasz", "太郎"} <= {c["firstname"] for c in s.customers.values()},
        ),
        (
            "B2B with '-' names",
            lambda s: any(
                c["firstname"] == "-" and c["addresses"][0].get("company")
                for c in s.customers.values()
            ),
        ),
        ("whitespace names", lambda s: any(c["firstname"] == " " for c in s.customers.values())),
        ("empty names", lambda s: any(c["firstname"] == "" for c in s.customers.values())),
        ("no addresses", lambda s: any(c["addresses"] == [] for c in s.customers.values())),
        (
            "shipping default only",
            lambda s: any(
                "default_shipping" in c and "default_billing" not in c for c in s.customers.values()
            ),
        ),
        (
            "long street",
            lambda s: any(
                len(a["street"]) >= 3 and len(" ".join(a["street"])) > 100 for a in _addresses(s)
            ),
        ),
        (
            "email on two websites",
            lambda s: (
                len(
                    {
                        c["website_id"]
                        for c in s.customers.values()
                        if c["email"] == "sam.shared@example.com"
                    }
                )
                == 2
            ),
        ),
        (
            "vat ids",
            lambda s: (
                any("vat_id" in a for a in _addresses(s))
                and any("taxvat" in c for c in s.customers.values())
            ),
        ),
        (
            "region with trailing space",
            lambda s: any(a["region"].get("region") == "London " for a in _addresses(s)),
        ),
        ("missing telephone", lambda s: any("telephone" not in a for a in _addresses(s))),
        (
            "countries",
            lambda s: (
                {"GB", "IE", "FR", "DE", "US", "NL", "ES"}
                <= {a["country_id"] for a in _addresses(s)}
            ),
        ),
        (
            "upper-case emails",
            lambda s: any(c["email"] != c["email"].lower() for c in s.customers.values()),
        ),
        ("fr and de views", lambda s: {2, 3} <= {c["store_id"] for c in s.customers.values()}),
        ("id gaps", lambda s: max(s.customers) > len(s.customers)),
    ],
)
def test_seed_contains_awkward_customers(state, case, present):
    """The default seed holds every awkward customer shape a mapper must survive."""
    assert present(state), case


def test_seed_contains_awkward_guest_orders(state):
    """Guest orders reuse registered emails, repeat a guest, and lack names once."""
    guests = [o for o in state.orders.values() if o["customer_is_guest"] == 1]
    registered = {c["email"] for c in state.customers.values()}
    emails = [o["customer_email"] for o in guests]
    assert registered & set(emails)
    assert emails.count("repeat.guest@example.org") >= 2
    assert any("customer_firstname" not in o and o["billing_address"]["firstname"] for o in guests)


def test_seed_is_deterministic():
    """The same seed gives the same data."""
    assert MagentoState.seeded(seed=3).customers == MagentoState.seeded(seed=3).customers


async def test_nulls_are_never_sent(client):
    """No endpoint ever sends a JSON null."""
    bodies = [
        await get_json(client, SEARCH),
        await get_json(client, ORDERS),
        await get_json(client, "/rest/V1/store/storeConfigs"),
    ]
    assert all(_no_nulls(body) for body in bodies)


def _no_nulls(value: Any) -> bool:
    """True when no dict value or list element anywhere in `value` is None."""
    if isinstance(value, dict):
        return all(v is not None and _no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(v is not None and _no_nulls(v) for v in value)
    return True


# --- stores and routing -----------------------------------------------------------------------


async def test_store_lists_include_admin(client):
    """storeViews/storeGroups/websites list the admin entry (id 0, code admin) like Magento."""
    views = await get_json(client, "/rest/V1/store/storeViews")
    websites = await get_json(client, "/rest/V1/store/websites")
    assert [v["code"] for v in views][:4] == ["admin", "default", "fr", "de"]
    assert [w["code"] for w in websites] == ["admin", "base", "eu", "world"]


async def test_store_configs_can_be_limited_by_code(client):
    """storeConfigs?storeCodes[]=fr answers just that view's locale and currency."""
    body = await get_json(client, "/rest/V1/store/storeConfigs", [("storeCodes[]", "fr")])
    assert [(c["code"], c["locale"], c["base_currency_code"]) for c in body] == [
        ("fr", "fr_FR", "EUR")
    ]


async def test_store_code_sets_context_without_filtering(client, state):
    """/rest/fr/V1/customers/search returns customers of every website."""
    body = await get_json(client, "/rest/fr/V1/customers/search")
    assert body["total_count"] == len(state.customers)


async def test_unknown_store_code_does_not_match_a_route(client):
    """An unknown store code becomes part of the path: "Request does not match any route."."""
    body = await get_json(client, "/rest/nope/V1/customers/search", status=404)
    assert body == {"message": "Request does not match any route."}


# --- auth -------------------------------------------------------------------------------------


async def test_request_without_credentials_is_refused(client):
    """No Authorization header: 401 naming the ACL resource."""
    response = await client.get(SEARCH, params={"searchCriteria": ""})
    assert response.status == 401
    assert await response.json() == {
        "message": "The consumer isn't authorized to access %resources.",
        "parameters": {"resources": "Magento_Customer::customer"},
    }


async def test_bearer_is_refused_when_the_flag_is_off(client, state):
    """With enable_integration_as_bearer off, a valid token gets the same ACL-like 401."""
    state.bearer_enabled = False
    await get_json(client, SEARCH, status=401)


def _sign_hmac_sha256(client: ClientAuth, request: Any) -> str:
    """HMAC-SHA256 for authlib, which ships only HMAC-SHA1."""
    base = generate_signature_base_string(request)
    key = f"{escape(client.client_secret)}&{escape(client.token_secret)}"
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()).decode()


class Sha256ClientAuth(ClientAuth):  # type: ignore[misc]
    """authlib's client with HMAC-SHA256 added on a private copy of its method table."""

    SIGNATURE_METHODS: ClassVar[dict[str, Any]] = {
        **ClientAuth.SIGNATURE_METHODS,
        "HMAC-SHA256": _sign_hmac_sha256,
    }


async def _oauth_get(
    client: Any,
    method: str = "HMAC-SHA256",
    tamper: bool = False,
    headers: Any = None,
    space: str = "%20",
) -> tuple[Any, dict[str, str]]:
    """Sign a search (with a datetime value holding a space) using authlib, then send it."""
    creds: OAuthCredentials = client.app[MAGENTO_STATE].oauth_consumers["demo-consumer-key"]
    query = "&".join(
        f"{quote(k, safe='')}={quote(v, safe='')}"
        for k, v in flt(0, 0, "updated_at", "2023-01-01 00:00:00", "gteq") + page(2)
    ).replace("%20", space)
    url = f"{client.make_url(SEARCH)}?{query}"
    if headers is None:
        auth = Sha256ClientAuth(
            "demo-consumer-key",
            creds.consumer_secret,
            token=creds.access_token,
            token_secret=creds.token_secret,
            signature_method=method,
        )
        _, headers, _ = auth.sign("GET", url, {}, b"")
    if tamper:
        url = url.replace("pageSize%5D=2", "pageSize%5D=3")
    response = await client.session.get(yarl.URL(url, encoded=True), headers=headers)
    return response, headers


@pytest.fixture
def insecure_transport(monkeypatch):
    """authlib refuses to sign plain-http URLs unless told this is a test."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1"])
async def test_oauth_signed_request_is_accepted(client, state, insecure_transport, method):
    """An OAuth 1.0a request signed by authlib passes, even with the Bearer flag off."""
    state.bearer_enabled = False
    response, _ = await _oauth_get(client, method)
    assert response.status == 200, await response.text()
    assert len((await response.json())["items"]) == 2


async def test_oauth_bad_signature_is_refused(client, insecure_transport):
    """A request altered after signing is 401 signature_invalid."""
    response, _ = await _oauth_get(client, tamper=True)
    assert response.status == 401
    assert 'oauth_problem="signature_invalid"' in response.headers["WWW-Authenticate"]


async def test_oauth_plus_for_space_is_refused(client, insecure_transport):
    """A space sent as `+` but signed as a space is 401 signature_invalid (§5, [I37278])."""
    response, _ = await _oauth_get(client, space="+")
    assert response.status == 401
    assert 'oauth_problem="signature_invalid"' in response.headers["WWW-Authenticate"]


async def test_oauth_nonce_reuse_is_refused(client, insecure_transport):
    """Replaying a signed request (same nonce) is 401 nonce_used."""
    first, headers = await _oauth_get(client)
    replay, _ = await _oauth_get(client, headers=headers)
    assert (first.status, replay.status) == (200, 401)
    assert 'oauth_problem="nonce_used"' in replay.headers["WWW-Authenticate"]


async def test_oauth_timestamp_outside_600_seconds_is_refused(client, state, insecure_transport):
    """A signature made 11 minutes away from the server clock is 400 timestamp_refused."""
    state.clock = _clock_at(datetime.now(UTC) + timedelta(minutes=11))
    response, _ = await _oauth_get(client)
    assert response.status == 400
    assert 'oauth_problem="timestamp_refused"' in response.headers["WWW-Authenticate"]


# --- faults and request log -------------------------------------------------------------------


async def test_injected_429s_carry_retry_after(client, state):
    """inject_429(n) answers the next n requests with 429 + Retry-After, then recovers."""
    state.inject_429(1, retry_after=7)
    response = await client.get(SEARCH, params={"searchCriteria": ""}, headers=BEARER)
    assert (response.status, response.headers["Retry-After"]) == (429, "7")
    assert await response.json() == {"message": "Too Many Requests"}
    await get_json(client, SEARCH)


async def test_error_rate_gives_proxy_503_html(client, state):
    """error_rate 1.0 makes every request a 503 HTML page from the proxy, with Retry-After."""
    state.error_rate = 1.0
    response = await client.get(SEARCH, params={"searchCriteria": ""}, headers=BEARER)
    assert response.status == 503
    assert response.content_type == "text/html" and "Retry-After" in response.headers


async def test_proxy_503_refuses_requests_before_its_retry_after(client, state):
    """After a 503 with Retry-After: 30, every request before those 30 s is refused again with
    the seconds left (and counted); once they have passed, requests get through."""
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    moments = iter([start, start + timedelta(seconds=10.5), start + timedelta(seconds=30)])
    state.clock = lambda: next(moments)
    state.error_rate, state.error_retry_after = 1.0, 30
    first = await client.get(SEARCH, params={"searchCriteria": ""}, headers=BEARER)
    assert (first.status, first.headers["Retry-After"]) == (503, "30")
    state.error_rate = 0.0  # the outage is over, but the proxy still holds to its word
    early = await client.get(SEARCH, params={"searchCriteria": ""}, headers=BEARER)
    assert (early.status, early.headers["Retry-After"]) == (503, "20")
    assert state.early_retries == 1
    await get_json(client, SEARCH)
    assert state.early_retries == 1


async def test_requests_are_recorded(client, state):
    """state.requests logs method, path, decoded query and status."""
    await get_json(client, "/rest/V1/customers/99999", status=404)
    assert state.requests[-1].path == "/rest/V1/customers/99999"
    assert state.requests[-1].status == 404


# --- harsher readings of what the reference leaves open ---------------------------------------


async def test_without_sort_orders_the_order_is_not_primary_key(client, state):
    """No sortOrders: SQL order is unspecified (§1), so rows do not come in id order."""
    body = await get_json(client, SEARCH, page(300))
    assert ids(body) == sorted(state.customers, reverse=True)
    state.unsorted_reversed = False
    assert ids(await get_json(client, SEARCH, page(300))) == sorted(state.customers)


async def test_input_limits_are_on_by_default(client, state):
    """Input limits (§7) are on unless switched off: pageSize 301 is a 400, none means 20."""
    await get_json(client, SEARCH, page(301), status=400)
    assert len((await get_json(client, SEARCH))["items"]) == 20


async def test_search_omits_attributes_that_get_by_id_has(client, state):
    """The list may lack extension/custom attributes (§2); GET /V1/customers/{id} has them."""
    first = sorted(state.customers)[0]
    listed = (await get_json(client, SEARCH, [*ALL_ASC[:2], *page(1)]))["items"][0]
    one = await get_json(client, f"/rest/V1/customers/{first}")
    assert "extension_attributes" not in listed and "extension_attributes" in one
    state.search_includes_attributes = True
    listed = (await get_json(client, SEARCH, [*ALL_ASC[:2], *page(1)]))["items"][0]
    assert "extension_attributes" in listed


async def test_page_past_the_end_can_be_page_one_again(client, state):
    """overflow_mode "first": a page past the end is page 1 again (§1, storefront plugin)."""
    state.overflow_mode = "first"
    body = await get_json(client, SEARCH, [*ALL_ASC[:2], *page(10, 99)])
    assert ids(body) == sorted(state.customers)[:10]


async def test_page_cap_serves_short_pages_with_the_full_count(client, state):
    """page_cap: fewer items than pageSize while more remain; total_count still counts all."""
    state.page_cap = 3
    body = await get_json(client, SEARCH, ALL_ASC)
    assert ids(body) == sorted(state.customers)[:3]
    assert body["total_count"] == len(state.customers)


async def test_order_search_omits_hides_orders_the_count_still_holds(client, state):
    """order_search_omits: /V1/orders leaves the order out of its items, not its count."""
    hidden = min(state.orders)
    state.order_search_omits.add(hidden)
    body = await get_json(client, ORDERS, ALL_ASC)
    assert hidden not in [o["entity_id"] for o in body["items"]]
    assert body["total_count"] == len(state.orders) == len(body["items"]) + 1


async def test_in_first_value_only_matches_just_the_first_value(client, state):
    """in_first_value_only: `in` 2,1 matches website 2 only, `eq` filters OR'ed in one group
    still match both, and the echo shows what was sent."""
    state.in_first_value_only = True
    as_in = await get_json(client, SEARCH, [*flt(0, 0, "website_id", "2,1", "in"), *ALL_ASC])
    assert {state.customers[i]["website_id"] for i in ids(as_in)} == {2}
    assert as_in["search_criteria"]["filter_groups"][0]["filters"][0]["value"] == "2,1"
    ored = [*flt(0, 0, "website_id", "2", "eq"), *flt(0, 1, "website_id", "1", "eq")]
    both = await get_json(client, SEARCH, [*ored, *ALL_ASC])
    assert {state.customers[i]["website_id"] for i in ids(both)} == {1, 2}
