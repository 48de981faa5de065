"""Magento 2 REST simulator: an aiohttp app answering the read endpoints fa-sync uses.

Routes exist both as `/rest/V1/...` and `/rest/<store_code>/V1/...`; the store code only sets
context (it does not filter), an unknown one is "Request does not match any route.":

    GET /V1/customers/search   searchCriteria (see magento_search), ACL Magento_Customer::customer
    GET /V1/customers/{id}     one customer, or 404 "No such entity with %fieldName = %fieldValue"
    GET /V1/orders             searchCriteria over orders (guest orders: customer_is_guest eq 1)
    GET /V1/orders/{id}        one order
    GET /V1/store/{storeViews,storeGroups,websites,storeConfigs}

Every response is JSON without nulls and honours `fields=` trimming. Three middlewares wrap
the routes, outermost first: record the request, inject faults (latency, queued 429s, a
"proxy" 503 at `error_rate` whose Retry-After holds: earlier requests get 503 again), render
MagentoError as Magento's error JSON. List searches can be made to misbehave as some installs
do: short pages (`page_cap`), records counted but not listed (`search_omits`,
`order_search_omits`), `in` matching only its first value (`in_first_value_only`).

Usage: `web.run_app(create_app(MagentoState.seeded(200)), port=8081)`; tests use
`aiohttp_client(create_app(state))` and then inspect `state`.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from operator import methodcaller
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from simulators.magento_auth import authorize
from simulators.magento_errors import MagentoError, internal_error, route_not_found
from simulators.magento_keyset import Table, search_table
from simulators.magento_records import omit_nulls
from simulators.magento_search import (
    Collection,
    Column,
    SearchCriteria,
    echo,
    parse_fields,
    parse_search_criteria,
    trim_fields,
)
from simulators.magento_state import (
    DEMO_BEARER_TOKEN,
    DEMO_CONSUMER_KEY,
    MagentoState,
    OAuthCredentials,
    RecordedRequest,
)
from simulators.magento_stores import (
    ROUTABLE_CODES,
    store_config_rows,
    store_group_rows,
    store_view_rows,
    website_rows,
)

__all__ = [
    "DEMO_BEARER_TOKEN",
    "DEMO_CONSUMER_KEY",
    "MAGENTO_STATE",
    "MagentoState",
    "OAuthCredentials",
    "RecordedRequest",
    "create_app",
]

MAGENTO_STATE: web.AppKey[MagentoState] = web.AppKey("magento_state", MagentoState)

ACL_CUSTOMERS = "Magento_Customer::customer"
ACL_ORDERS = "Magento_Sales::actions_view"
ACL_STORES = "Magento_Backend::stores"

#: A route body: builds the JSON payload (before null omission and `fields=` trimming).
Handler = Callable[[web.Request, MagentoState], Any]
_Middleware = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: What an nginx in front of Magento says when PHP-FPM is overloaded.
_PROXY_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def _columns(names: str, **computed: Column) -> Mapping[str, Column]:
    """Columns read straight from the row's keys, plus computed ones."""
    return {name: methodcaller("get", name) for name in names.split()} | computed


def _billing_value(key: str) -> Column:
    """A column joined from the default billing address, as CustomerRepository::getList does."""

    def read(row: Mapping[str, Any]) -> Any:
        for address in row.get("addresses", []):
            if str(address["id"]) == row.get("default_billing"):
                value = address.get(key)
                return value.get("region") if isinstance(value, Mapping) else value
        return None

    return read


