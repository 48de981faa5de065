"""FreeAgentClient: contacts, paging, the create rule, 401 refresh, the shared budget."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from daemon.clients.freeagent import parse_link_header
from daemon.clients.transport import Response, Transport
from daemon.db.records import RATE_LIMIT_TEST_PER_MINUTE
from daemon.errors import (
    ApiError,
    EndpointError,
    OutcomeUnknown,
    RejectedRecord,
    TransientApiError,
)
from daemon.resources import ClientFactory
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from tests.fakes import FakeClock, FakeNow

from .conftest import BOX, FreeAgentRig, MakeFreeAgent, SleepRecorder


@pytest.mark.parametrize(
    "header",
    [
        # the live API quotes rels with single quotes
        "<https://api.example/v2/contacts?page=1>; rel='first', "
        "<https://api.example/v2/contacts?page=3>; rel='next'",
        # the documentation uses double quotes
        '<https://api.example/v2/contacts?page=3>; rel="next", '
        '<https://api.example/v2/contacts?page=9>; rel="last"',
        # several rels in one link, unquoted
        "<https://api.example/v2/contacts?page=3>; rel=next",
    ],
)
def test_link_header_next_is_found_in_either_quote_style(header: str) -> None:
    """rel=next is read whatever the quoting."""
    assert parse_link_header([header])["next"] == "https://api.example/v2/contacts?page=3"


def test_link_header_without_next_means_last_page() -> None:
    """The last page has no next link."""
    assert "next" not in parse_link_header(["<https://a/v2/contacts?page=1>; rel='first'"])


async def test_link_paging_returns_every_contact_once(make_freeagent: MakeFreeAgent) -> None:
    """Following rel=next yields each of 23 contacts exactly once, 5 per page, then one
    catch-up request finds nothing changed since the first page."""
    now = FakeNow()
    freeagent = await make_freeagent(FreeAgentState(wall_clock=now))
    names = {f"Company {i:02d}" for i in range(23)}
    for name in sorted(names):
        freeagent.state.add_contact({"organisation_name": name})
        now.advance(60)
    seen = [c async for c in freeagent.client.iter_contacts(per_page=5)]
    assert sorted(c["organisation_name"] for c in seen) == sorted(names)
    assert len({c["url"] for c in seen}) == 23
    assert freeagent.requests("GET", "/v2/contacts") == 5 + 1


async def test_create_returns_the_contact_with_its_url(freeagent: FreeAgentRig) -> None:
    """A created contact comes back with the absolute URL FreeAgent gave it."""
    contact = await freeagent.client.create_contact({"organisation_name": "Acme Ltd"})
    assert contact["url"].startswith(str(freeagent.server.make_url("/v2/contacts/")))
    assert await freeagent.client.get_contact(contact["url"]) == contact


async def test_create_is_not_retried_after_a_dropped_connection(
    make_freeagent: MakeFreeAgent,
) -> None:
    """A create whose answer is lost raises TransientApiError and is not sent again."""
    rig = await make_freeagent(FreeAgentState(drop_after_create_rate=1.0))
    with pytest.raises(TransientApiError) as info:
        await rig.client.create_contact({"organisation_name": "Maybe Ltd"})
    assert "reconcile" in str(info.value)
    assert len(rig.state.contacts) == 1
    assert rig.requests("POST", "/v2/contacts") == 1


async def test_create_is_not_retried_after_a_5xx(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """A 5xx to a create is ambiguous, so it goes back to the caller untried."""
    freeagent.state.error_rate = 1.0
    with pytest.raises(TransientApiError):
        await freeagent.client.create_contact({"organisation_name": "Maybe Ltd"})
    assert freeagent.requests("POST", "/v2/contacts") == 1
    assert sleeps.waits == []


async def test_create_is_retried_after_a_429(freeagent: FreeAgentRig) -> None:
    """A 429 was not processed, so the create is repeated and stores one contact."""
    freeagent.state.inject_429(1, retry_after=1)
    await freeagent.client.create_contact({"organisation_name": "Patient Ltd"})
    assert freeagent.requests("POST", "/v2/contacts") == 2
    assert len(freeagent.state.contacts) == 1


async def test_429_blocks_the_shared_budget(freeagent: FreeAgentRig) -> None:
    """Retry-After is written to the user's budget so every replica pauses."""
    freeagent.state.inject_429(1, retry_after=1)
    await freeagent.client.users_me()
    blocked = await freeagent.budget.pool.fetchval(
        "SELECT blocked_until FROM rate_budget WHERE budget_key = $1", freeagent.budget.key
    )
    assert blocked is not None


