"""Transport: status mapping, the service's own words, retries and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from daemon.clients.transport import (
    Response,
    Transport,
    error_message,
    parse_body,
    parse_retry_after,
    status_error,
)
from daemon.errors import (
    ApiError,
    AuthError,
    RateLimited,
    RejectedRecord,
    TransientApiError,
)
from simulators.magento import MagentoState
from tests.fakes import FakeNow

from .conftest import FreeAgentRig, MakeMagento, SleepRecorder


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # FreeAgent validation list (422)
        (
            {"errors": [{"message": "first_name can't be blank"}, {"message": "x is bad"}]},
            "first_name can't be blank; x is bad",
        ),
        # FreeAgent single error object (404/403)
        ({"errors": {"error": {"message": "Resource not found"}}}, "Resource not found"),
        # FreeAgent field -> messages map
        (
            {"errors": {"dated_on": ["can't be blank", "is invalid"]}},
            "dated_on can't be blank; dated_on is invalid",
        ),
        # token endpoint
        (
            {"error": "invalid_grant", "error_description": "The refresh token is invalid."},
            "invalid_grant: The refresh token is invalid.",
        ),
        # Magento positional parameters
        (
            {"message": "Invalid attribute name: %1", "parameters": ["id"]},
            "Invalid attribute name: id",
        ),
        # Magento named parameters
        (
            {
                "message": "No such entity with %fieldName = %fieldValue",
                "parameters": {"fieldName": "customerId", "fieldValue": 7},
            },
            "No such entity with customerId = 7",
        ),
        # Magento without parameters
        ({"message": "Too Many Requests"}, "Too Many Requests"),
        # plain-text 429 body
        (
            "You must not exceed 120 requests per 60 seconds",
            "You must not exceed 120 requests per 60 seconds",
        ),
        # an intermediary's HTML error page: its title
        (
            "<html><head><title>502 Bad Gateway</title></head><body>..</body></html>",
            "502 Bad Gateway",
        ),
        (None, ""),
    ],
)
def test_error_message_uses_the_services_own_words(body: object, expected: str) -> None:
    """Every body shape FreeAgent and Magento send yields the API's own message."""
    assert error_message(body) == expected


def _response(status: int, body: object, **headers: str) -> Response:
    return Response(status, CIMultiDictProxy(CIMultiDict(headers)), body)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, RateLimited),
        (500, TransientApiError),
        (503, TransientApiError),
        (401, AuthError),
        (400, RejectedRecord),
        (403, RejectedRecord),
        (404, RejectedRecord),
        (409, RejectedRecord),
        (422, RejectedRecord),
        (405, ApiError),
    ],
)
def test_statuses_map_to_the_error_hierarchy(status: int, kind: type[ApiError]) -> None:
    """Each failing status becomes the documented fa-sync error class."""
    error = status_error(_response(status, "nope"), where="svc GET /x", service="svc")
    assert type(error) is kind
    assert error.status == status


def test_success_statuses_are_not_errors() -> None:
    """2xx answers map to no error."""
    assert status_error(_response(201, {}), where="w", service="s") is None


def test_retry_after_defaults_to_sixty_seconds() -> None:
    """A 429 without Retry-After waits FreeAgent's documented 60 s."""
    error = status_error(_response(429, "slow down"), where="w", service="s")
    assert isinstance(error, RateLimited)
    assert error.retry_after == 60


def test_retry_after_accepts_http_dates() -> None:
    """Retry-After as an HTTP-date is turned into seconds from now."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1000000000", 3600),  # 31 years would pause the user's budget for good
        ("99999999999999999999999", 3600),  # past PostgreSQL's interval range
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0),  # a date already past: at once
        ("-5", 60),  # not a delay: the default
        ("1e9", 60),
        ("\u0663", 60),  # a non-ASCII digit is not delta-seconds
    ],
)
def test_retry_after_is_bounded_to_an_hour(header: str, seconds: float) -> None:
    """No Retry-After pauses a FreeAgent user for longer than its longest window (an hour)."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


def test_json_is_parsed_only_when_the_content_type_says_json() -> None:
    """An XML or HTML answer is kept as text, never fed to the JSON parser."""
    assert parse_body("application/xml", b"<contacts/>") == "<contacts/>"
    assert parse_body("application/json", b'{"a": 1}') == {"a": 1}
    assert parse_body("application/json", b"") == ""


async def test_422_raises_rejected_record_with_freeagents_message(freeagent: FreeAgentRig) -> None:
    """A validation failure is a RejectedRecord carrying FreeAgent's words and body."""
    with pytest.raises(RejectedRecord) as info:
        await freeagent.client.create_contact({"email": "no-name@example.com"})
    assert info.value.status == 422
    assert "can't be blank" in str(info.value)
    assert isinstance(info.value.body, dict) and "errors" in info.value.body