# Customers are an EAV collection: an unknown attribute (notably `id`) is a clean 400.
CUSTOMERS = Collection(
    columns=_columns(
        "email website_id store_id group_id created_at updated_at created_in firstname lastname "
        "middlename prefix suffix dob gender taxvat confirmation default_billing "
        "default_shipping disable_auto_group_change",
        entity_id=methodcaller("get", "id"),
        billing_postcode=_billing_value("postcode"),
        billing_city=_billing_value("city"),
        billing_telephone=_billing_value("telephone"),
        billing_region=_billing_value("region"),
        billing_country_id=_billing_value("country_id"),
        company=_billing_value("company"),
    ),
    unknown_field=lambda name: MagentoError(400, "Invalid attribute name: %1", [name]),
    key="entity_id",
)
# Orders are a flat table: an unknown column is an SQL error, i.e. a production-mode 500.
ORDERS = Collection(
    columns=_columns(
        "entity_id increment_id state status store_id customer_id customer_is_guest "
        "customer_email customer_firstname customer_lastname customer_group_id created_at "
        "updated_at grand_total base_grand_total subtotal order_currency_code "
        "base_currency_code total_qty_ordered store_name"
    ),
    unknown_field=lambda name: internal_error(f"unknown-column-{name}"),
    key="entity_id",
)


def _query_pairs(request: web.Request) -> list[tuple[str, str]]:
    """The query decoded once, `+` as space, in order: what PHP's parse_str would see."""
    return parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)


def _criteria(request: web.Request) -> SearchCriteria:
    """The request's searchCriteria; the getList() argument is required."""
    criteria = parse_search_criteria(_query_pairs(request))
    if criteria is None:
        raise MagentoError(
            400, '"%fieldName" is required. Enter and try again.', {"fieldName": "searchCriteria"}
        )
    return criteria


#: What the customer list leaves out unless `search_includes_attributes` (reference §2).
LIST_OMITS = frozenset({"extension_attributes", "custom_attributes"})


def _as_applied(criteria: SearchCriteria, state: MagentoState) -> SearchCriteria:
    """The criteria as the simulated build applies them: with `in_first_value_only`, an `in`
    filter keeps only its first value (the echo still shows what was sent)."""
    if not state.in_first_value_only:
        return criteria
    groups = tuple(
        tuple(
            replace(f, value=f.value.split(",")[0])
            if f.value is not None and (f.condition_type or "").lower() == "in"
            else f
            for f in group
        )
        for group in criteria.filter_groups
    )
    return replace(criteria, filter_groups=groups)


def _search(
    request: web.Request, state: MagentoState, table: Table, collection: Collection
) -> dict[str, Any]:
    """One list search: matched, paged and counted, then cut short as the state says (the
    count still holds every match)."""
    criteria = _criteria(request)
    result = search_table(table, _as_applied(criteria, state), collection, state.paging())
    result["search_criteria"] = echo(criteria)
    items = result["items"][: state.page_cap] if state.page_cap is not None else result["items"]
    omits = state.search_omits if collection is CUSTOMERS else state.order_search_omits
    entity_id = collection.columns["entity_id"]
    result["items"] = [i for i in items if entity_id(i) not in omits]
    return result


def _search_customers(request: web.Request, state: MagentoState) -> Any:
    """GET /V1/customers/search; the items may lack extension and custom attributes."""
    result = _search(request, state, state.customers, CUSTOMERS)
    if not state.search_includes_attributes:
        result["items"] = [
            {key: value for key, value in item.items() if key not in LIST_OMITS}
            for item in result["items"]
        ]
    return result


def _get_customer(request: web.Request, state: MagentoState) -> Any:
    """GET /V1/customers/{id}: NoSuchEntityException::singleField when absent."""
    customer_id = request.match_info["customer_id"]
    customer = state.customers.get(int(customer_id))
    if customer is None:
        raise MagentoError(
            404,
            "No such entity with %fieldName = %fieldValue",
            {"fieldName": "customerId", "fieldValue": customer_id},
        )
    return customer


def _search_orders(request: web.Request, state: MagentoState) -> Any:
    """GET /V1/orders."""
    return _search(request, state, state.orders, ORDERS)


def _get_order(request: web.Request, state: MagentoState) -> Any:
    """GET /V1/orders/{id}."""
    order = state.orders.get(int(request.match_info["order_id"]))
    if order is None:
        raise MagentoError(
            404, "The entity that was requested doesn't exist. Verify the entity and try again."
        )
    return order


