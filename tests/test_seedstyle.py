"""bench/seedstyle.py: the original's way, with the only lookup FreeAgent allows (list and
filter), against in-process simulators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.bare import Endpoints
from bench.seedstyle import next_link, seed_export
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, simulators

#: More contacts than one page holds, named to sort before the customer's ("Org" < "Zed").
OTHERS = 150


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    magento = MagentoState()
    magento.add_customer(email="Ann.Zed@Example.com", firstname="Ann", lastname="Zed")
    async with simulators(freeagent=FreeAgentState(), magento=magento) as running:
        for n in range(OTHERS):
            running.freeagent.add_contact(
                {"organisation_name": f"Org {n:03d}", "email": f"o{n}@other.example"}
            )
        yield running


def endpoints(stack: Stack) -> Endpoints:
    access, _ = stack.freeagent.issue_tokens()
    return Endpoints(stack.freeagent_url, stack.magento_url, access)


def methods(stack: Stack) -> list[str]:
    return [r.method for r in stack.freeagent.requests if r.path.startswith("/v2/contacts")]


async def test_a_contact_found_on_a_later_page_is_updated(stack: Stack) -> None:
    """The lookup follows rel=next and matches e-mails case-insensitively; a match is PUT."""
    found = {"last_name": "Zed", "first_name": "A", "email": "ann.zed@example.com"}
    url = stack.freeagent.add_contact(found)
    result = await seed_export(endpoints(stack))
    assert (result.created, result.updated, result.pages) == (0, 1, 2)
    assert methods(stack) == ["GET", "GET", "PUT"]
    contact_id = int(url.rsplit("/", 1)[1])
    assert stack.freeagent.contacts[contact_id]["first_name"] == "Ann"


async def test_no_match_lists_every_page_then_posts(stack: Stack) -> None:
    """Without a match the whole account is listed before the POST."""
    result = await seed_export(endpoints(stack))
    assert (result.created, result.updated, result.pages) == (1, 0, 2)
    assert methods(stack) == ["GET", "GET", "POST"]
    assert result.requests == 3 and result.finished


async def test_a_429_is_waited_out_and_sent_again(stack: Stack) -> None:
    """Each 429 is counted and the same request repeated."""
    stack.freeagent.inject_429(2)
    result = await seed_export(endpoints(stack), retry_scale=0)
    assert (result.created, result.throttled, result.requests) == (1, 2, 5)


async def test_the_deadline_stops_the_export(stack: Stack) -> None:
    """Out of time, the customer in hand is not counted and the result says so."""
    result = await seed_export(endpoints(stack), deadline=0)
    assert not result.finished and result.exported == 0 and result.requests == 0


async def test_stop_ends_a_429_wait(stack: Stack) -> None:
    """Setting stop ends the export at once, even in the middle of an hour's Retry-After."""
    stack.freeagent.inject_429(1, retry_after=3600)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    result = await asyncio.wait_for(seed_export(endpoints(stack), stop=stop), 10)
    assert (result.throttled, result.exported, result.finished) == (1, 0, False)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # the live API: single quotes, next before last
        ("<https://a/p2>; rel='next', <https://a/p9>; rel='last'", "https://a/p2"),
        # the docs: double quotes, next after prev
        ('<https://a/p1>; rel="prev", <https://a/p3>; rel="next"', "https://a/p3"),
        # the last page links to no next one
        ("<https://a/p1>; rel='prev', <https://a/p1>; rel='first'", None),
        # no header at all
        (None, None),
    ],
)
def test_next_link(header: str | None, expected: str | None) -> None:
    """rel=next is read in either quote style; the last page has none."""
    assert next_link(header) == expected
