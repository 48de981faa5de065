"""The runner: one run per profile at a time, one run per fire, dead owners replaced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from daemon.context import RunOptions
from daemon.db.records import RunTrigger
from daemon.runner import Runner
from simulators.stack import Stack


async def _fake_running_run(pool: asyncpg.Pool, profile_id: int, lease: timedelta) -> int:
    return await pool.fetchval(
        """INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, started_at, owner,
                                    lease_expires_at, fence)
           VALUES ($1, 'schedule', now() - interval '1 minute', 'running', now(), 'other-host:1',
                   now() + $2, nextval('profile_run_fence')) RETURNING id""",
        profile_id,
        lease,
    )


async def test_cli_run_is_refused_while_another_replica_runs_the_profile(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A CLI export and a scheduled run never overlap: the second is recorded as skipped."""
    busy = await _fake_running_run(pool, stack.profile_id, timedelta(minutes=5))
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "skipped"
    assert f"run #{busy}" in (outcome.error or "")
    assert stack.freeagent.contacts_list() == []
    row = await pool.fetchrow("SELECT * FROM profile_run WHERE id = $1", outcome.run_id)
    assert row["status"] == "skipped" and row["trigger"] == "cli"


async def test_run_of_a_dead_replica_is_closed_when_its_lease_expires(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """An expired lease frees the profile: the old run is closed as error, the new one runs."""
    dead = await _fake_running_run(pool, stack.profile_id, timedelta(seconds=-1))
    outcome = await run_profile(stack.profile_id)
    assert outcome.status in ("complete", "warning")
    old = await pool.fetchrow("SELECT * FROM profile_run WHERE id = $1", dead)
    assert old["status"] == "error" and "lease expired" in old["error_summary"]


async def test_a_fire_runs_once_however_many_replicas_claim_it(
    pool: asyncpg.Pool, stack: Stack, settings, factory
) -> None:
    """Replicas firing the same scheduled time produce one run row between them."""
    fire = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    runners = [
        Runner(
            pool=pool,
            settings=settings.model_copy(update={"replica_id": f"r{i}"}),
            resources=factory,
        )
        for i in range(3)
    ]
    outcomes = [
        await r.fire(
            stack.profile_id, fire, trigger=RunTrigger.SCHEDULE, options=RunOptions(collect=False)
        )
        for r in runners
    ]
    rows = await pool.fetch("SELECT * FROM profile_run WHERE scheduled_for = $1", fire)
    assert len(rows) == 1
    assert sum(1 for o in outcomes if o.run_id is not None) == 1


async def test_ledger_writes_are_fenced_after_a_takeover(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """A replica whose run was taken over can no longer record outcomes (fencing)."""
    from daemon.db.queries import QUERIES

    await run_profile(stack.profile_id, export=False)
    old = await _fake_running_run(pool, stack.profile_id, timedelta(minutes=5))
    fence = await pool.fetchval("SELECT fence FROM profile_run WHERE id = $1", old)
    rows = await pool.fetch(
        QUERIES["entity_claim_batch"], stack.profile_id, old, fence, None, 5, datetime.now(UTC), 300
    )
    assert rows
    # Another replica declares the lease dead and takes the profile over.
    await pool.execute("UPDATE profile_run SET lease_expires_at = now() - interval '1 s'")
    await pool.fetch(QUERIES["run_expire_stale"], stack.profile_id)
    written = await pool.fetchval(
        QUERIES["entity_finish"],
        rows[0]["id"],
        old,
        fence,
        "created",
        "http://x/1",
        "h",
        None,
        {},
        {},
    )
    assert written is None


class _RunEndsBeforeLookingWhoIsBusy:
    """A pool on which the running run finishes just after a claim was refused because of
    it, and before the runner looks at what refused it: the window between two statements."""

    def __init__(self, pool: asyncpg.Pool, busy_run: int) -> None:
        self._pool = pool
        self._busy_run = busy_run

    def __getattr__(self, name: str) -> object:
        return getattr(self._pool, name)

    async def fetch(self, query: str, *args: object) -> object:
        from daemon.db.queries import QUERIES

        if query == QUERIES["run_claim_refused"] and self._busy_run:
            await self._pool.execute(
                "UPDATE profile_run SET status = 'complete', finished_at = now() WHERE id = $1",
                self._busy_run,
            )
            self._busy_run = 0
        return await self._pool.fetch(query, *args)


async def test_a_fire_refused_by_a_run_that_ends_at_that_moment_still_runs(
    pool: asyncpg.Pool, stack: Stack, settings, factory
) -> None:
    """A fire that met a run finishing at that very moment is run (or recorded), never lost."""
    busy = await _fake_running_run(pool, stack.profile_id, timedelta(minutes=5))
    fire = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    runner = Runner(
        pool=_RunEndsBeforeLookingWhoIsBusy(pool, busy),
        settings=settings,  # type: ignore[arg-type]
        resources=factory,
    )
    outcome = await runner.fire(
        stack.profile_id,
        fire,
        trigger=RunTrigger.SCHEDULE,
        options=RunOptions(collect=False, export=False),
    )
    rows = await pool.fetch("SELECT * FROM profile_run WHERE scheduled_for = $1", fire)
    assert len(rows) == 1, outcome
    assert rows[0]["status"] == "complete"


async def test_fires_arriving_together_are_claimed_in_one_statement(
    pool: asyncpg.Pool, stack: Stack, settings, factory
) -> None:
    """Twenty profiles firing at one instant: every fire is claimed, by one statement."""
    import asyncio

    from daemon.db.queries import QUERIES

    ids = [stack.profile_id]
    for n in range(19):
        row = await pool.fetchrow(
            QUERIES["profile_insert"], f"shop{n}", "freeagent_contact_export", stack.client_id,
            stack.connection_id, "0 3 1 1 *", {},
        )  # fmt: skip
        ids.append(row["id"])
    fire = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    runner = Runner(pool=pool, settings=settings, resources=factory)
    options = RunOptions(collect=False, export=False)
    outcomes = await asyncio.gather(
        *(runner.fire(i, fire, trigger=RunTrigger.SCHEDULE, options=options) for i in ids)
    )
    assert [o.status for o in outcomes] == ["complete"] * len(ids)
    rows = await pool.fetch("SELECT profile_id FROM profile_run WHERE scheduled_for = $1", fire)
    assert sorted(r["profile_id"] for r in rows) == sorted(ids)
    assert runner.claims.claims.calls == 1
    assert runner.claims.profiles.calls == 1


async def test_a_fire_another_replica_took_records_nothing(
    pool: asyncpg.Pool, stack: Stack, settings, factory
) -> None:
    """Losing the race for a fire that is still running is "fire already taken": no skipped
    row, no run, however the winner is getting on."""
    fire = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    await pool.execute(
        """INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, started_at,
                                    owner, lease_expires_at, fence)
           VALUES ($1, 'schedule', $2, 'running', now(), 'other-host:1',
                   now() + interval '5 minutes', nextval('profile_run_fence'))""",
        stack.profile_id, fire,
    )  # fmt: skip
    runner = Runner(pool=pool, settings=settings, resources=factory)
    outcome = await runner.fire(stack.profile_id, fire, trigger=RunTrigger.SCHEDULE)
    assert (outcome.run_id, outcome.error) == (None, "fire already taken")
    assert await pool.fetchval("SELECT count(*) FROM profile_run") == 1