async def test_expired_token_401_refreshes_once_and_retries(make_freeagent: MakeFreeAgent) -> None:
    """A 401 for an expired token triggers one refresh and the request then succeeds."""
    clock = FakeClock()
    rig = await make_freeagent(FreeAgentState(clock=clock))
    await rig.client.company()
    clock.now += 7200  # FreeAgent considers the token expired; our copy still looks valid
    company = await rig.client.company()
    assert company["name"] == "Demo Trading Ltd"
    assert rig.state.refresh_count == 1
    assert [r.status for r in rig.state.requests if r.path == "/v2/company"] == [200, 401, 200]


async def test_requests_identify_the_app(freeagent: FreeAgentRig) -> None:
    """The simulator refuses requests without User-Agent; ours pass."""
    assert freeagent.state.require_user_agent
    assert await freeagent.client.business_categories()


async def test_rate_limit_test_budget_paces_requests_without_a_429(
    make_freeagent: MakeFreeAgent, pool: asyncpg.Pool, transport: Transport, settings: Settings
) -> None:
    """With rate_limit_test the budget spends FreeAgent's test limit (5 a window), not the
    row's 120: a burst of requests is paced across windows and earns no 429."""
    window = 0.5
    rig = await make_freeagent(FreeAgentState(minute_window=window), rate_limit_test=True)
    assert rig.row.rate_limit_per_minute == 120
    factory = ClientFactory(
        pool=pool,
        settings=settings.model_copy(update={"rate_minute_window": window}),
        transport=transport,
        secrets=BOX,
    )
    client = await factory.freeagent(rig.row.id)
    assert client.budget.per_minute == RATE_LIMIT_TEST_PER_MINUTE
    for _ in range(RATE_LIMIT_TEST_PER_MINUTE + 1):
        assert await client.business_categories()
    sent = [r for r in rig.state.requests if r.path == "/v2/company/business_categories"]
    assert rig.state.count_429 == 0
    assert [r.status for r in sent] == [200] * (RATE_LIMIT_TEST_PER_MINUTE + 1)
    assert sent[-1].time - sent[0].time >= window  # the last waited for a later window


async def test_contact_urls_outside_the_api_are_refused(freeagent: FreeAgentRig) -> None:
    """The bearer token is never sent to a URL outside the client's API root."""
    with pytest.raises(RejectedRecord):
        await freeagent.client.update_contact("https://evil.example/other/contacts/1", {"x": 1})
    assert freeagent.state.requests == []


async def test_contact_urls_naming_another_host_go_to_the_configured_api(
    freeagent: FreeAgentRig,
) -> None:
    """A contact URL with another host name is sent to the configured API host, token and all."""
    contact = await freeagent.client.create_contact({"organisation_name": "Moved Ltd"})
    path = contact["url"].split("/v2/", 1)[1]
    await freeagent.client.update_contact(
        f"https://evil.example/v2/{path}", {"organisation_name": "Renamed Ltd"}
    )
    assert (await freeagent.client.get_contact(contact["url"]) or {})["organisation_name"] == (
        "Renamed Ltd"
    )
    assert all(r.path.startswith("/v2/") for r in freeagent.state.requests)


async def test_hide_sets_status_hidden(freeagent: FreeAgentRig) -> None:
    """hide_contact leaves the contact in FreeAgent with status Hidden."""
    contact = await freeagent.client.create_contact({"organisation_name": "Old Ltd"})
    await freeagent.client.hide_contact(contact["url"])
    assert (await freeagent.client.get_contact(contact["url"]) or {})["status"] == "Hidden"


