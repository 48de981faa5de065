"""The daemon: live schedules from profile rows, bad rows isolated, runs on schedule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest

from daemon.process import Daemon, Services
from daemon.resources import ClientFactory
from daemon.settings import Settings
from simulators.stack import Stack

WAIT = 10.0


async def _until(cond: asyncio.Condition, predicate: Callable[[], bool]) -> None:
    async with cond:
        await asyncio.wait_for(cond.wait_for(predicate), WAIT)


@pytest.fixture
async def daemon(
    pool: asyncpg.Pool, database_dsn: str, settings: Settings, factory: ClientFactory
) -> AsyncIterator[Daemon]:
    """A running daemon on this test's database; stopped (and drained) afterwards."""
    async with aiohttp.ClientSession() as session:
        services = Services(settings, database_dsn, pool, factory, session)
        d = Daemon(services)
        stop = asyncio.Event()
        task = asyncio.create_task(d.serve(stop))
        await _until(d.reloaded, lambda: d.reload_count >= 1)
        yield d
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def _reloaded_after(d: Daemon, action: Callable[[], object]) -> None:
    before = d.reload_count
    await action()  # type: ignore[misc]
    await _until(d.reloaded, lambda: d.reload_count > before)


async def test_schedule_update_from_another_connection_applies_live(
    pool: asyncpg.Pool, database_dsn: str, stack: Stack, daemon: Daemon
) -> None:
    """UPDATE profile SET schedule=... from psql changes the running schedule, no restart."""
    assert daemon.scheduler.next_fire(stack.profile_id) is not None
    other = await asyncpg.connect(database_dsn)
    try:
        await _reloaded_after(
            daemon,
            lambda: other.execute(
                "UPDATE profile SET schedule = '0 3 1 1 *' WHERE id = $1", stack.profile_id
            ),
        )
    finally:
        await other.close()
    next_fire = daemon.scheduler.next_fire(stack.profile_id)
    assert next_fire is not None
    assert (next_fire.astimezone(UTC).month, next_fire.day, next_fire.hour) == (1, 1, 3)


async def test_disabling_a_profile_unschedules_it(
    pool: asyncpg.Pool, stack: Stack, daemon: Daemon
) -> None:
    """enabled = false removes the job; true brings it back."""
    await _reloaded_after(daemon, lambda: pool.execute("UPDATE profile SET enabled = false"))
    assert daemon.scheduler.next_fire(stack.profile_id) is None
    await _reloaded_after(daemon, lambda: pool.execute("UPDATE profile SET enabled = true"))
    assert daemon.scheduler.next_fire(stack.profile_id) is not None


async def test_bad_profile_rows_are_flagged_and_others_keep_running(
    pool: asyncpg.Pool, stack: Stack, daemon: Daemon
) -> None:
    """A row with a bad cron value or bad settings is flagged; the good profile still runs."""
    client, magento = stack.client_id, stack.connection_id
    await _reloaded_after(
        daemon,
        lambda: pool.execute(
            """INSERT INTO profile (name, type, client_id, connection_id, schedule, settings) VALUES
           ('bad-cron', 'freeagent_contact_export', $1, $2, '61 * * * *', '{}'),
           ('bad-settings', 'freeagent_contact_export', $1, $2, '* * * * *',
            '{"contact": {"charge_sales_tax": "Sometimes"}}')""",
            client,
            magento,
        ),
    )
    errors = {
        r["name"]: r["config_error"]
        for r in await pool.fetch(
            "SELECT p.name, s.config_error FROM profile p"
            " LEFT JOIN profile_state s ON s.profile_id = p.id"
        )
    }
    assert "61" in errors["bad-cron"]
    assert "charge_sales_tax" in errors["bad-settings"]
    assert errors["demo"] is None
    # The good profile fires on schedule while the bad ones sit flagged.
    await _reloaded_after(
        daemon,
        lambda: pool.execute("UPDATE profile SET schedule = '* * * * * *' WHERE name = 'demo'"),
    )
    await _until(
        daemon.runs_changed,
        lambda: any(o.run_id and o.status in ("complete", "warning") for o in daemon.outcomes),
    )
    assert len(stack.freeagent.contacts_list()) > 0


async def test_fixing_a_flagged_profile_clears_the_flag(
    pool: asyncpg.Pool, stack: Stack, daemon: Daemon
) -> None:
    """Once the row is corrected the flag goes and the profile is scheduled."""
    await _reloaded_after(
        daemon,
        lambda: pool.execute(
            "UPDATE profile SET schedule = '0 25 * * *' WHERE id = $1", stack.profile_id
        ),
    )
    flagged = await pool.fetchval(
        "SELECT config_error FROM profile_state WHERE profile_id = $1", stack.profile_id
    )
    assert flagged
    await _reloaded_after(
        daemon,
        lambda: pool.execute(
            "UPDATE profile SET schedule = '*/5 * * * *' WHERE id = $1", stack.profile_id
        ),
    )
    assert (
        await pool.fetchval(
            "SELECT config_error FROM profile_state WHERE profile_id = $1", stack.profile_id
        )
        is None
    )
    assert daemon.scheduler.next_fire(stack.profile_id) is not None


async def test_each_scheduled_fire_gets_one_history_row(
    pool: asyncpg.Pool, stack: Stack, daemon: Daemon
) -> None:
    """Scheduled runs are recorded with trigger=schedule and their scheduled time."""
    await _reloaded_after(
        daemon,
        lambda: pool.execute(
            "UPDATE profile SET schedule = '* * * * * *' WHERE id = $1", stack.profile_id
        ),
    )
    await _until(daemon.runs_changed, lambda: sum(1 for o in daemon.outcomes if o.run_id) >= 2)
    rows = await pool.fetch("SELECT * FROM profile_run WHERE trigger = 'schedule' ORDER BY id")
    assert len({r["scheduled_for"] for r in rows}) == len(rows)
    assert all(r["scheduled_for"].microsecond == 0 for r in rows)
    assert datetime.now(UTC) >= rows[0]["scheduled_for"]


async def test_history_older_than_the_retention_is_purged(
    pool: asyncpg.Pool, stack: Stack, daemon: Daemon
) -> None:
    """Runs older than history_retention_days (7) go; recent ones and the running one stay."""
    await pool.execute(
        """INSERT INTO profile_run (profile_id, trigger, scheduled_for, status)
           VALUES ($1, 'schedule', now() - interval '8 days', 'complete'),
                  ($1, 'schedule', now() - interval '6 days', 'complete')""",
        stack.profile_id,
    )
    await daemon.purge_history()
    ages = [
        r["age"]
        for r in await pool.fetch(
            "SELECT extract(day FROM now() - scheduled_for)::int AS age FROM profile_run"
        )
    ]
    assert ages == [6]


async def test_profiles_without_history_keep_only_their_last_run(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """history_enabled = false keeps the newest finished run only."""
    await pool.execute("UPDATE profile SET history_enabled = false")
    first = await run_profile(stack.profile_id)
    second = await run_profile(stack.profile_id)
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM profile_run")]
    assert ids == [second.run_id] and first.run_id != second.run_id
