"""SIGTERM mid-export: the daemon drains within its grace period and hands its work back.

One scenario per module: a daemon is stopped with SIGTERM while a batch far longer than
FA_SYNC_SHUTDOWN_GRACE_SECONDS is in flight; then a second daemon is started on the same
database and left to finish. Each test states one rule about what that left behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemon.db.pool import create_pool
from simulators.magento import MagentoState
from simulators.stack import register, simulators
from tests.replicas.checks import ExportCheck, check_export, settled
from tests.replicas.harness import (
    FAST,
    Cluster,
    event_is,
    fast_freeagent,
    play_once,
)
from tests.secretkeys import sealing_box

GRACE = 2.0
#: Allowed on top of the grace: interpreter exit, closing the pool and the HTTP session.
MARGIN = 8.0


@dataclass(frozen=True)
class Drained:
    """What SIGTERM left, and how the next daemon finished."""

    exit_code: int
    stop_seconds: float  #: SIGTERM to exit
    runs_after_stop: list[dict[str, Any]]
    rows_after_stop: list[dict[str, Any]]
    final: ExportCheck
    events: list[dict[str, Any]]


async def _play(dsn: str, workdir: Path) -> Drained:
    pool = await create_pool(dsn, max_size=4)
    # 100 rows per batch, 4 at a time, 0.15 s each: a batch takes about 4 s, twice the grace.
    freeagent = fast_freeagent(latency=0.15)
    magento = MagentoState.seeded(customers=110, guest_orders=0)
    cluster = Cluster(dsn=dsn, workdir=workdir, settings={**FAST, "shutdown_grace_seconds": GRACE})
    try:
        async with simulators(freeagent=freeagent, magento=magento) as s:
            stack = await register(pool, s, secrets=sealing_box(), schedule="*/2 * * * * *")
            await cluster.start("first")
            await cluster.wait_for(event_is("contact_created"), within=30)
            began = time.monotonic()
            code = await cluster.terminate("first", within=GRACE + MARGIN)
            stop_seconds = time.monotonic() - began
            runs = [dict(r) for r in await pool.fetch("SELECT * FROM profile_run ORDER BY id")]
            rows = [
                dict(r)
                for r in await pool.fetch(
                    "SELECT id, status::text, claimed_by_run, freeagent_url FROM contact_entity"
                )
            ]
            await cluster.start("second")
            await cluster.settle(
                lambda: settled(pool, magento), on=event_is("run_finished"), within=60
            )
            await cluster.stop_all()
            final = await check_export(pool, stack.freeagent)
        return Drained(code, stop_seconds, runs, rows, final, list(cluster.events))
    finally:
        await cluster.close()
        await pool.close()


@pytest.fixture(scope="module")
def drained(
    pg_server_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Drained:
    """The scenario, played once for the module's tests."""
    return play_once(pg_server_dsn, template_db, tmp_path_factory.mktemp("shutdown"), _play)


def test_sigterm_mid_export_exits_zero_within_the_grace_period(drained: Drained) -> None:
    """SIGTERM during a long batch: exit code 0, within the grace period plus a margin."""
    assert drained.exit_code == 0
    assert drained.stop_seconds < GRACE + MARGIN


def test_sigterm_closes_the_run_it_interrupted(drained: Drained) -> None:
    """No run is left running; the cut-short run is closed as interrupted, not lost."""
    assert [r["id"] for r in drained.runs_after_stop if r["status"] == "running"] == []
    interrupted = [r for r in drained.runs_after_stop if r["status"] == "interrupted"]
    assert interrupted, "the batch outlived the grace period, so a run was cut short"
    assert all("interrupted by shutdown" in (r["error_summary"] or "") for r in interrupted)


def test_sigterm_hands_unfinished_rows_back_to_the_queue(drained: Drained) -> None:
    """No ledger row stays claimed by the stopped daemon; unfinished rows are pending again."""
    rows = drained.rows_after_stop
    assert [r["id"] for r in rows if r["claimed_by_run"] is not None] == []
    assert [r["id"] for r in rows if r["status"] == "processing"] == []
    assert any(r["status"] == "pending" for r in rows), "the batch should not have finished"
    assert any(r["status"] == "created" for r in rows), "the batch should have started"


def test_the_next_daemon_finishes_the_work_without_duplicates(drained: Drained) -> None:
    """A daemon started afterwards exports every remaining customer, each exactly once."""
    assert drained.final.problems == []
    assert drained.final.duplicates == {}
    assert drained.final.exported == drained.final.customers - drained.final.skipped