@pytest.mark.parametrize("status", [403, 409, 422])
async def test_delete_falls_back_to_hide_when_refused(freeagent: FreeAgentRig, status: int) -> None:
    """A contact with invoices cannot be deleted (403 observed; the status is undocumented,
    reference §5), so it is hidden instead."""
    freeagent.state.delete_refused_status = status
    url = freeagent.state.add_contact({"organisation_name": "Billed Ltd"}, has_invoices=True)
    assert await freeagent.client.delete_contact(url) == "hidden"
    assert (await freeagent.client.get_contact(url) or {})["status"] == "Hidden"


async def test_delete_removes_a_contact_without_invoices(freeagent: FreeAgentRig) -> None:
    """A deletable contact is deleted; get_contact then reports None."""
    url = freeagent.state.add_contact({"organisation_name": "Gone Ltd"})
    assert await freeagent.client.delete_contact(url) == "deleted"
    assert await freeagent.client.get_contact(url) is None


@pytest.mark.parametrize("gone_status", [404, 410])
async def test_a_deleted_contact_answered_404_or_410_is_gone(
    freeagent: FreeAgentRig, gone_status: int
) -> None:
    """404 and 410 on one contact both mean FreeAgent no longer has it: GET finds none, a
    DELETE counts as done, and a PUT fails that record only (never the run)."""
    freeagent.state.gone_status = gone_status
    url = freeagent.state.add_contact({"organisation_name": "Gone Ltd"})
    freeagent.state.delete_contact(int(url.rsplit("/", 1)[1]))
    assert await freeagent.client.get_contact(url) is None
    assert await freeagent.client.delete_contact(url) == "deleted"
    with pytest.raises(RejectedRecord) as info:
        await freeagent.client.update_contact(url, {"organisation_name": "Back Ltd"})
    assert info.value.status == gone_status
    assert not isinstance(info.value, EndpointError)


async def test_410_on_the_contact_list_stops_the_run(freeagent: FreeAgentRig) -> None:
    """410 on a collection, like 404, is about the API address: an EndpointError."""
    freeagent.state.fault_status, freeagent.state.fault_methods = 410, frozenset({"GET"})
    with pytest.raises(EndpointError):
        [c async for c in freeagent.client.iter_contacts()]


