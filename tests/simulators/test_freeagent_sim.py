"""The FreeAgent simulator behaves as the reference says the live API does."""

from __future__ import annotations

from base64 import b64encode
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from simulators.freeagent import FREEAGENT_STATE, FreeAgentState, create_app
from tests.fakes import FakeClock


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An HTTP Basic header built by hand: aiohttp's BasicAuth is deprecated."""
    encoded = b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


CLIENT_AUTH = basic("demo-client", "demo-secret")
REDIRECT = "https://app.example/callback"
Client = TestClient[web.Request, web.Application]


@dataclass
class FakeWallClock:
    """A UTC wall clock tests move by hand, for created_at/updated_at."""

    now: datetime = datetime(2026, 8, 16, 12, 43, 38, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wall() -> FakeWallClock:
    return FakeWallClock()


@pytest.fixture
def state(clock: FakeClock, wall: FakeWallClock) -> FreeAgentState:
    return FreeAgentState(clock=clock, wall_clock=wall)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, state: FreeAgentState) -> Client:
    return await aiohttp_client(create_app(state))


@pytest.fixture
def auth(state: FreeAgentState) -> dict[str, str]:
    access, _ = state.issue_tokens()
    return {"Authorization": f"Bearer {access}", "Accept": "application/json"}


async def create(client: Client, auth: dict[str, str], **contact: Any) -> Any:
    return await client.post("/v2/contacts", json={"contact": contact}, headers=auth)


async def token(client: Client, **form: str) -> Any:
    return await client.post("/v2/token_endpoint", data=form, headers=CLIENT_AUTH)


async def approve(client: Client, **params: str) -> Any:
    query = {"client_id": "demo-client", "response_type": "code", "redirect_uri": REDIRECT}
    return await client.get("/v2/approve_app", params={**query, **params}, allow_redirects=False)


async def code_for(client: Client) -> str:
    response = await approve(client)
    return URL(response.headers["Location"]).query["code"]


# -- OAuth -----------------------------------------------------------------------------


async def test_approve_redirects_with_code_and_state(client: Client) -> None:
    """approve_app auto-approves: 302 to the redirect URI with a code and the same state."""
    response = await approve(client, state="xyz")
    location = URL(response.headers["Location"])
    assert response.status == 302
    assert str(location.with_query(None)) == REDIRECT
    assert location.query["state"] == "xyz" and location.query["code"]


async def test_approve_refuses_unknown_client(client: Client) -> None:
    """An unknown client_id gets 400, not a redirect."""
    response = await approve(client, client_id="nobody")
    assert response.status == 400


async def test_approve_enforces_registered_redirect_uris(
    client: Client, state: FreeAgentState
) -> None:
    """Once a client registers redirect URIs, any other redirect_uri is refused."""
    state.redirect_uris["demo-client"] = {"https://other.example/cb"}
    response = await approve(client)
    assert response.status == 400


async def test_code_exchange_returns_bearer_tokens(client: Client) -> None:
    """A code buys an access token that works on the API and a refresh token."""
    code = await code_for(client)
    response = await token(
        client, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    body = await response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] and body["refresh_token_expires_in"] == 631151957
    me = await client.get(
        "/v2/users/me",
        headers={"Authorization": f"Bearer {body['access_token']}", "Accept": "application/json"},
    )
    assert me.status == 200


async def assert_refused_code(response: aiohttp.ClientResponse, as_401: bool) -> None:
    """A refused code: 401 "HTTP Basic: Access denied." (observed), or 400 invalid_grant."""
    if as_401:
        assert response.status == 401
        assert await response.text() == "HTTP Basic: Access denied."
    else:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_grant"


