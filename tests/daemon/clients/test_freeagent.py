"""FreeAgentClient: contacts, paging, the create rule, 401 refresh, the shared budget."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from daemon.clients.freeagent import parse_link_header
from daemon.clients.transport import Response
from daemon.errors import (
    ApiError,
    EndpointError,
    OutcomeUnknown,
    RejectedRecord,
    TransientApiError,
)
from simulators.freeagent import FreeAgentState
from tests.fakes import FakeClock

from .conftest import FreeAgentRig, MakeFreeAgent, SleepRecorder


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


async def test_link_paging_returns_every_contact_once(freeagent: FreeAgentRig) -> None:
    """Following rel=next yields each of 23 contacts exactly once, 5 per page."""
    names = {f"Company {i:02d}" for i in range(23)}
    for name in sorted(names):
        freeagent.state.add_contact({"organisation_name": name})
    seen = [c async for c in freeagent.client.iter_contacts(per_page=5)]
    assert sorted(c["organisation_name"] for c in seen) == sorted(names)
    assert len({c["url"] for c in seen}) == 23
    assert freeagent.requests("GET", "/v2/contacts") == 5


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


async def test_rate_limit_test_header_lowers_the_limit(make_freeagent: MakeFreeAgent) -> None:
    """With rate_limit_test FreeAgent applies its test limit (X-RateLimit-Test: true)."""
    state = FreeAgentState(test_mode_per_minute=1, minute_window=0.5)
    rig = await make_freeagent(state, rate_limit_test=True)
    await rig.client.users_me()
    await rig.client.users_me()  # over the 1/window test limit: 429, blocked, retried
    assert rig.state.count_429 == 1
    assert rig.requests("GET", "/v2/users/me") == 3


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
