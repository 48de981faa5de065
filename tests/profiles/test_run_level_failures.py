"""Errors about the account or the endpoint stop the run and leave the queue alone; a breaker
backs the profile off; shutdown mid-export is recorded as interrupted; hiding spares shared
contacts."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from daemon.context import RunOptions
from daemon.db.queries import QUERIES
from daemon.db.records import RunTrigger
from daemon.failures import CAUSES, Action
from daemon.resources import ClientFactory
from daemon.runner import Runner
from daemon.settings import Settings
from simulators.stack import Stack

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Two tries per request, so faults show quickly; a one-minute breaker base."""
    return settings.model_copy(update={"http_retry_attempts": 2, "breaker_base_seconds": 60.0})


async def _rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT status, attempts FROM contact_entity ORDER BY id")


async def _run(pool: asyncpg.Pool, run_id: int | None) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM profile_run WHERE id = $1", run_id)


async def test_forbidden_writes_stop_the_run_with_rows_untouched(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A 403 on creating (a lapsed subscription) ends the run `error`; no row is failed.

    Every row's create was decided (intent committed) before the first POST; the rows that
    never got to send theirs are pending again, not left `creating` for a settle window."""
    stack.freeagent.fault_status, stack.freeagent.fault_methods = 403, frozenset({"POST"})
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "error"
    assert "403" in (outcome.error or "")
    rows = await _rows(pool)
    assert rows and all(r["attempts"] == 0 and r["status"] == "pending" for r in rows)
    posts = sum(1 for r in stack.freeagent.requests if r.method == "POST")
    assert posts <= 4  # the in-flight ones at most, not one per row


async def test_wrong_base_url_stops_the_run_and_says_so(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """404 on users/me and the contact list is about the API address: run-level, rows alone."""
    stack.freeagent.fault_status, stack.freeagent.fault_methods = 404, frozenset({"GET"})
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "error"
    assert "API address" in (outcome.error or "")
    assert all(r["attempts"] == 0 and r["status"] == "pending" for r in await _rows(pool))


async def test_outage_mid_export_stops_the_run_without_spending_attempts(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Creates failing 503 after every retry, several in a row: the run stops as an outage
    and no record is charged an attempt."""
    stack.freeagent.fault_status, stack.freeagent.fault_methods = 503, frozenset({"POST"})
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "error"
    assert "outage" in (outcome.error or "")
    rows = await _rows(pool)
    assert all(r["attempts"] == 0 and r["status"] != "failed" for r in rows)


async def test_breaker_delays_fires_after_outages_then_recovery_exports_all(
    pool: asyncpg.Pool, stack: Stack, settings: Settings, factory: ClientFactory
) -> None:
    """Two runs fail on an outage; fires inside the back-off are skipped with the reason; the
    first run after recovery exports everything and closes the breaker."""
    stack.freeagent.fault_status = 503

    async def fire(at: datetime):  # type: ignore[no-untyped-def]
        runner = Runner(pool=pool, settings=settings, resources=factory, clock=lambda: at)
        return await runner.fire(stack.profile_id, at, trigger=RunTrigger.SCHEDULE)

    first = await fire(T0)
    assert first.status == "error"
    assert (await _run(pool, first.run_id))["error_summary"]
    held = await fire(T0 + timedelta(seconds=30))
    assert held.status == "skipped" and "breaker open" in (held.error or "")
    second = await fire(T0 + timedelta(seconds=61))
    assert second.status == "error"
    assert (await fire(T0 + timedelta(seconds=150))).status == "skipped"  # 2nd back-off: 120 s
    assert all(r["attempts"] == 0 and r["status"] == "pending" for r in await _rows(pool))
    stack.freeagent.fault_status = 0
    recovered = await fire(T0 + timedelta(seconds=190))
    assert recovered.status in ("complete", "warning")
    rows = await _rows(pool)
    assert all(r["status"] in ("created", "linked", "skipped", "updated") for r in rows)
    assert await pool.fetchval("SELECT count(*) FROM profile_breaker") == 0


async def test_shutdown_mid_export_is_recorded_interrupted_with_counts(
    pool: asyncpg.Pool, stack: Stack, settings: Settings, factory: ClientFactory
) -> None:
    """Stopping after the first batch: the rows of the next batch that had not sent yet stop
    untouched (intents cleared), those already sent are recorded; history says interrupted
    with N of M; the next run finishes the rest."""
    await pool.execute("UPDATE profile SET batch_size = 10")
    runner = Runner(pool=pool, settings=settings, resources=factory)
    stopping = runner._stopping
    options = RunOptions(
        progress=lambda stage, done, total: stopping.set() if stage == "export" else None
    )
    outcome = await runner.fire(stack.profile_id, trigger=RunTrigger.CLI, options=options)
    run = await _run(pool, outcome.run_id)
    total = await pool.fetchval("SELECT count(*) FROM contact_entity")
    assert run["status"] == "interrupted"
    done = int(re.search(r"after (\d+) of (\d+) records", run["error_summary"]).group(1))
    assert 10 <= done < total, run["error_summary"]  # the next batch may have been sending
    assert f"after {done} of {total} records" in run["error_summary"]
    pending = await pool.fetchval("SELECT count(*) FROM contact_entity WHERE status = 'pending'")
    assert pending == total - done
    posts = sum(1 for r in stack.freeagent.requests if r.method == "POST")
    assert posts == done - outcome.counts.linked
    stopping.clear()
    again = await runner.fire(stack.profile_id, trigger=RunTrigger.CLI)
    assert again.status in ("complete", "warning")
    assert await pool.fetchval("SELECT count(*) FROM contact_entity WHERE status = 'pending'") == 0


async def test_shutdown_stops_rows_waiting_for_a_slot_before_they_send(
    pool: asyncpg.Pool, stack: Stack, settings: Settings, factory: ClientFactory
) -> None:
    """One concurrency slot; the first POST is held at FreeAgent while the process starts
    stopping: that POST finishes and is recorded, every other row (its create decided, its
    intent committed) sends nothing and is pending again, intent cleared."""
    runner = Runner(
        pool=pool, settings=settings.model_copy(update={"export_concurrency": 1}),
        resources=factory,
    )  # fmt: skip
    gate = stack.freeagent.faults.write_gate = asyncio.Event()
    fire = asyncio.create_task(runner.fire(stack.profile_id, trigger=RunTrigger.CLI))
    try:
        await asyncio.wait_for(stack.freeagent.faults.wait_gated(1), 30)
        runner._stopping.set()
        gate.set()
        outcome = await asyncio.wait_for(fire, 30)
    finally:
        gate.set()
        fire.cancel()
    assert outcome.status == "interrupted"
    assert sum(1 for r in stack.freeagent.requests if r.method == "POST") == 1
    statuses = dict(
        await pool.fetch("SELECT status::text, count(*) FROM contact_entity GROUP BY 1")
    )
    total = await pool.fetchval("SELECT count(*) FROM contact_entity")
    linked = statuses.pop("linked", 0)  # a row sharing that contact's e-mail sends nothing
    assert statuses == {"created": 1, "pending": total - 1 - linked}
    assert not await pool.fetchval(
        "SELECT count(*) FROM contact_entity WHERE metadata ? 'create_intent'"
    )


async def test_deleted_customer_keeps_a_contact_another_live_row_uses(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Hiding a deleted customer's contact is refused while another live row uses it; the
    deleted row's note names that row."""
    await run_profile(stack.profile_id)
    gone, other = await pool.fetch(
        "SELECT id, freeagent_url FROM contact_entity WHERE status = 'created' ORDER BY id LIMIT 2"
    )
    await pool.execute(
        "UPDATE contact_entity SET freeagent_url = $1 WHERE id = $2", gone["freeagent_url"],
        other["id"],
    )  # fmt: skip
    await pool.execute(QUERIES["entity_mark_deleted"], gone["id"])
    await run_profile(stack.profile_id, collect=False)
    contact_id = int(gone["freeagent_url"].rsplit("/", 1)[1])
    assert stack.freeagent.contacts[contact_id].get("status") != "Hidden"
    row = await pool.fetchrow("SELECT * FROM contact_entity WHERE id = $1", gone["id"])
    assert f"ledger row {other['id']}" in row["metadata"]["removal"]["reason"]
    assert row["status"] == "removed"


def test_every_cause_has_one_action() -> None:
    """The classification table names, for each cause, retry, fail the record or stop the run."""
    assert {c.action for c in CAUSES} <= set(Action)
    stops = {c.cause for c in CAUSES if c.action is Action.STOP_RUN}
    assert any("403" in c for c in stops) and any("404" in c for c in stops)
