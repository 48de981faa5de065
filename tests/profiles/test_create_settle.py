"""The create settle protocol, end to end: a create whose outcome is unknown is never sent again
before it has settled, and is then adopted if FreeAgent committed it (issue 7, item 2)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import asyncpg
import pytest

from daemon.context import RunOptions
from daemon.db.records import RunTrigger
from daemon.resources import ClientFactory
from daemon.runner import Runner, RunOutcome
from daemon.settings import Settings
from profiles.freeagent_contact_export.resolve import ContactIndex
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack
from tests.fakes import FakeNow

EMAILS = ("ann@example.com", "bob@example.com", "cat@example.com")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with a 0.3 s HTTP timeout, so a create held for longer times out.

    Every create here times out on purpose: these tests are about settling, so the outage
    breaker (three unknown outcomes in a row stop the run) is off."""
    return settings.model_copy(update={"http_timeout": 0.3, "outage_after_failures": 0})


@pytest.fixture
def now() -> FakeNow:
    return FakeNow()


@pytest.fixture
def freeagent_state(now: FakeNow) -> FreeAgentState:
    return FreeAgentState(wall_clock=now)


@pytest.fixture
def magento_state() -> MagentoState:
    """Three ordinary customers, one e-mail each."""
    state = MagentoState()
    for email in EMAILS:
        first = email.split("@")[0].title()
        state.add_customer(email=email, firstname=first, lastname="Smith")
    return state


@pytest.fixture
def run(pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, now: FakeNow):  # type: ignore[no-untyped-def]
    """One run of the profile on the fake clock (the CLI's run-once path)."""

    async def go(profile_id: int, **options: Any) -> RunOutcome:
        runner = Runner(pool=pool, settings=settings, resources=factory, clock=now)
        return await runner.fire(profile_id, trigger=RunTrigger.CLI, options=RunOptions(**options))

    return go


def _posts(state: FreeAgentState) -> int:
    return sum(1 for r in state.requests if r.method == "POST" and r.path == "/v2/contacts")


async def _statuses(pool: asyncpg.Pool) -> list[str]:
    return [r["status"] for r in await pool.fetch("SELECT status::text FROM contact_entity")]


async def _assert_one_contact_per_customer(pool: asyncpg.Pool, stack: Stack) -> None:
    contacts = stack.freeagent.contacts_list()
    assert Counter(c.get("email") for c in contacts) == Counter(EMAILS)
    rows = await pool.fetch("SELECT status::text, freeagent_url FROM contact_entity")
    assert {r["status"] for r in rows} == {"created"}
    assert {r["freeagent_url"] for r in rows} == {c["url"] for c in contacts}


async def _settle(now: FakeNow, settings: Settings) -> None:
    now.advance(settings.settle_window().total_seconds() + 1)