async def test_5xx_is_retried_until_it_succeeds(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """A 502/503 is retried with backoff; the outage ends and the request succeeds."""
    freeagent.state.error_rate = 1.0

    def outage_over() -> None:
        freeagent.state.error_rate = 0.0

    sleeps.then = outage_over
    me = await freeagent.client.users_me()
    assert me["permission_level"] == 8
    assert freeagent.requests("GET", "/v2/users/me") == 2
    assert len(sleeps.waits) == 1


async def test_5xx_gives_up_after_the_configured_attempts(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """A lasting outage raises TransientApiError after http_retry_attempts tries."""
    freeagent.state.error_rate = 1.0
    with pytest.raises(TransientApiError) as info:
        await freeagent.client.company()
    assert info.value.status in (502, 503)
    assert freeagent.requests("GET", "/v2/company") == 4
    assert len(sleeps.waits) == 3


async def test_4xx_is_not_retried(freeagent: FreeAgentRig, sleeps: SleepRecorder) -> None:
    """A 404 is raised at once: the same request cannot succeed by repeating it."""
    url = str(freeagent.server.make_url("/v2/contacts/999"))
    with pytest.raises(RejectedRecord) as info:
        await freeagent.client.update_contact(url, {"organisation_name": "X"})
    assert info.value.status == 404
    assert freeagent.requests("PUT", "/v2/contacts/999") == 1
    assert sleeps.waits == []


async def test_retry_after_is_honoured(freeagent: FreeAgentRig, sleeps: SleepRecorder) -> None:
    """After a 429 the transport waits exactly Retry-After, then the retry succeeds."""
    freeagent.state.inject_429(1, retry_after=1)
    await freeagent.client.users_me()
    assert freeagent.state.count_429 == 1
    assert freeagent.requests("GET", "/v2/users/me") == 2
    assert sleeps.waits == [1.0]


async def test_a_429_first_does_not_use_up_the_attempts_meant_for_faults(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """The first attempt is a 429, then the service fails for good: the 429 is waited out and
    the outage still gets all http_retry_attempts (4) tries. The first attempt is sent before
    the retry machinery is built, so this pins that its outcome is counted as tenacity would."""
    freeagent.state.inject_429(1, retry_after=7)

    def outage() -> None:
        freeagent.state.error_rate = 1.0

    sleeps.then = outage
    with pytest.raises(TransientApiError):
        await freeagent.client.company()
    assert freeagent.state.count_429 == 1
    assert freeagent.requests("GET", "/v2/company") == 1 + 4
    assert sleeps.waits[0] == 7.0 and len(sleeps.waits) == 4


async def test_a_request_that_must_not_repeat_is_sent_once_on_a_fault(
    freeagent: FreeAgentRig, sleeps: SleepRecorder
) -> None:
    """A create (no idempotency key) meeting a 502 is not sent again: FreeAgent may have
    acted on it. Only its first attempt runs, outside the retry machinery."""
    freeagent.state.error_rate = 1.0
    with pytest.raises(TransientApiError):
        await freeagent.client.create_contact({"first_name": "Ada", "last_name": "L"})
    assert freeagent.requests("POST", "/v2/contacts") == 1
    assert sleeps.waits == []


# -- Retry-After on 5xx (a proxy or WAF in front of the API) ----------------------------------


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (503, "30", 30.0),
        (502, "2.5", 2.5),
        (504, "1000000000", 3600.0),  # capped as a 429's is
        (503, None, None),  # no time named: the backoff alone
        (503, "soon", None),  # unreadable: the backoff alone, not the 429 default
    ],
)
def test_a_5xx_carries_its_retry_after(
    status: int, header: str | None, seconds: float | None
) -> None:
    """A 5xx keeps the Retry-After it was sent (bounded to an hour), and stays a plain
    TransientApiError: never a RateLimited, which even a create would repeat."""
    headers = {} if header is None else {"Retry-After": header}
    error = status_error(_response(status, "busy", **headers), where="w", service="s")
    assert type(error) is TransientApiError
    assert error.retry_after == seconds


def test_a_5xx_retry_after_may_be_an_http_date() -> None:
    """A 503's Retry-After as an HTTP-date is read as seconds from now, as a 429's is."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    error = status_error(_response(503, "busy", **{"Retry-After": when}), where="w", service="s")
    assert isinstance(error, TransientApiError) and error.retry_after is not None
    assert 100 < error.retry_after <= 120


async def test_a_5xx_is_not_retried_before_its_retry_after(
    make_magento: MakeMagento, sleeps: SleepRecorder
) -> None:
    """Magento's proxy answers 503 with Retry-After: 30 and refuses any earlier request: the
    retry waits the 30 s (not the shorter backoff) and then succeeds at once."""
    clock = FakeNow()
    state = MagentoState.seeded(5, guest_orders=0)
    state.clock = clock
    state.error_rate, state.error_retry_after = 1.0, 30
    rig = await make_magento(state)

    def waited() -> None:
        clock.advance(sleeps.waits[-1])
        state.error_rate = 0.0

    sleeps.then = waited
    customers = [c async for c in rig.client.iter_customers()]
    assert len(customers) == 5
    assert sleeps.waits == [30.0]
    assert state.early_retries == 0


async def test_a_create_answered_503_with_retry_after_is_sent_once(
    aiohttp_server: Any, transport: Transport, sleeps: SleepRecorder
) -> None:
    """A POST that must not repeat, answered 503 with Retry-After, is still sent only once:
    the server may have acted on it, and Retry-After says when to ask, not that it did not."""
    posts: list[str] = []

    async def create(request: web.Request) -> web.Response:
        posts.append(request.path)
        return web.Response(status=503, text="busy", headers={"Retry-After": "2"})

    app = web.Application()
    app.router.add_post("/v2/contacts", create)
    server = await aiohttp_server(app)
    with pytest.raises(TransientApiError) as info:
        await transport.request(
            "POST", server.make_url("/v2/contacts"), headers={}, json={"contact": {}},
            service="freeagent", retry=False,
        )  # fmt: skip
    assert not isinstance(info.value, RateLimited) and info.value.retry_after == 2.0
    assert posts == ["/v2/contacts"]
    assert sleeps.waits == []
