"""FreeAgentClient.iter_contacts: what a listing keeps across pages, and contacts that change
while the pages are read (reference §6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from yarl import URL

from daemon.clients.freeagent_paging import with_params
from simulators.freeagent import FreeAgentState
from tests.fakes import FakeNow

from .conftest import FreeAgentRig, MakeFreeAgent


@pytest.fixture
def now() -> FakeNow:
    """FreeAgent's wall clock: each contact gets its own updated_at."""
    return FakeNow()


@pytest.fixture
async def rig(make_freeagent: MakeFreeAgent, now: FakeNow) -> FreeAgentRig:
    return await make_freeagent(FreeAgentState(wall_clock=now))


def _add(rig: FreeAgentRig, now: FakeNow, name: str, **fields: Any) -> str:
    url = rig.state.add_contact({"organisation_name": name, **fields})
    now.advance(60)
    return url


def _listing_queries(rig: FreeAgentRig) -> list[dict[str, str]]:
    return [
        dict(URL(f"/?{r.query}").query)
        for r in rig.state.requests
        if r.method == "GET" and r.path == "/v2/contacts"
    ]


def test_next_url_gets_back_only_the_parameters_it_lacks() -> None:
    """A next link missing view/sort gets ours; the values it has are kept, none repeated."""
    url = with_params(
        "https://api.example/v2/contacts?page=2&per_page=5&view=hidden",
        {"view": "all", "sort": "-updated_at", "per_page": "100"},
    )
    query = URL(url).query
    assert sorted(query.items()) == [
        ("page", "2"), ("per_page", "5"), ("sort", "-updated_at"), ("view", "hidden"),
    ]  # fmt: skip


async def test_a_hidden_listing_stays_hidden_on_every_page(rig: FreeAgentRig, now: FakeNow) -> None:
    """view=hidden lists only Hidden contacts on every page: the simulator's next links carry
    only page and per_page, as the reference's example does."""
    hidden = {_add(rig, now, f"Hidden {i}", status="Hidden") for i in range(5)}
    for i in range(5):
        _add(rig, now, f"Active {i}")
    listed = [c async for c in rig.client.iter_contacts(view="hidden", per_page=2)]
    assert {c["url"] for c in listed} == hidden
    assert all(c["status"] == "Hidden" for c in listed)
    assert all(q.get("view") == "hidden" for q in _listing_queries(rig))


async def test_every_page_of_an_incremental_read_carries_updated_since(
    rig: FreeAgentRig, now: FakeNow
) -> None:
    """An updated_since read lists only what changed since, page after page."""
    for i in range(3):
        _add(rig, now, f"Old {i}")
    since = now() - timedelta(seconds=30)
    recent = {_add(rig, now, f"New {i}") for i in range(3)}
    listed = [c async for c in rig.client.iter_contacts(updated_since=since, per_page=1)]
    assert {c["url"] for c in listed} == recent
    queries = _listing_queries(rig)
    assert len(queries) >= 3
    assert all("updated_since" in q and q.get("sort") == "-updated_at" for q in queries)


@pytest.mark.parametrize(
    "updated",
    [
        # the oldest: read newest first, it is on the last page; reading oldest first, its
        # move to the end would push B onto the page already read
        "A",
        # the newest, on the first page: read in its old form, then again (the last copy wins)
        "C",
    ],
)
async def test_a_contact_updated_mid_scan_is_seen_in_its_new_form(
    rig: FreeAgentRig, now: FakeNow, updated: str
) -> None:
    """Contacts A, B, C; one is updated after page 1 is read: the scan ends seeing it updated,
    and every other contact once."""
    urls = {name: _add(rig, now, name) for name in "ABC"}
    contact_id = int(urls[updated].rsplit("/", 1)[1])
    last: dict[str, dict[str, Any]] = {}
    async for contact in rig.client.iter_contacts(per_page=1):
        if not last:  # page 1 has been read
            rig.state.update_contact(contact_id, {"organisation_name": f"{updated} renamed"})
            now.advance(60)
        last[contact["url"]] = contact
    expected = {name: name for name in "ABC"} | {updated: f"{updated} renamed"}
    assert {url: c["organisation_name"] for url, c in last.items()} == {
        urls[name]: title for name, title in expected.items()
    }
