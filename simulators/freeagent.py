"""A FreeAgent API v2 stand-in: OAuth, contacts, company and user, with switchable faults.

Built from /work/shared/reference/freeagent-api.md and strict where the live API may be:
unknown or read-only contact fields are refused, countries must be English names, limits
are per-user fixed windows. Routes live under /v2/, so a client's base URL is
`http://127.0.0.1:PORT/v2/`. Usage:

    state = FreeAgentState(per_minute=5, minute_window=0.2)
    web.run_app(create_app(state), host="127.0.0.1", port=8081)

Every request passes one middleware that records it (`state.requests`) and counts it against
the per-IP limit (1,000 a minute, OAuth endpoints included). API routes (everything but the
two OAuth endpoints) then meet, in order: a standing fault (fault_status), random 5xx, the
User-Agent rule, bearer auth, permission level, injected then budgeted 429s (counted at
receipt), the JSON content-type rule, and only then latency. Only requests that pass all of
these count as having reached a handler. An API request whose Accept does not name
application/json is answered in XML (FreeAgent speaks both; reference §1).

Where the reference is unsure, the harsher reading is the default: view=all leaves out Hidden
contacts, PUT answers 200 without a body, updated_since means strictly after, a refresh token
dies when used, countries of the EU must be spelt as FreeAgent's own list spells them, and a
listing's Link URLs carry only page and per_page (the client must send its view, sort and
updated_since again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from simulators.freeagent_contacts import (
    ContactError,
    ListQuery,
    prepare_changes,
    select_contacts,
)
from simulators.freeagent_faults import as_xml
from simulators.freeagent_oauth import approve_app, token_endpoint
from simulators.freeagent_state import (
    FREEAGENT_STATE,
    AuthError,
    FreeAgentState,
    RequestRecord,
    Throttle,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Not API routes: no bearer token, no request budget, no injected faults.
OAUTH_PATHS = frozenset({"/v2/approve_app", "/v2/token_endpoint"})
BUSINESS_CATEGORIES = (
    "Accounting",
    "Consulting",
    "Design",
    "Online Retail",
    "Software Development",
    "Wholesale",
)
_ERROR_PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>"


@dataclass
class _Visit:
    """What the middleware learns about one request before recording it."""

    user: int | None = None
    reached_handler: bool = False


def _error(status: int, message: str) -> web.Response:
    """The single-error JSON shape FreeAgent uses for 401/403/404 (reference §7)."""
    return web.json_response({"errors": {"error": {"message": message}}}, status=status)


def _origin(request: web.Request) -> str:
    """Scheme and host the client called us by: contact URLs are built from it."""
    return f"{request.scheme}://{request.host}"


@web.middleware
async def _simulate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request, and put API requests through FreeAgent's gatekeeping."""
    state = request.app[FREEAGENT_STATE]
    state.base_url = state.base_url or _origin(request)
    arrived, visit, status = state.clock(), _Visit(), 500
    response: web.StreamResponse
    try:
        over_ip_limit = _ip_throttled(request, state)
        if over_ip_limit is not None:
            response = over_ip_limit
        elif request.path in OAUTH_PATHS or not request.path.startswith("/v2/"):
            response = await handler(request)
        else:
            response = await _gate(request, handler, state, visit)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        transport = request.transport
        dropped = transport is None or transport.is_closing()
        record = RequestRecord(
            request.method, request.path, status, arrived, visit.user,
            visit.reached_handler, dropped, request.query_string,
        )  # fmt: skip
        state.requests.append(record)


