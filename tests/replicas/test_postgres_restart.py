"""PostgreSQL restarting mid-run: the daemon lives on, reconnects, re-LISTENs and finishes.

One scenario per module, on a throwaway cluster (the shared test server must not restart
under other tests): a daemon is exporting when PostgreSQL is stopped with `pg_ctl -m fast`
(every connection dropped) and started again. Each test states one rule about the outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.db.pool import create_pool, migrate
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from tests.replicas.checks import ExportCheck, check_export, settled
from tests.replicas.harness import FAST, Cluster, Event, event_is, fast_freeagent
from tests.replicas.postgres import Postgres
from tests.secretkeys import sealing_box

#: No periodic resync during the test: a profile change applied after the restart can only
#: have come through the re-established LISTEN.
SETTINGS = {**FAST, "resync_seconds": 600}


@dataclass(frozen=True)
class Restarted:
    """What the daemon did around the restart, and the end state."""

    alive_after: bool  #: the process was still running when the work was done
    exit_code: int  #: after the final SIGTERM
    events_after_restart: list[Event]
    notified_schedule: str | None  #: schedule the daemon applied from a post-restart NOTIFY
    runs: list[dict[str, Any]]
    final: ExportCheck


async def _apply_schedule(cluster: Cluster, pool: asyncpg.Pool, stack: Stack, cron: str) -> Event:
    """UPDATE the profile from another connection and await the daemon's schedule_set."""
    mark = cluster.mark()
    await pool.execute("UPDATE profile SET schedule = $2 WHERE id = $1", stack.profile_id, cron)
    return await cluster.wait_for(
        lambda e: e.get("event") == "schedule_set" and e.get("schedule") == cron,
        since=mark,
        within=30,
    )


async def _play(pg: Postgres, workdir: Path) -> Restarted:
    await pg.init()
    await pg.start()
    admin = await asyncpg.connect(pg.dsn())
    await admin.execute("CREATE DATABASE fa_sync")
    await admin.close()
    dsn = pg.dsn("fa_sync")
    pool = await create_pool(dsn, max_size=4)
    await migrate(pool)
    magento = MagentoState.seeded(customers=60, guest_orders=4)
    cluster = Cluster(dsn=dsn, workdir=workdir, settings=SETTINGS)
    try:
        async with simulators(freeagent=fast_freeagent(latency=0.1), magento=magento) as s:
            stack = await register(pool, s, secrets=sealing_box(), schedule="*/2 * * * * *")
            await cluster.start_ready("daemon")
            await cluster.wait_for(event_is("contact_created"), within=30)
            await pool.close()
            mark = cluster.mark()
            await pg.stop("fast")
            # Down long enough that the run fails and reconnecting fails at least once.
            await cluster.wait_for(event_is("fire_failed"), since=mark, within=30)
            first = await cluster.wait_for(event_is("listener_reconnecting"), since=mark, within=30)
            await cluster.wait_for(
                event_is("listener_reconnecting"), since=first["seq"] + 1, within=30
            )
            await pg.start()
            restarted = cluster.mark()
            await cluster.wait_for(event_is("listening"), since=restarted, within=60)
            pool = await create_pool(dsn, max_size=4)
            # The first change may race the reload that follows reconnecting; the second
            # can only arrive by NOTIFY.
            await _apply_schedule(cluster, pool, stack, "* * * * * *")
            notified = await _apply_schedule(cluster, pool, stack, "*/2 * * * * *")
            await cluster.settle(
                lambda: settled(pool, magento), on=event_is("run_finished"), within=90
            )
            alive = cluster.replicas["daemon"].alive
            codes = await cluster.stop_all()
            runs = [dict(r) for r in await pool.fetch("SELECT * FROM profile_run ORDER BY id")]
            final = await check_export(pool, stack.freeagent)
        return Restarted(
            alive,
            codes["daemon"],
            cluster.events[restarted:],
            notified.get("schedule"),
            runs,
            final,
        )
    finally:
        await cluster.close()
        await pool.close()


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Restarted:
    """The scenario, played once for the module's tests."""

    async def play() -> Restarted:
        pg = Postgres.in_temp_dir()
        try:
            return await _play(pg, tmp_path_factory.mktemp("pg-restart"))
        finally:
            await pg.destroy()

    return asyncio.run(play())


def test_daemon_survives_a_postgres_restart(restarted: Restarted) -> None:
    """The process keeps running through the restart and exits 0 on SIGTERM afterwards."""
    assert restarted.alive_after
    assert restarted.exit_code == 0
    assert [
        e for e in restarted.events_after_restart if e.get("event") == "background_task_died"
    ] == []


def test_daemon_listens_again_after_the_restart(restarted: Restarted) -> None:
    """A profile change made after the restart reaches the daemon by NOTIFY."""
    assert restarted.notified_schedule == "*/2 * * * * *"


def test_interrupted_run_is_closed_and_the_work_completed(restarted: Restarted) -> None:
    """The run cut off by the restart is closed (not left running) and later runs export
    every customer exactly once."""
    assert [r["id"] for r in restarted.runs if r["status"] == "running"] == []
    assert any(r["status"] == "error" for r in restarted.runs)
    assert restarted.final.problems == []
    assert restarted.final.duplicates == {}
    assert restarted.final.exported == restarted.final.customers - restarted.final.skipped