def _store_configs(request: web.Request, state: MagentoState) -> Any:
    """GET /V1/store/storeConfigs[?storeCodes[]=fr]: unknown codes are simply not listed."""
    codes = frozenset(
        value
        for key, value in _query_pairs(request)
        if key == "storeCodes" or key.startswith("storeCodes[")
    )
    return store_config_rows(f"{request.scheme}://{request.host}", codes or None)


_ROUTES: tuple[tuple[str, Handler, str], ...] = (
    ("/V1/customers/search", _search_customers, ACL_CUSTOMERS),
    (r"/V1/customers/{customer_id:\d+}", _get_customer, ACL_CUSTOMERS),
    ("/V1/orders", _search_orders, ACL_ORDERS),
    (r"/V1/orders/{order_id:\d+}", _get_order, ACL_ORDERS),
    ("/V1/store/storeViews", lambda request, state: store_view_rows(), ACL_STORES),
    ("/V1/store/storeGroups", lambda request, state: store_group_rows(), ACL_STORES),
    ("/V1/store/websites", lambda request, state: website_rows(), ACL_STORES),
    ("/V1/store/storeConfigs", _store_configs, ACL_STORES),
)


def _endpoint(handler: Handler, resource: str) -> _Middleware:
    """Wrap a route body: resolve the store code, authorise, render JSON."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        store_code = request.match_info.get("store_code")
        if store_code is not None and store_code not in ROUTABLE_CODES:
            raise route_not_found()  # Magento then reads the code as part of the path
        state = request.app[MAGENTO_STATE]
        authorize(request, state, resource)
        return _json(request, handler(request, state))

    return endpoint


def _json(request: web.Request, payload: Any, status: int = 200) -> web.Response:
    """Magento's JSON: nulls omitted, then `fields=` applied when it parses."""
    state = request.app[MAGENTO_STATE]
    body = copy.deepcopy(payload) if state.keep_nulls else omit_nulls(payload)
    tree = parse_fields(request.query.get("fields", ""))
    if tree is not None:
        body = trim_fields(body, tree)
    if state.escape_unicode:
        return web.json_response(body, status=status)
    # Raw UTF-8; a lone surrogate cannot be UTF-8, so it goes out as the invalid bytes a
    # database holding CESU-8 would send.
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return web.Response(body=raw, status=status, content_type="application/json")


@web.middleware
async def _record(request: web.Request, handler: _Middleware) -> web.StreamResponse:
    """Log every request with the status it got, faults and errors included."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        query = dict(_query_pairs(request))
        record = RecordedRequest(request.method, request.path, query, status)
        request.app[MAGENTO_STATE].requests.append(record)


@web.middleware
async def _faults(request: web.Request, handler: _Middleware) -> web.StreamResponse:
    """Latency, queued 429s and random proxy 503s, decided before Magento sees the request."""
    state = request.app[MAGENTO_STATE]
    if state.latency:
        await asyncio.sleep(state.latency)
    fault = state.take_fault()
    if fault is None:
        return await handler(request)
    status, retry_after = fault
    headers = {"Retry-After": str(retry_after)}
    if status == 429:
        return web.json_response({"message": "Too Many Requests"}, status=429, headers=headers)
    return web.Response(status=status, text=_PROXY_503, content_type="text/html", headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: _Middleware) -> web.StreamResponse:
    """Render refusals as Magento does; unknown routes and methods are a JSON 404."""
    try:
        return await handler(request)
    except MagentoError as exc:
        return web.json_response(exc.body(), status=exc.status, headers=exc.headers)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        error = route_not_found()
        return web.json_response(error.body(), status=error.status)


def create_app(state: MagentoState | None = None) -> web.Application:
    """The simulator app over `state` (a fresh `MagentoState.seeded()` when None)."""
    app = web.Application(middlewares=[_record, _faults, _errors])
    app[MAGENTO_STATE] = MagentoState.seeded() if state is None else state
    for path, handler, resource in _ROUTES:
        endpoint = _endpoint(handler, resource)
        for prefix in ("/rest", "/rest/{store_code}"):
            app.router.add_get(prefix + path, endpoint, allow_head=False)
    return app