async def _gate(
    request: web.Request, handler: Handler, state: FreeAgentState, visit: _Visit
) -> web.StreamResponse:
    """Apply the API's checks in the order an upstream proxy and Rails would."""
    refusal = (
        _standing_fault(request, state)
        or _random_fault(state)
        or _missing_user_agent(request, state)
    )
    if refusal is not None:
        return refusal
    try:
        visit.user = state.authenticate(_bearer(request))
    except AuthError as exc:
        return _error(401, str(exc))
    refusal = _forbidden(state) or _throttled(request, state, visit.user) or _not_json(request)
    if refusal is not None:
        return refusal
    unmatched = request.match_info.http_exception
    if unmatched is not None:
        return _error(unmatched.status, "Resource not found")
    await _slow_down(request, state)
    visit.reached_handler = True
    odd = state.faults.odd_body()
    if odd is not None:
        return odd
    try:
        answer = await handler(request)
    except ContactError as exc:
        answer = web.json_response(exc.body(), status=exc.status)
    if not _accepts_json(request) or state.faults.xml_due(request.method):
        return as_xml(answer) if isinstance(answer, web.Response) else answer
    return answer


async def _slow_down(request: web.Request, state: FreeAgentState) -> None:
    """Latency after the rate count: FreeAgent counts a request when it arrives."""
    if state.latency > 0:
        await asyncio.sleep(state.latency)
    if state.faults.write_latency > 0 and request.method in {"POST", "PUT", "DELETE"}:
        await asyncio.sleep(state.faults.write_latency)
    if request.method in {"POST", "PUT", "DELETE"}:
        await state.faults.at_gate()


def _accepts_json(request: web.Request) -> bool:
    """Only an Accept naming application/json gets JSON; */* or none gets XML (reference §1)."""
    return "application/json" in request.headers.get("Accept", "").lower()


def _ip_throttled(request: web.Request, state: FreeAgentState) -> web.Response | None:
    """The per-IP limit across every user and path (reference addendum: 1,000 a minute)."""
    throttle = state.admit_ip(request.remote or "unknown")
    if throttle is None:
        return None
    state.count_429 += 1
    headers = {"Retry-After": str(throttle.retry_after)}
    return web.Response(status=429, text=throttle.message, headers=headers)


def _standing_fault(request: web.Request, state: FreeAgentState) -> web.Response | None:
    """The fault_status switch: 5xx as an HTML page (a proxy), 4xx in FreeAgent's JSON."""
    if not state.fault_status or (
        state.fault_methods and request.method not in state.fault_methods
    ):
        return None
    status = state.fault_status
    if status >= 500:
        title = f"{status} Service Unavailable"
        return web.Response(status=status, text=_ERROR_PAGE.format(title), content_type="text/html")
    words = {403: "You are not allowed to access this action.", 404: "Resource not found"}
    return _error(status, words.get(status, "Request refused"))


def _random_fault(state: FreeAgentState) -> web.Response | None:
    """A 502/503 with an HTML page, as an intermediary in front of FreeAgent sends."""
    if state.error_rate <= 0 or state.rng.random() >= state.error_rate:
        return None
    status = state.rng.choice((502, 503))
    title = {502: "502 Bad Gateway", 503: "503 Service Unavailable"}[status]
    return web.Response(status=status, text=_ERROR_PAGE.format(title), content_type="text/html")


def _missing_user_agent(request: web.Request, state: FreeAgentState) -> web.Response | None:
    """FreeAgent requires a User-Agent to identify the app (reference §1)."""
    if not state.require_user_agent or request.headers.get("User-Agent", "").strip():
        return None
    return _error(400, "A User-Agent header identifying your application is required")