@pytest.mark.parametrize("as_401", [True, False])
async def test_code_is_single_use(client: Client, state: FreeAgentState, as_401: bool) -> None:
    """A second exchange of the same code is refused, in either form of refusal."""
    state.refused_grants_401 = as_401
    code = await code_for(client)
    await token(client, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    response = await token(
        client, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    await assert_refused_code(response, as_401)


def test_refused_grants_answer_401_unless_switched_off() -> None:
    """The harsher, observed form (401) is what the simulator answers by default."""
    assert FreeAgentState().refused_grants_401


@pytest.mark.parametrize("as_401", [True, False])
async def test_code_expires(
    client: Client, state: FreeAgentState, clock: FakeClock, as_401: bool
) -> None:
    """A code older than auth_code_ttl is refused."""
    state.refused_grants_401 = as_401
    code = await code_for(client)
    clock.now += 901
    response = await token(
        client, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    await assert_refused_code(response, as_401)


@pytest.mark.parametrize("as_401", [True, False])
async def test_code_exchange_needs_matching_redirect_uri(
    client: Client, state: FreeAgentState, as_401: bool
) -> None:
    """The redirect_uri sent at approval must be repeated at exchange."""
    state.refused_grants_401 = as_401
    code = await code_for(client)
    response = await token(client, grant_type="authorization_code", code=code, redirect_uri="x:/")
    await assert_refused_code(response, as_401)


async def test_bad_client_credentials_are_denied(client: Client) -> None:
    """Wrong Basic credentials get 401 with FreeAgent's plain-text body."""
    response = await client.post(
        "/v2/token_endpoint",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers=basic("demo-client", "wrong"),
    )
    assert response.status == 401
    assert await response.text() == "HTTP Basic: Access denied."


@pytest.mark.parametrize(("as_401", "status"), [(True, 401), (False, 400)])
async def test_refresh_rotates_and_rejects_reuse(
    client: Client, state: FreeAgentState, as_401: bool, status: int
) -> None:
    """Each refresh returns a new refresh token; the old one is then invalid_grant (401 by
    default, 400 with refused_grants_401 off)."""
    state.refused_grants_401 = as_401
    _, old = state.issue_tokens()
    first = await (await token(client, grant_type="refresh_token", refresh_token=old)).json()
    reused = await token(client, grant_type="refresh_token", refresh_token=old)
    assert first["refresh_token"] != old
    assert reused.status == status and (await reused.json())["error"] == "invalid_grant"
    assert state.reused_refresh_token_attempts == 1 and state.refresh_count == 1


@pytest.mark.parametrize("revoke", [True, False])
async def test_refresh_ends_the_access_token_issued_with_it(
    client: Client, state: FreeAgentState, revoke: bool
) -> None:
    """A refresh ends the access token issued beside the refresh token it spends (the harsher
    reading, revoke_access_on_refresh); another pair's access token lives on. Off: both live."""
    state.revoke_access_on_refresh = revoke
    access, refresh = state.issue_tokens()
    other, _ = state.issue_tokens()
    body = await (await token(client, grant_type="refresh_token", refresh_token=refresh)).json()
    statuses = []
    for bearer in (access, other, body["access_token"]):
        headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
        statuses.append((await client.get("/v2/company", headers=headers)).status)
    assert statuses == [401 if revoke else 200, 200, 200]


async def test_refresh_cap_is_enforced(client: Client, state: FreeAgentState) -> None:
    """Past refresh_per_minute refreshes in a window the token endpoint answers 429."""
    state.refresh_per_minute = 2
    _, refresh = state.issue_tokens()
    for _ in range(2):
        body = await (await token(client, grant_type="refresh_token", refresh_token=refresh)).json()
        refresh = body["refresh_token"]
    response = await token(client, grant_type="refresh_token", refresh_token=refresh)
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1


# -- API gatekeeping -----------------------------------------------------------------------


async def test_api_needs_a_token(client: Client) -> None:
    """No bearer token: 401 with the single-error JSON body."""
    response = await client.get("/v2/contacts")
    assert response.status == 401
    assert (await response.json())["errors"]["error"]["message"]


async def test_expired_token_says_expired(
    client: Client, auth: dict[str, str], clock: FakeClock
) -> None:
    """An access token past its TTL gets 401 saying it expired."""
    clock.now += 3601
    response = await client.get("/v2/contacts", headers=auth)
    assert response.status == 401
    assert "expired" in (await response.json())["errors"]["error"]["message"]


async def test_user_agent_is_required(client: Client, auth: dict[str, str]) -> None:
    """A request without User-Agent is refused with 400."""
    response = await client.get("/v2/contacts", headers=auth, skip_auto_headers=["User-Agent"])
    assert response.status == 400


async def test_minute_limit_gives_429_with_retry_after(
    client: Client, auth: dict[str, str], state: FreeAgentState, clock: FakeClock
) -> None:
    """Over per_minute, 429 with a plain-text body and seconds left in the fixed window."""
    state.per_minute = 2
    clock.now += 20  # 40 s left in the first window
    for _ in range(2):
        assert (await client.get("/v2/company", headers=auth)).status == 200
    response = await client.get("/v2/company", headers=auth)
    assert response.status == 429 and response.headers["Retry-After"] == "40"
    assert await response.text() == "You must not exceed 2 requests per 60 seconds"


async def test_window_resets_at_boundary(
    client: Client, auth: dict[str, str], state: FreeAgentState, clock: FakeClock
) -> None:
    """Fixed windows: the budget comes back when the window ends, not a minute after the 429."""
    state.per_minute = 1
    await client.get("/v2/company", headers=auth)
    clock.now += 60
    assert (await client.get("/v2/company", headers=auth)).status == 200


async def test_retry_after_scale_speaks_of_full_size_windows(
    client: Client, auth: dict[str, str], state: FreeAgentState, clock: FakeClock
) -> None:
    """With windows shrunk 20 times, Retry-After is the time left times 20, rounded up."""
    state.per_minute, state.minute_window, state.retry_after_scale = 1, 3.0, 20.0
    clock.now += 0.5  # 2.5 s left in the first 3-second window: 50 s of a real minute
    await client.get("/v2/company", headers=auth)
    response = await client.get("/v2/company", headers=auth)
    assert response.status == 429 and response.headers["Retry-After"] == "50"


async def test_hour_limit_applies(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """The hour budget is enforced on its own."""
    state.per_hour = 1
    await client.get("/v2/company", headers=auth)
    response = await client.get("/v2/company", headers=auth)
    assert response.status == 429 and response.headers["Retry-After"] == "3600"


async def test_rate_limit_test_header_lowers_limit(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """X-RateLimit-Test: true allows only test_mode_per_minute requests."""
    headers = {**auth, "X-RateLimit-Test": "true"}
    statuses = [(await client.get("/v2/company", headers=headers)).status for _ in range(6)]
    assert statuses == [200] * 5 + [429]


async def test_injected_429_is_not_a_write(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """inject_429 refuses the next requests with its Retry-After; they count as 429s only."""
    state.inject_429(1, retry_after=7)
    response = await create(client, auth, organisation_name="Acme")
    assert response.status == 429 and response.headers["Retry-After"] == "7"
    assert state.count_429 == 1 and state.write_count() == 0 and not state.contacts


async def test_write_count_counts_contact_writes(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """POST, PUT and DELETE on contacts count; reads do not."""
    url = (await (await create(client, auth, organisation_name="Acme")).json())["contact"]["url"]
    path = URL(url).path
    await client.put(path, json={"contact": {"town": "Leeds"}}, headers=auth)
    await client.get(path, headers=auth)
    await client.delete(path, headers=auth)
    assert state.write_count() == 3


async def test_error_rate_gives_html_5xx(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """With error_rate 1 every API request is a 502/503 with an HTML body."""
    state.error_rate = 1.0
    response = await client.get("/v2/contacts", headers=auth)
    assert response.status in {502, 503} and response.content_type == "text/html"


async def test_faults_are_reproducible_from_seed(aiohttp_client: AiohttpClient) -> None:
    """Two simulators with the same seed fail the same requests."""
    runs = []
    for _ in range(2):
        state = FreeAgentState(error_rate=0.5, seed=42)
        client = await aiohttp_client(create_app(state))
        headers = {"Authorization": f"Bearer {state.issue_tokens()[0]}"}
        runs.append([(await client.get("/v2/company", headers=headers)).status for _ in range(12)])
    assert runs[0] == runs[1] and len(set(runs[0])) > 1


async def test_dropped_create_is_stored_but_unanswered(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """drop_after_create stores the contact, then the client sees a disconnect, not a 201."""
    state.drop_after_create_rate = 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await create(client, auth, organisation_name="Acme")
    assert [c["organisation_name"] for c in state.contacts_list()] == ["Acme"]
    assert state.write_count() == 1 and state.requests[-1].dropped


# -- contacts ----------------------------------------------------------------------------------


async def test_create_returns_201_with_location(client: Client, auth: dict[str, str]) -> None:
    """A create answers 201, Location and the stored contact with defaults, empty fields omitted."""
    response = await create(client, auth, organisation_name="Acme", email="a@acme.example")
    contact = (await response.json())["contact"]
    assert response.status == 201 and response.headers["Location"] == contact["url"]
    assert contact["url"] == str(client.make_url("/v2/contacts/1"))
    assert contact["status"] == "Active" and contact["charge_sales_tax"] == "Auto"
    assert contact["country"] == "United Kingdom" and contact["account_balance"] == "0.0"
    assert contact["created_at"] == "2026-08-16T12:43:38.000Z"
    assert "first_name" not in contact and None not in contact.values()


async def test_create_needs_a_name(client: Client, auth: dict[str, str]) -> None:
    """Without organisation_name, both first and last name are required (422 list)."""
    response = await create(client, auth, first_name="Ada")
    assert response.status == 422
    assert await response.json() == {"errors": [{"message": "Last name can't be blank"}]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "Archived"),  # only Active/Hidden exist
        ("charge_sales_tax", "Sometimes"),  # only Auto/Always/Never
        ("locale", "en-GB"),  # not in FreeAgent's locale list
        ("locale", "fr_FR"),  # Magento's spelling, not FreeAgent's (fr)
        ("locale", "cs"),  # ISO Czech: FreeAgent spells it cz
        ("locale", "nb"),  # ISO Norwegian: FreeAgent spells it nk
        ("locale", "en-us"),  # FreeAgent's codes are case-sensitive (harsher reading)
        ("default_payment_terms_in_days", "30"),  # must be an integer, not a string
        ("country", "GB"),  # English names, not ISO codes
        ("email", "not-an-email"),  # malformed address
        ("town", "x" * 256),  # over the 255-character column
    ],
)
async def test_create_rejects_invalid_values(
    client: Client, auth: dict[str, str], field: str, value: Any
) -> None:
    """Invalid attribute values are 422 validation errors."""
    response = await create(client, auth, organisation_name="Acme", **{field: value})
    assert response.status == 422


async def test_create_rejects_read_only_fields(client: Client, auth: dict[str, str]) -> None:
    """Read-only or unknown attributes are refused with 400 unpermitted parameters."""
    response = await create(client, auth, organisation_name="Acme", url="x", account_balance="1")
    body = await response.json()
    assert response.status == 400
    assert (
        body["errors"]["error"]["message"] == "found unpermitted parameters: url, account_balance"
    )


async def test_create_needs_json(client: Client, auth: dict[str, str]) -> None:
    """A write that is not application/json is refused."""
    response = await client.post("/v2/contacts", data={"contact": "x"}, headers=auth)
    assert response.status == 415


async def test_country_names_are_accepted(client: Client, auth: dict[str, str]) -> None:
    """An English name spelt as FreeAgent spells it is stored as sent."""
    response = await create(client, auth, organisation_name="Acme", country="United States")
    assert (await response.json())["contact"]["country"] == "United States"


@pytest.mark.parametrize(
    "country",
    [
        "Czechia",  # FreeAgent's list says "Czech Republic" (reference addendum)
        "The Netherlands",  # FreeAgent's list says "Netherlands"
        "Kingdom of the Netherlands",  # an official name, not FreeAgent's spelling
        "united kingdom",  # accepted spellings unverified (§4): case is not forgiven
        "GB",  # an ISO code, not a name (§4)
        # ISO's formal names where a common English one exists: one spelling per country
        "Korea, Republic of",
        "Viet Nam",
        "Türkiye",
        "Russian Federation",
        "Iran, Islamic Republic of",
        "United States of America",
    ],
)
async def test_country_spellings_outside_freeagents_list_are_422(
    client: Client, auth: dict[str, str], country: str
) -> None:
    """A country not spelt as FreeAgent's own list spells it is a 422."""
    response = await create(client, auth, organisation_name="Acme", country=country)
    assert response.status == 422
    assert "Country" in (await response.json())["errors"][0]["message"]


async def test_two_comma_separated_emails_are_422(client: Client, auth: dict[str, str]) -> None:
    """One e-mail per field: two comma-separated addresses are refused (§11, unverified)."""
    response = await create(client, auth, organisation_name="Acme", email="a@x.com, b@x.com")
    assert response.status == 422


async def test_unknown_contact_is_404(client: Client, auth: dict[str, str]) -> None:
    """An unknown id is 404 with the single-error body."""
    response = await client.get("/v2/contacts/999", headers=auth)
    assert response.status == 404
    assert await response.json() == {"errors": {"error": {"message": "Resource not found"}}}


async def test_update_merges_and_bumps_updated_at(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """PUT changes only the fields sent and moves updated_at; null clears a field."""
    url = state.add_contact({"organisation_name": "Acme", "town": "Leeds", "postcode": "LS1"})
    wall.now += timedelta(seconds=5)
    body = {"contact": {"town": "York", "postcode": None}}
    response = await client.put(URL(url).path, json=body, headers=auth)
    assert response.status == 200
    contact = (await (await client.get(URL(url).path, headers=auth)).json())["contact"]
    assert (contact["organisation_name"], contact["town"]) == ("Acme", "York")
    assert "postcode" not in contact and contact["updated_at"] == "2026-08-16T12:43:43.000Z"


async def test_update_validates_the_result(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """PUT cannot leave a contact without a name."""
    url = state.add_contact({"organisation_name": "Acme"})
    body = {"contact": {"organisation_name": ""}}
    response = await client.put(URL(url).path, json=body, headers=auth)
    assert response.status == 422


async def test_delete_removes_contact(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """DELETE answers 200 and the contact is gone."""
    path = URL(state.add_contact({"organisation_name": "Acme"})).path
    assert (await client.delete(path, headers=auth)).status == 200
    assert (await client.get(path, headers=auth)).status == 404


async def test_a_deleted_contact_answers_the_gone_status(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """gone_status 410: a deleted contact answers 410 Gone to GET, PUT and DELETE; an id that
    never existed is still 404."""
    state.gone_status = 410
    path = URL(state.add_contact({"organisation_name": "Acme"})).path
    assert (await client.delete(path, headers=auth)).status == 200
    body = {"contact": {"organisation_name": "Back"}}
    assert (await client.get(path, headers=auth)).status == 410
    assert (await client.put(path, json=body, headers=auth)).status == 410
    assert (await client.delete(path, headers=auth)).status == 410
    assert (await client.get("/v2/contacts/999", headers=auth)).status == 404


async def test_delete_refused_with_invoices(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """A contact with invoices cannot be deleted: 403, and it stays."""
    path = URL(state.add_contact({"organisation_name": "Acme"}, has_invoices=True)).path
    assert (await client.delete(path, headers=auth)).status == 403
    assert len(state.contacts) == 1


async def test_details_hidden_below_level_three(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """Users below permission level 3 do not see email or address fields."""
    state.add_contact({"organisation_name": "Acme", "email": "a@acme.example"})
    state.permission_level = 2
    contact = (await (await client.get("/v2/contacts/1", headers=auth)).json())["contact"]
    assert "email" not in contact and "country" not in contact


# -- listing ---------------------------------------------------------------------------------


def seed(state: FreeAgentState, wall: FakeWallClock, *names: str) -> None:
    for name in names:
        state.add_contact({"organisation_name": name})
        wall.now += timedelta(minutes=1)


async def list_of(client: Client, auth: dict[str, str], **params: Any) -> Any:
    return await client.get("/v2/contacts", params=params, headers=auth)


async def test_list_pages_with_single_quoted_links(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """Paging info is in X-Total-Count and a Link header with rel='...' in single quotes."""
    seed(state, wall, "A", "B", "C")
    response = await list_of(client, auth, page=2, per_page=2)
    assert [c["organisation_name"] for c in (await response.json())["contacts"]] == ["C"]
    assert response.headers["X-Total-Count"] == "3"
    link = response.headers["Link"]
    assert "page=1&per_page=2>; rel='prev'" in link and "rel='last'" in link
    assert "rel='next'" not in link and '"' not in link


async def test_first_page_links_to_next(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """A page before the last has rel='next' pointing at the following page."""
    seed(state, wall, "A", "B", "C")
    response = await list_of(client, auth, per_page=2)
    assert "page=2&per_page=2>; rel='next'" in response.headers["Link"]


async def test_links_carry_only_page_and_per_page(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """The reference's example links carry page and per_page only (§6): view, sort and
    updated_since are left out (the harsher reading), so a client must send them again."""
    seed(state, wall, "A", "B", "C")
    response = await list_of(
        client, auth, view="all", sort="-updated_at", updated_since="2026-01-01T00:00:00Z",
        per_page=1,
    )  # fmt: skip
    link = response.headers["Link"]
    assert "rel='next'" in link
    for target in link.split(", "):
        query = URL(target.split(">")[0].lstrip("<")).query
        assert set(query) == {"page", "per_page"}, target
    assert state.requests[-1].query == response.url.query_string


async def test_per_page_is_clamped(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """per_page above 100 is treated as 100."""
    seed(state, wall, *[f"C{i:03d}" for i in range(101)])
    response = await list_of(client, auth, per_page=500)
    assert len((await response.json())["contacts"]) == 100


async def test_default_view_hides_hidden(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """view=active is the default and leaves out Hidden contacts; view=hidden lists them."""
    state.add_contact({"organisation_name": "Shown"})
    state.add_contact({"organisation_name": "Gone", "status": "Hidden"})
    default = (await (await list_of(client, auth)).json())["contacts"]
    hidden = (await (await list_of(client, auth, view="hidden")).json())["contacts"]
    assert [c["organisation_name"] for c in default] == ["Shown"]
    assert [c["organisation_name"] for c in hidden] == ["Gone"]


async def test_view_all_leaves_out_hidden_contacts(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """view=all may not include Hidden contacts (§9.5, §11): the harsher reading by default."""
    state.add_contact({"organisation_name": "Shown"})
    state.add_contact({"organisation_name": "Gone", "status": "Hidden"})
    everything = (await (await list_of(client, auth, view="all")).json())["contacts"]
    assert [c["organisation_name"] for c in everything] == ["Shown"]
    state.all_includes_hidden = True
    everything = (await (await list_of(client, auth, view="all")).json())["contacts"]
    assert len(everything) == 2


async def test_unknown_view_is_400(client: Client, auth: dict[str, str]) -> None:
    """An unknown view is a bad request, not an empty list."""
    assert (await list_of(client, auth, view="everyone")).status == 400


async def test_updated_since_filters(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """updated_since returns contacts updated at or after the given time."""
    seed(state, wall, "Old", "New")
    since = "2026-08-16T12:44:00Z"
    contacts = (await (await list_of(client, auth, updated_since=since)).json())["contacts"]
    assert [c["organisation_name"] for c in contacts] == ["New"]


async def test_unknown_list_parameters_are_ignored(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """No e-mail or name filter exists (reference addendum): such a "lookup" lists everyone."""
    state.add_contact({"organisation_name": "Acme", "email": "a@acme.example"})
    state.add_contact({"organisation_name": "Bolt", "email": "b@bolt.example"})
    response = await list_of(client, auth, view="all", email="a@acme.example", name="Acme")
    contacts = (await response.json())["contacts"]
    assert response.status == 200 and response.headers["X-Total-Count"] == "2"
    assert sorted(c["email"] for c in contacts) == ["a@acme.example", "b@bolt.example"]


async def test_unparseable_updated_since_is_400(client: Client, auth: dict[str, str]) -> None:
    """A malformed updated_since is refused rather than ignored."""
    assert (await list_of(client, auth, updated_since="last tuesday")).status == 400


async def test_sort_descending_by_created_at(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """sort=-created_at lists newest first; the default sorts by name."""
    seed(state, wall, "B", "A", "C")
    newest = (await (await list_of(client, auth, sort="-created_at")).json())["contacts"]
    by_name = (await (await list_of(client, auth)).json())["contacts"]
    assert [c["organisation_name"] for c in newest] == ["C", "A", "B"]
    assert [c["organisation_name"] for c in by_name] == ["A", "B", "C"]


# -- company and user ------------------------------------------------------------------------


async def test_company_and_user_shapes(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """Company has a numeric id and GBP; users/me reports the permission level."""
    company = (await (await client.get("/v2/company", headers=auth)).json())["company"]
    user = (await (await client.get("/v2/users/me", headers=auth)).json())["user"]
    categories = await client.get("/v2/company/business_categories", headers=auth)
    assert company["id"] == 1 and company["currency"] == "GBP"
    assert company["type"] == "UkLimitedCompany"
    assert user["permission_level"] == 8
    assert (await categories.json())["business_categories"]


async def test_state_is_reachable_from_app() -> None:
    """create_app() without a state builds a default one under FREEAGENT_STATE."""
    app = create_app()
    assert app[FREEAGENT_STATE].clients == {"demo-client": "demo-secret"}


# -- harsher readings of what the reference leaves open ----------------------------------------


async def test_put_answers_without_a_body(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """PUT answers 200 with no body, as the docs show (§5); the switch restores the SDKs' view."""
    path = URL(state.add_contact({"organisation_name": "Acme"})).path
    body = {"contact": {"town": "York"}}
    response = await client.put(path, json=body, headers=auth)
    assert response.status == 200 and await response.read() == b""
    state.put_returns_body = True
    response = await client.put(path, json=body, headers=auth)
    assert (await response.json())["contact"]["town"] == "York"


async def test_without_accept_json_the_answer_is_xml(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """FreeAgent speaks JSON or XML (§1): without Accept: application/json it answers XML."""
    headers = {**auth, "Accept": "*/*"}
    response = await client.get("/v2/company", headers=headers)
    assert response.status == 200 and response.content_type == "application/xml"
    assert "<name>Demo Trading Ltd</name>" in await response.text()


async def test_xml_fault_answers_xml_after_acting(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """xml_responses: XML despite Accept JSON ([F579], §7); the create is stored, Location kept."""
    state.faults.xml_responses = 1
    response = await create(client, auth, organisation_name="Acme")
    assert response.status == 201 and response.content_type == "application/xml"
    assert response.headers["Location"].endswith("/v2/contacts/1")
    assert len(state.contacts) == 1


async def test_per_ip_limit_spans_users_and_oauth(
    client: Client, auth: dict[str, str], state: FreeAgentState
) -> None:
    """1,000 requests a minute per IP (addendum): counted across users and the token endpoint."""
    state.per_ip_per_minute = 3
    state.clients["other-client"] = "other-secret"
    access, _ = state.issue_tokens("other-client")
    other = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
    assert (await client.get("/v2/company", headers=auth)).status == 200
    assert (await client.get("/v2/company", headers=other)).status == 200
    assert (await token(client, grant_type="refresh_token", refresh_token="x")).status == 401
    response = await client.get("/v2/company", headers=auth)
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    assert await response.text() == "You must not exceed 3 requests per 60 seconds"


async def test_updated_since_is_strictly_after(
    client: Client, auth: dict[str, str], state: FreeAgentState, wall: FakeWallClock
) -> None:
    """updated_since semantics are undocumented (§5): a contact updated at that moment is out."""
    seed(state, wall, "Exact")
    since = "2026-08-16T12:43:38.000Z"
    contacts = (await (await list_of(client, auth, updated_since=since)).json())["contacts"]
    assert contacts == []


@pytest.mark.parametrize("status", [403, 409, 422])
async def test_delete_refusal_status_is_a_switch(
    client: Client, auth: dict[str, str], state: FreeAgentState, status: int
) -> None:
    """Deleting a contact with invoices is refused; the status is undocumented (§5, VERIFY)."""
    state.delete_refused_status = status
    path = URL(state.add_contact({"organisation_name": "Acme"}, has_invoices=True)).path
    assert (await client.delete(path, headers=auth)).status == status
    assert (await client.get(path, headers=auth)).status == 200


@pytest.mark.parametrize("per_user", [False, True])
async def test_company_per_user_keeps_each_users_contacts_apart(
    client: Client, auth: dict[str, str], state: FreeAgentState, per_user: bool
) -> None:
    """company_per_user (many-shops benchmarks): another user neither lists nor reads the first
    user's contacts; off, every user sees one company's contacts."""
    state.company_per_user = per_user
    state.clients["other-client"] = "other-secret"
    other = {"Authorization": f"Bearer {state.issue_tokens('other-client')[0]}",
             "Accept": "application/json"}  # fmt: skip
    created = await create(client, auth, organisation_name="Acme")
    assert created.status == 201
    path = URL(created.headers["Location"]).path
    listed = await (await client.get("/v2/contacts", headers=other)).json()
    assert len(listed["contacts"]) == (0 if per_user else 1)
    assert (await client.get(path, headers=other)).status == (404 if per_user else 200)
    assert (await client.get(path, headers=auth)).status == 200
    assert len((await (await client.get("/v2/contacts", headers=auth)).json())["contacts"]) == 1
