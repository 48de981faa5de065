"""A dry run in progress holds back its own profile's runs, and nothing else.

A dry run rehearses the real run in one transaction that is rolled back (daemon/db/rehearsal.py),
so its run row stays uncommitted for as long as the rehearsal lasts: minutes, on a large shop.
A claim that met that row would wait for the rehearsal to end, and the daemon claims the fires
arriving together in one statement: every profile firing with the rehearsed one would wait too.
Claims therefore pass over a profile being rehearsed, whose fire is skipped with that reason.
And the rehearsal decides people under their identity locks, which it must not keep to its end:
another profile of the same FreeAgent client deciding those people would wait for it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.claims import FireClaims
from daemon.context import RunOptions
from daemon.db import rehearsal as rehearsal_module
from daemon.db.queries import QUERIES
from daemon.db.records import Profile, RunStatus, RunTrigger
from daemon.errors import ProfileRehearsed
from daemon.resources import ClientFactory
from daemon.runner import Runner, utcnow
from daemon.settings import Settings
from daemon.webhook import EventKind, MagentoEvent
from profiles.freeagent_contact_export.collect import Collector
from profiles.freeagent_contact_export.dryrun import DryRunReport, dry_run
from profiles.freeagent_contact_export.events import queue_event
from simulators.stack import Stack
from tests.clirun import fa_sync

#: How long a claim may take before the test calls it stuck (a failure, not a pace).
DEADLINE = 20.0
FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


async def _second_profile(pool: asyncpg.Pool, first: int) -> int:
    """Another profile on the same FreeAgent client and Magento connection."""
    return int(
        await pool.fetchval(
            """INSERT INTO profile (name, type, client_id, connection_id, schedule, settings)
               SELECT name || '-two', type, client_id, connection_id, schedule, settings
                 FROM profile WHERE id = $1 RETURNING id""",
            first,
        )
    )


def _start_dry_run(
    pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, profile_id: int
) -> asyncio.Task[DryRunReport]:
    """A full dry run of the profile, as `contact export --dry-run --full` starts it."""
    return asyncio.create_task(
        dry_run(
            pool=pool,
            settings=settings,
            resources=factory,
            profile_id=profile_id,
            options=RunOptions(full=True),
            clock=utcnow,
        )
    )


def _hold_collect(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """The collect (of the dry run: no other run collects here) stops at its first stored
    chunk until `release` is set; `reached` says it got there."""
    reached, release = asyncio.Event(), asyncio.Event()
    flush = Collector._flush

    async def held(self: Collector, chunk: dict[str, Any], stage: str) -> None:
        reached.set()
        await release.wait()
        await flush(self, chunk, stage)

    monkeypatch.setattr(Collector, "_flush", held)
    return reached, release


async def test_a_dry_run_holds_back_only_its_own_profile(
    pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    rehearsed = stack.profile_id
    other = await _second_profile(pool, rehearsed)
    reached, release = _hold_collect(monkeypatch)
    rehearsal = _start_dry_run(pool, settings, factory, rehearsed)
    try:
        await asyncio.wait_for(reached.wait(), DEADLINE)
        # Both fires in one claim statement, as a daemon sends fires arriving together.
        claims = FireClaims(pool=pool, replica_id="r-test", lease_seconds=30)
        claimed = await asyncio.wait_for(
            asyncio.gather(
                claims.claim(rehearsed, RunTrigger.SCHEDULE, FIRE),
                claims.claim(other, RunTrigger.SCHEDULE, FIRE),
            ),
            DEADLINE,
        )
        assert claimed[0] is None, "a profile being rehearsed was claimed"
        assert claimed[1] is not None and claimed[1]["profile_id"] == other
        await pool.execute(
            "UPDATE profile_run SET status = 'complete', finished_at = now() WHERE id = $1",
            claimed[1]["id"],
        )
        # The runner's fire of the rehearsed profile is skipped and says why, without waiting.
        runner = Runner(pool=pool, settings=settings, resources=factory)
        later = FIRE.replace(minute=5)
        outcome = await asyncio.wait_for(runner.fire(rehearsed, later), DEADLINE)
        assert outcome.status is RunStatus.SKIPPED
        assert outcome.error is not None and "dry run" in outcome.error
    finally:
        release.set()
        report = await asyncio.wait_for(rehearsal, DEADLINE)
    assert report.error is None and report.totals["created"] > 0  # it ran through
    # Once it ended, the profile is claimed as usual.
    assert await claims.claim(rehearsed, RunTrigger.SCHEDULE, FIRE.replace(minute=10)) is not None


def _hold_after_the_rehearsed_run(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[asyncio.Event, asyncio.Event]:
    """The dry run stops once its rehearsed run has ended, before its rollback: every row,
    decision and lock of the rehearsal is still held."""
    reached, release = asyncio.Event(), asyncio.Event()
    fetch = rehearsal_module.RehearsalPool.fetch
    touched = QUERIES["entity_touched_by_run"]

    async def held(self: rehearsal_module.RehearsalPool, query: str, *args: Any) -> Any:
        if query == touched:
            reached.set()
            await release.wait()
        return await fetch(self, query, *args)

    monkeypatch.setattr(rehearsal_module.RehearsalPool, "fetch", held)
    return reached, release


async def test_another_profile_of_the_client_exports_the_same_people_meanwhile(
    pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, stack: Stack, run_profile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Profile two (same shop, same FreeAgent client) runs while profile one's dry run, having
    decided to create every one of those people, still holds its transaction: it creates
    them all without waiting, and the dry run still ends as it would have."""
    other = await _second_profile(pool, stack.profile_id)
    reached, release = _hold_after_the_rehearsed_run(monkeypatch)
    rehearsal = _start_dry_run(pool, settings, factory, stack.profile_id)
    try:
        await asyncio.wait_for(reached.wait(), DEADLINE)
        outcome = await asyncio.wait_for(run_profile(other), DEADLINE)
    finally:
        release.set()
        report = await asyncio.wait_for(rehearsal, DEADLINE)
    assert outcome.status == RunStatus.COMPLETE, outcome.error
    assert outcome.counts.created == report.totals["created"] > 0
    assert outcome.counts.retrying == 0
    assert stack.freeagent.write_count() == outcome.counts.created  # the dry run sent none