def _bearer(request: web.Request) -> str | None:
    """The token from `Authorization: Bearer ...`, if that is the scheme used."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _forbidden(state: FreeAgentState) -> web.Response | None:
    """Level 0 (No Access) users may not use the API at all."""
    if state.permission_level >= 1:
        return None
    return _error(403, "You are not allowed to access this action.")


def _throttled(request: web.Request, state: FreeAgentState, user: int) -> web.Response | None:
    """429 with a plain-text body and Retry-After when injected or over budget."""
    test_mode = request.headers.get("X-RateLimit-Test", "").lower() == "true"
    throttle: Throttle | None = state.take_injected_429() or state.admit(user, test_mode=test_mode)
    if throttle is None:
        return None
    state.count_429 += 1
    headers = {"Retry-After": str(throttle.retry_after)}
    return web.Response(status=429, text=throttle.message, headers=headers)


def _not_json(request: web.Request) -> web.Response | None:
    """Writes with a body must say it is JSON (reference §1)."""
    if request.method not in {"POST", "PUT"} or request.content_type == "application/json":
        return None
    return _error(415, "Content-Type must be application/json")


async def _contact_attributes(request: web.Request) -> Any:
    """The object under the `contact` root element; 400 when the body is not that."""
    try:
        body = await request.json()
    except ValueError:
        raise ContactError(400, ["The request body is not valid JSON"]) from None
    if not isinstance(body, dict) or "contact" not in body:
        raise ContactError(400, ["param is missing or the value is empty: contact"])
    return body["contact"]


def _user(request: web.Request, state: FreeAgentState) -> int:
    """The authorising user of an API request (the gate has accepted its token)."""
    return state.authenticate(_bearer(request))


def _visible(request: web.Request, state: FreeAgentState) -> dict[int, dict[str, Any]]:
    """The contacts of the requesting user's company (all of them: one company by default)."""
    return state.visible_to(_user(request, state)) if state.company_per_user else state.contacts


def _contact_id(request: web.Request, state: FreeAgentState) -> int:
    """The id in the path, if such a contact exists; 404 otherwise (gone_status for one that
    was deleted)."""
    contact_id = int(request.match_info["id"])
    if contact_id not in _visible(request, state):
        gone = contact_id in state.deleted and state.gone_status == 410
        raise (web.HTTPGone if gone else web.HTTPNotFound)(
            text='{"errors":{"error":{"message":"Resource not found"}}}',
            content_type="application/json",
        )
    return contact_id


def _link_header(url: URL, query: ListQuery, total: int, *, endless: bool = False) -> str:
    """Link with single-quoted rels, as the live API sends; no next on the last page.

    The reference's example links carry only page and per_page (§6), so that is all these
    carry (the harsher reading): view, sort and updated_since are the client's to send again.
    """
    last = query.last_page(total)
    base = url.with_query(None)
    rels = []
    if query.page > 1:
        rels.append(("prev", query.page - 1))
    if query.page < last or endless:
        rels.append(("next", query.page + 1))
    rels += [("first", 1), ("last", last)]
    return ", ".join(
        f"<{base.update_query(page=page, per_page=query.per_page)}>; rel='{rel}'"
        for rel, page in rels
    )


async def list_contacts(request: web.Request) -> web.Response:
    """GET /v2/contacts: one page, paging info only in the headers."""
    state = request.app[FREEAGENT_STATE]
    query = ListQuery.parse(request.query)
    ids = select_contacts(
        _visible(request, state), state.invoiced, query,
        all_includes_hidden=state.all_includes_hidden,
    )  # fmt: skip
    origin = _origin(request)
    contacts = [state.render(contact_id, origin) for contact_id in query.page_of(ids)]
    link = _link_header(request.url, query, len(ids), endless=state.faults.endless_pages)
    headers = {"X-Total-Count": str(len(ids)), "Link": link}
    return web.json_response({"contacts": contacts}, headers=headers)


async def create_contact(request: web.Request) -> web.Response:
    """POST /v2/contacts: 201 with Location, unless this create is picked to be dropped.

    A dropped create is stored first and the connection closed instead of answering,
    which is the case a client must not turn into a duplicate by blindly retrying.
    """
    state = request.app[FREEAGENT_STATE]
    attributes = await _contact_attributes(request)
    contact_id = await _commit(state, attributes)
    if contact_id is not None and state.company_per_user:
        state.contact_user[contact_id] = _user(request, state)
    if contact_id is None:
        return state.faults.gateway_timeout()
    contact = state.render(contact_id, _origin(request))
    rate = state.drop_after_create_rate
    if rate > 0 and state.rng.random() < rate and request.transport is not None:
        request.transport.close()  # aiohttp then fails to write the 201 and gives up quietly
    headers = {"Location": contact["url"]}
    return web.json_response({"contact": contact}, status=201, headers=headers)