async def test_a_create_committed_after_the_timeout_is_adopted_not_duplicated(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """Commit after our timeout: settling, not re-sent, then adopted: one contact each."""
    stack.freeagent.faults.commit_delay = 0.6
    first = await run(stack.profile_id)
    await stack.freeagent.faults.settled()
    assert (first.status, first.counts.created, first.counts.retrying) == ("warning", 0, 3)
    history = await pool.fetchrow("SELECT * FROM profile_run WHERE id = $1", first.run_id)
    assert any("3 creates settling" in m["message"] for m in history["messages"])
    assert await _statuses(pool) == ["creating"] * 3
    stack.freeagent.faults.commit_delay = 0.0
    again = await run(stack.profile_id)  # within the settle window: not even looked up
    assert again.counts.created == 0 and _posts(stack.freeagent) == 3
    await _settle(now, settings)
    last = await run(stack.profile_id)
    assert (last.status, last.counts.created) == ("complete", 3)
    assert _posts(stack.freeagent) == 3
    await _assert_one_contact_per_customer(pool, stack)


async def test_a_run_inside_the_settle_window_says_creates_are_settling(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """The next run (the CLI run twice) leaves settling rows alone and its history says so."""
    stack.freeagent.faults.commit_delay = 0.6
    await run(stack.profile_id)
    await stack.freeagent.faults.settled()
    now.advance(1)
    again = await run(stack.profile_id)
    assert (again.status, again.counts.created, again.counts.retrying) == ("warning", 0, 3)
    history = await pool.fetchrow("SELECT * FROM profile_run WHERE id = $1", again.run_id)
    assert "3 creates settling" in history["error_summary"]
    assert any("3 creates settling" in m["message"] for m in history["messages"])
    assert _posts(stack.freeagent) == 3


async def test_a_504_whose_create_commits_later_makes_no_duplicate(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """A gateway 504 while the backend still commits: adopted after settling, never re-sent."""
    stack.freeagent.faults.gateway_504 = 3
    stack.freeagent.faults.commit_delay = 0.2
    first = await run(stack.profile_id)
    assert first.counts.created == 0 and first.status == "warning"
    await stack.freeagent.faults.settled()
    await _settle(now, settings)
    await run(stack.profile_id)
    assert _posts(stack.freeagent) == 3
    await _assert_one_contact_per_customer(pool, stack)


async def test_a_create_that_was_really_lost_is_sent_again_once_after_settling(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """Never committed: nothing found after the settle window, so created exactly once."""
    stack.freeagent.faults.lost_creates = 3
    await run(stack.profile_id)
    await run(stack.profile_id)
    assert stack.freeagent.contacts_list() == [] and _posts(stack.freeagent) == 3
    await _settle(now, settings)
    last = await run(stack.profile_id)
    assert last.counts.created == 3 and _posts(stack.freeagent) == 6
    await _assert_one_contact_per_customer(pool, stack)


async def test_a_crash_between_intent_and_post_creates_once_after_settling(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """An intent left by a crash before the POST: not touched until settled, then one create."""
    await run(stack.profile_id, export=False)
    intent = {"at": now().isoformat(), "payload_hash": "x", "attempt": 1}
    await pool.execute(
        "UPDATE contact_entity SET status = 'creating',"
        " metadata = metadata || jsonb_build_object('create_intent', $1::jsonb)",
        json.loads(json.dumps(intent)),
    )
    early = await run(stack.profile_id)
    assert early.counts.created == 0 and _posts(stack.freeagent) == 0
    await _settle(now, settings)
    await run(stack.profile_id)
    assert _posts(stack.freeagent) == 3
    await _assert_one_contact_per_customer(pool, stack)


async def _crash_with_three_creates_held(stack: Stack, run: Any, settings: Settings) -> None:
    """A run dies (cancelled) while FreeAgent holds its three POSTs uncommitted; they commit
    from now on without delay. The client keeps waiting (a long timeout): the crash comes
    first."""
    faults = stack.freeagent.faults
    settings.http_timeout = 30.0
    faults.commit_delay = 2.0  # held beyond the crash
    crashed = asyncio.create_task(run(stack.profile_id))
    await asyncio.wait_for(faults.wait_held(3), 10)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    faults.commit_delay = 0.0


async def test_a_crash_while_creates_are_in_flight_is_reconciled_after_settling(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """The process dies with POSTs held at FreeAgent: the next run waits, then adopts them."""
    faults = stack.freeagent.faults
    await _crash_with_three_creates_held(stack, run, settings)
    await run(stack.profile_id)  # the held creates have not committed yet: nothing is sent
    await asyncio.wait_for(faults.settled(), 10)
    assert _posts(stack.freeagent) == 3
    await _settle(now, settings)
    await run(stack.profile_id)
    assert _posts(stack.freeagent) == 3
    await _assert_one_contact_per_customer(pool, stack)


async def test_a_create_decided_long_before_its_post_is_stamped_again_when_sent(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """One concurrency slot: the three creates are decided together, then sent one by one.
    While the first POST is held, half a settle window passes; the two others are stamped
    again as they go out, so a crash after their POSTs would still wait out the window from
    the POST. Every create here is lost (504), so each row keeps its intent to inspect."""
    settings.export_concurrency = 1
    faults = stack.freeagent.faults
    faults.lost_creates = 3
    gate = faults.write_gate = asyncio.Event()
    decided = now()
    exporting = asyncio.create_task(run(stack.profile_id))
    try:
        await asyncio.wait_for(faults.wait_gated(1), 10)
        later = decided + settings.settle_window() / 2
        now.advance((later - now()).total_seconds())
        gate.set()
        await asyncio.wait_for(exporting, 30)
    finally:
        gate.set()
    rows = await pool.fetch(
        "SELECT (metadata -> 'create_intent' ->> 'at')::timestamptz AS at, next_attempt_at"
        " FROM contact_entity ORDER BY id"
    )
    assert [r["at"] for r in rows] == [decided, later, later]
    assert all(r["next_attempt_at"] == r["at"] + settings.settle_window() for r in rows)
    assert _posts(stack.freeagent) == 3


def _listings(state: FreeAgentState) -> int:
    """Contact list pages read (index refreshes: one page per view for a few contacts)."""
    return sum(1 for r in state.requests if r.method == "GET" and r.path == "/v2/contacts")


async def test_creates_left_by_a_crash_are_looked_up_with_one_listing(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """Three creates a crash left, settled together: the run that reconciles them lists the
    contacts created since their intents once (a listing per view), not once per create, and
    still adopts each create's own contact."""
    faults = stack.freeagent.faults
    await _crash_with_three_creates_held(stack, run, settings)
    await asyncio.wait_for(faults.settled(), 10)
    await _settle(now, settings)
    before = _listings(stack.freeagent)
    last = await run(stack.profile_id)
    assert last.counts.created == 3
    assert _listings(stack.freeagent) - before == 2 + 2  # the run's own refresh, one lookup
    assert _posts(stack.freeagent) == 3
    await _assert_one_contact_per_customer(pool, stack)


async def test_several_candidates_for_an_unknown_create_fail_the_row_for_a_person(
    pool: asyncpg.Pool, stack: Stack, run, now: FakeNow, settings: Settings
) -> None:
    """Two contacts match what was sent: none is adopted; the row fails listing both URLs."""
    stack.freeagent.faults.lost_creates = 3
    await run(stack.profile_id)
    row = await pool.fetchrow("SELECT * FROM contact_entity WHERE email = $1", EMAILS[0])
    sent = {k: v for k, v in row["metadata"]["create_intent"]["sent"].items() if v}
    urls = {stack.freeagent.add_contact(dict(sent)) for _ in range(2)}
    await _settle(now, settings)
    await run(stack.profile_id)
    row = await pool.fetchrow("SELECT * FROM contact_entity WHERE id = $1", row["id"])
    assert row["status"] == "failed"
    assert all(url in row["last_error"]["message"] for url in urls)
    assert len(stack.freeagent.contacts_list()) == 2 + 2  # the two others were created once


async def test_reconcile_matches_without_email_but_never_a_stranger(
    pool: asyncpg.Pool, stack: Stack, factory: ClientFactory, now: FakeNow
) -> None:
    """Without an e-mail, names and address decide; other details or an older contact do not."""
    since = now()
    sent = {"first_name": "Ann", "last_name": "Lee", "address1": "1 High St", "postcode": "EH1 1AA"}
    now.advance(-60)
    stack.freeagent.add_contact(dict(sent))  # created before the intent: not ours
    now.advance(120)
    stack.freeagent.add_contact({**sent, "postcode": "EH2 2BB"})  # a stranger
    stack.freeagent.add_contact({**sent, "organisation_name": "Lee Ltd"})  # another stranger
    ours = stack.freeagent.add_contact({**sent, "last_name": "LEE"})
    index = ContactIndex(
        pool=pool, client_id=stack.client_id, freeagent=await factory.freeagent(stack.client_id)
    )
    assert await index.find_created_since(sent, since, settled=now(), now=now()) == [ours]


async def test_reconcile_finds_a_contact_listed_without_created_at(
    pool: asyncpg.Pool, stack: Stack, factory: ClientFactory, now: FakeNow
) -> None:
    """FreeAgent omits empty fields: a contact without created_at, updated after the intent and
    carrying exactly what was sent, is the create's (else it would be created again)."""
    sent = {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee"}
    now.advance(-60)
    old = stack.freeagent.add_contact({**sent, "email": "old@example.com"})
    now.advance(60)
    since = now()
    now.advance(1)
    ours = stack.freeagent.add_contact(dict(sent))
    for stored in stack.freeagent.contacts.values():
        stored.pop("created_at", None)
    index = ContactIndex(
        pool=pool, client_id=stack.client_id, freeagent=await factory.freeagent(stack.client_id)
    )
    assert await index.find_created_since(sent, since, settled=now(), now=now()) == [ours]
    old_sent = {**sent, "email": "old@example.com"}
    assert old not in await index.find_created_since(old_sent, since, settled=now(), now=now())