async def test_an_event_for_a_profile_under_a_dry_run_is_refused_at_once_for_a_retry(
    pool: asyncpg.Pool, settings: Settings, factory: ClientFactory, stack: Stack, run_profile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A Magento event for a customer whose row the held dry run has rehearsed cannot be
    queued without waiting for the rehearsal: it is refused at once (the webhook answers 503
    and the sender retries), holding no connection, and is queued once the dry run ended."""
    assert (await run_profile(stack.profile_id)).status == RunStatus.COMPLETE
    customer_id = next(iter(stack.magento.customers.values()))["id"]
    stack.magento.update_customer(customer_id, lastname="Changed")  # the dry run updates it
    profiles = [Profile.from_row(await pool.fetchrow(QUERIES["profile_get"], stack.profile_id))]
    event = MagentoEvent(stack.connection_id, EventKind.SAVED, customer_id)
    reached, release = _hold_after_the_rehearsed_run(monkeypatch)
    rehearsal = _start_dry_run(pool, settings, factory, stack.profile_id)
    try:
        await asyncio.wait_for(reached.wait(), DEADLINE)
        with pytest.raises(ProfileRehearsed, match="dry run"):
            await asyncio.wait_for(queue_event(pool, factory, profiles, event), DEADLINE)
    finally:
        release.set()
        report = await asyncio.wait_for(rehearsal, DEADLINE)
    assert report.totals["updated"] == 1
    assert await queue_event(pool, factory, profiles, event) == [stack.profile_id]


async def test_operator_writes_to_a_profile_under_a_dry_run_are_refused_at_once(
    pool: asyncpg.Pool, database_dsn: str, settings: Settings, factory: ClientFactory,
    stack: Stack, run_profile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    """`match link`, `queue resolve` and `queue retry` on rows the held dry run has rehearsed
    say so and exit 1 at once, changing nothing, instead of waiting silently for the dry run;
    afterwards they work as usual."""
    assert (await run_profile(stack.profile_id)).status == RunStatus.COMPLETE
    failed, review = [dict(r) for r in await pool.fetch(
        "SELECT id, source_key, freeagent_url FROM contact_entity WHERE profile_id = $1 "
        "ORDER BY id LIMIT 2", stack.profile_id,
    )]  # fmt: skip
    await pool.execute("UPDATE contact_entity SET status = 'failed' WHERE id = $1", failed["id"])
    await pool.execute(
        "UPDATE contact_entity SET status = 'needs_review' WHERE id = $1", review["id"]
    )
    for row in (failed, review):  # the dry run collects both again: it holds their rows
        customer_id = int(row["source_key"].split(":")[1])
        stack.magento.update_customer(customer_id, lastname="Changed")
    reached, release = _hold_after_the_rehearsed_run(monkeypatch)
    rehearsal = _start_dry_run(pool, settings, factory, stack.profile_id)
    name = await pool.fetchval("SELECT name FROM profile WHERE id = $1", stack.profile_id)
    commands = [
        ("queue", "retry", "--profile", name),
        ("queue", "resolve", str(review["id"]), "--keep"),
        ("match", "link", str(failed["id"]), review["freeagent_url"]),
    ]
    try:
        await asyncio.wait_for(reached.wait(), DEADLINE)
        held = await pool.fetch(
            "SELECT id FROM contact_entity WHERE id = ANY($1) FOR UPDATE SKIP LOCKED",
            [failed["id"], review["id"]],
        )
        assert held == [], "the dry run does not hold the rows: the test proves nothing"
        for command in commands:
            code, out, err = await asyncio.wait_for(
                fa_sync(*command, dsn=database_dsn, cwd=tmp_path), DEADLINE
            )
            assert code == 1, (command, out, err)
            assert "dry run of it is in progress" in " ".join((out + err).split()), command
    finally:
        release.set()
        await asyncio.wait_for(rehearsal, DEADLINE)
    statuses = dict(await pool.fetch(
        "SELECT id, status::text FROM contact_entity WHERE id = ANY($1)",
        [failed["id"], review["id"]],
    ))  # fmt: skip
    assert statuses == {failed["id"]: "failed", review["id"]: "needs_review"}
    for command in commands[:2]:  # after the dry run: done as usual
        code, out, err = await fa_sync(*command, dsn=database_dsn, cwd=tmp_path)
        assert code == 0, (command, out, err)
    statuses = dict(await pool.fetch(
        "SELECT id, status::text FROM contact_entity WHERE id = ANY($1)",
        [failed["id"], review["id"]],
    ))  # fmt: skip
    assert statuses == {failed["id"]: "pending", review["id"]: "pending"}