async def _commit(state: FreeAgentState, attributes: Any) -> int | None:
    """Store the contact now, or as the faults say: later (held or behind a 504), or never.
    None: the client is answered 504 whatever happens to the contact."""
    faults = state.faults
    if faults.take("lost_creates"):
        return None
    if faults.take("gateway_504"):
        faults.commit_later(lambda: state.create_contact(attributes))
        return None
    if faults.commit_delay <= 0:
        return state.create_contact(attributes)
    prepare_changes({}, attributes, state.permission_level)  # validation answers 422 at once
    # Shielded: a client that gives up does not stop the commit (FreeAgent's backend goes on).
    return await asyncio.shield(faults.commit_later(lambda: state.create_contact(attributes)))


async def get_contact(request: web.Request) -> web.Response:
    """GET /v2/contacts/:id, hidden contacts included."""
    state = request.app[FREEAGENT_STATE]
    contact_id = _contact_id(request, state)
    return web.json_response({"contact": state.render(contact_id, _origin(request))})


async def update_contact(request: web.Request) -> web.Response:
    """PUT /v2/contacts/:id: merge the fields sent, same validation as create; 200 with no
    body, as the docs show (put_returns_body: the contact, as SDKs decode it)."""
    state = request.app[FREEAGENT_STATE]
    contact_id = _contact_id(request, state)
    state.update_contact(contact_id, await _contact_attributes(request))
    if not state.put_returns_body:
        return web.Response(status=200)
    return web.json_response({"contact": state.render(contact_id, _origin(request))})


async def delete_contact(request: web.Request) -> web.Response:
    """DELETE /v2/contacts/:id: refused with 403 while the contact has invoices."""
    state = request.app[FREEAGENT_STATE]
    contact_id = _contact_id(request, state)
    if contact_id in state.invoiced:
        return _error(
            state.delete_refused_status,
            "This contact has invoices, estimates, projects or bills and cannot be deleted.",
        )
    state.delete_contact(contact_id)
    return web.Response(status=200)


async def get_company(request: web.Request) -> web.Response:
    """GET /v2/company: the company's settings, id as a number."""
    state = request.app[FREEAGENT_STATE]
    company = {"url": f"{_origin(request)}/v2/company", **state.company}
    return web.json_response({"company": company})


async def get_business_categories(request: web.Request) -> web.Response:
    """GET /v2/company/business_categories: a fixed list of strings."""
    return web.json_response({"business_categories": list(BUSINESS_CATEGORIES)})


async def get_me(request: web.Request) -> web.Response:
    """GET /v2/users/me: the approving user (the token's), whose permission_level gates
    exports. Each OAuth app has a user of its own, so its budget key is its own."""
    state = request.app[FREEAGENT_STATE]
    user_id = state.authenticate(_bearer(request))  # the gate has accepted this token
    user = {
        "url": f"{_origin(request)}/v2/users/{user_id}",
        "first_name": "Demo",
        "last_name": "Director",
        "email": "director@demo-trading.example",
        "role": "Director",
        "permission_level": state.permission_level,
    }
    return web.json_response({"user": user})


def create_app(state: FreeAgentState | None = None) -> web.Application:
    """The simulator as an aiohttp app; pass a state to configure and inspect it."""
    app = web.Application(middlewares=[_simulate])
    app[FREEAGENT_STATE] = state if state is not None else FreeAgentState()
    app.router.add_get("/v2/approve_app", approve_app)
    app.router.add_post("/v2/token_endpoint", token_endpoint)
    app.router.add_get("/v2/contacts", list_contacts)
    app.router.add_post("/v2/contacts", create_contact)
    app.router.add_get(r"/v2/contacts/{id:\d+}", get_contact)
    app.router.add_put(r"/v2/contacts/{id:\d+}", update_contact)
    app.router.add_delete(r"/v2/contacts/{id:\d+}", delete_contact)
    app.router.add_get("/v2/company", get_company)
    app.router.add_get("/v2/company/business_categories", get_business_categories)
    app.router.add_get("/v2/users/me", get_me)
    return app


__all__ = ["FREEAGENT_STATE", "ContactError", "FreeAgentState", "RequestRecord", "create_app"]