async def test_a_listing_answered_in_xml_is_retried_and_completes(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """XML despite Accept JSON ([F579]) to a GET is a transient failure: the page is asked
    for again under the retry policy, and the listing yields every contact once."""
    for i in range(3):
        freeagent.state.add_contact({"organisation_name": f"Company {i}"})
    freeagent.state.faults.xml_responses = 2
    freeagent.state.faults.xml_methods = frozenset({"GET"})
    seen = [c async for c in freeagent.client.iter_contacts(per_page=5)]
    assert len({c["url"] for c in seen}) == 3
    assert freeagent.state.faults.xml_responses == 0
    assert freeagent.requests("GET", "/v2/contacts") == 3  # the one page, asked twice more
    assert len(sleeps.waits) == 2


async def test_users_me_answered_in_xml_is_retried(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """users/me answered in XML once is asked again and read."""
    freeagent.state.faults.xml_responses = 1
    user = await freeagent.client.users_me()
    assert user["permission_level"] == freeagent.state.permission_level
    assert freeagent.requests("GET", "/v2/users/me") == 2
    assert len(sleeps.waits) == 1


async def test_a_create_answered_in_xml_is_not_repeated(freeagent: FreeAgentRig) -> None:
    """A POST answered in XML may have acted: it is sent once, its URL read from Location."""
    freeagent.state.faults.xml_responses = 1
    contact = await freeagent.client.create_contact({"organisation_name": "Xml Ltd"})
    assert freeagent.requests("POST", "/v2/contacts") == 1
    assert len(freeagent.state.contacts) == 1
    assert contact["url"].endswith("/v2/contacts/1")


async def test_a_listing_whose_empty_pages_never_end_is_an_endpoint_error(
    freeagent: FreeAgentRig,
) -> None:
    """Endless empty pages (a next link that never ends) stop the listing with an ApiError."""
    freeagent.state.add_contact({"organisation_name": "Only Ltd"})
    freeagent.state.faults.endless_pages = True
    with pytest.raises(ApiError, match="empty page links to a next page"):
        _ = [c async for c in freeagent.client.iter_contacts(per_page=5)]
    assert freeagent.requests("GET", "/v2/contacts") == 2


async def test_a_create_answered_504_is_an_unknown_outcome_sent_once(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """A gateway 504 may hide a commit: OutcomeUnknown, one POST, no retry."""
    freeagent.state.faults.gateway_504 = 1
    freeagent.state.faults.commit_delay = 0.01
    with pytest.raises(OutcomeUnknown):
        await freeagent.client.create_contact({"organisation_name": "Later Ltd"})
    await freeagent.state.faults.settled()
    assert freeagent.requests("POST", "/v2/contacts") == 1
    assert [c["organisation_name"] for c in freeagent.state.contacts_list()] == ["Later Ltd"]
    assert sleeps.waits == []


async def test_a_create_refused_with_429_is_not_an_unknown_outcome(
    freeagent: FreeAgentRig,
) -> None:
    """A 429 was refused unprocessed: retried, and never reported as ambiguous."""
    freeagent.state.inject_429(1, retry_after=1)
    contact = await freeagent.client.create_contact({"organisation_name": "Once Ltd"})
    assert contact["url"]
    assert len(freeagent.state.contacts) == 1


class _Answers:
    """Stands in for FreeAgentClient._send: each call gets the next canned answer."""

    def __init__(self, *answers: tuple[int, Any, dict[str, str]]) -> None:
        self.answers = list(answers)

    async def __call__(self, method: str, url: Any, **_: Any) -> Response:
        status, body, headers = self.answers.pop(0)
        return Response(status, CIMultiDictProxy(CIMultiDict(headers)), body)


@pytest.mark.parametrize("page", [None, "none", {"url": "x"}])
async def test_a_listing_without_a_list_of_contacts_is_an_endpoint_error(
    freeagent: FreeAgentRig, monkeypatch: pytest.MonkeyPatch, page: Any
) -> None:
    """`{"contacts": null}` (or a string, an object) stops the run: it is not an empty list."""
    monkeypatch.setattr(freeagent.client, "_send", _Answers((200, {"contacts": page}, {})))
    with pytest.raises(EndpointError, match="contacts"):
        [c async for c in freeagent.client.iter_contacts()]


async def test_listed_items_that_are_not_contacts_are_passed_over(
    freeagent: FreeAgentRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listed item that is not an object is skipped; a contact without url still comes."""
    page = ["junk", None, {"organisation_name": "No Url"}, {"url": f"{API}contacts/2"}]
    monkeypatch.setattr(freeagent.client, "_send", _Answers((200, {"contacts": page}, {})))
    listed = [c async for c in freeagent.client.iter_contacts()]
    moved = f"{freeagent.client.api_base}contacts/2"
    assert listed == [{"organisation_name": "No Url"}, {"url": moved}]


API = "http://fa.test/v2/"


async def test_a_created_contact_url_naming_another_host_is_kept_on_the_api_host(
    freeagent: FreeAgentRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 201 whose Location names a proxy's host is stored as the configured API's URL, the
    form listings give, so ownership checks compare like with like."""
    answer = (201, "", {"Location": "https://proxy.example/v2/contacts/70"})
    monkeypatch.setattr(freeagent.client, "_send", _Answers(answer))
    contact = await freeagent.client.create_contact({"organisation_name": "Moved Ltd"})
    assert contact["url"] == f"{freeagent.client.api_base}contacts/70"


@pytest.mark.parametrize(
    "answer",
    [
        (201, "", {"Location": "https://elsewhere.example/api/contacts/70"}),
        (201, {"contact": {"url": 70}}, {}),
        (201, {"contact": None}, {}),
    ],
)
async def test_a_create_answer_without_a_usable_url_is_an_unknown_outcome(
    freeagent: FreeAgentRig, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    """A 201 whose URL is missing, not a string or outside the API: the contact exists
    somewhere, so it settles and is reconciled, never taken as created at a bad URL."""
    monkeypatch.setattr(freeagent.client, "_send", _Answers(answer))
    with pytest.raises(OutcomeUnknown):
        await freeagent.client.create_contact({"organisation_name": "Where Ltd"})
