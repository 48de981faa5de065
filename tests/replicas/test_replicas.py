"""Three replicas on one database: each scheduled fire runs once, runs never overlap.

One scenario (three `fa-sync run` processes, a profile firing every two seconds, runs about as
long as the interval so some fires find the profile busy) is played once per module; each
test states one rule about the history it left.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.db.pool import create_pool
from daemon.scheduler import latest_fire_time, next_fire_time, parse_cron
from simulators.magento import MagentoState
from simulators.stack import register, simulators
from tests.replicas.harness import (
    FAST,
    Cluster,
    Event,
    event_is,
    fast_freeagent,
    play_once,
)
from tests.secretkeys import sealing_box

SCHEDULE = "*/2 * * * * *"
#: How long the replicas run, in seconds of fires.
WINDOW = 24.0
#: Fires this close to the stop are left out: a busy scheduler may not have claimed them yet.
STOP_MARGIN = timedelta(seconds=2)
REPLICAS = ("r0", "r1", "r2")


@dataclass(frozen=True)
class History:
    """What the scenario left: cron fires in the window, profile_run rows, daemon events."""

    fires: list[datetime]
    rows: list[dict[str, Any]]
    events: list[Event]
    exit_codes: dict[str, int]


def _when(event: Event) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


async def _play(dsn: str, workdir: Path) -> History:
    pool = await create_pool(dsn, max_size=4)
    # Slow FreeAgent: a run takes about one interval, so some fires find the profile busy.
    freeagent = fast_freeagent(latency=0.55)
    magento = MagentoState.seeded(customers=12, guest_orders=0)
    cluster = Cluster(dsn=dsn, workdir=workdir, settings={**FAST, "lease_seconds": 6})
    try:
        async with simulators(freeagent=freeagent, magento=magento) as s:
            stack = await register(pool, s, secrets=sealing_box(), schedule=SCHEDULE)
            for name in REPLICAS:
                await cluster.start(name)
            for name in REPLICAS:
                await cluster.wait_for(event_is("schedule_set", replica=name), within=30)
            begin = datetime.now(UTC)
            stop_at = await _keep_busy(cluster, magento, until=begin + timedelta(seconds=WINDOW))
            exit_codes = await cluster.stop_all()
        schedule = parse_cron(SCHEDULE)
        fires = []
        fire = next_fire_time(schedule, begin - timedelta(microseconds=1))
        while fire <= stop_at - STOP_MARGIN:
            fires.append(fire)
            fire = next_fire_time(schedule, fire)
        rows = [
            dict(r)
            for r in await pool.fetch(
                "SELECT * FROM profile_run WHERE profile_id = $1 ORDER BY scheduled_for",
                stack.profile_id,
            )
        ]
        return History(fires, rows, list(cluster.events), exit_codes)
    finally:
        await cluster.close()
        await pool.close()


async def _keep_busy(cluster: Cluster, magento: MagentoState, *, until: datetime) -> datetime:
    """A new customer after every finished run, until a fire at or after `until` is seen."""
    since, added = 0, 0
    while True:
        event = await cluster.wait_for(
            event_is("run_started", "run_skipped", "run_finished"), since=since, within=30
        )
        since = event["seq"] + 1
        if event["event"] == "run_finished":
            added += 1
            magento.add_customer(
                email=f"replica.{added}@example.com",
                firstname="Replica",
                lastname=f"Customer{added}",
            )
        if _when(event) >= until:
            return _when(event)


@pytest.fixture(scope="module")
def history(
    pg_server_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> History:
    """The scenario, played once for the module's tests."""
    return play_once(pg_server_dsn, template_db, tmp_path_factory.mktemp("replicas"), _play)


def _scheduled(history: History) -> list[dict[str, Any]]:
    return [r for r in history.rows if r["trigger"] == "schedule"]


def test_every_fire_in_the_window_has_exactly_one_row(history: History) -> None:
    """Each cron fire while three replicas ran left one profile_run row, run or skipped."""
    rows_per_fire = Counter(r["scheduled_for"] for r in _scheduled(history))
    assert len(history.fires) >= WINDOW / 2 - 2
    missing = [f for f in history.fires if rows_per_fire[f] == 0]
    assert missing == []
    assert all(rows_per_fire[f] == 1 for f in history.fires)
    in_window = [r for r in _scheduled(history) if r["scheduled_for"] in history.fires]
    statuses = Counter(r["status"] for r in in_window)
    assert statuses["complete"] + statuses["warning"] > 0
    assert statuses["skipped"] > 0, "runs last about one interval: some fires find it busy"


def test_replicas_agree_on_the_time_of_each_fire(history: History) -> None:
    """No replica records a fire at a time of its own: every row is at a cron fire time."""
    schedule = parse_cron(SCHEDULE)
    for row in _scheduled(history):
        at = row["scheduled_for"]
        assert latest_fire_time(schedule, at, timedelta(0)) == at, row


def test_each_fire_is_run_by_one_replica_only(history: History) -> None:
    """A fire that ran was started by exactly one daemon, once."""
    started = Counter(e["scheduled_for"] for e in history.events if e.get("event") == "run_started")
    assert started, "no run started"
    assert max(started.values()) == 1
    ran = {r["scheduled_for"].isoformat() for r in _scheduled(history) if r["status"] != "skipped"}
    assert set(started) == ran


#: started_at is the claim statement's now(), taken before it waits for a run still being
#: closed to commit; so a claim queued behind a finish can read up to that statement's length
#: earlier than the finish. Runs that really overlapped would overlap by a whole run.
CLOSE_WAIT = timedelta(milliseconds=50)


def test_runs_of_one_profile_never_overlap(history: History) -> None:
    """Each run finished before the next one started."""
    runs = sorted(
        (r for r in history.rows if r["status"] != "skipped"), key=lambda r: r["started_at"]
    )
    assert len(runs) >= 3
    for earlier, later in itertools.pairwise(runs):
        assert earlier["finished_at"] is not None, earlier
        assert earlier["finished_at"] <= later["started_at"] + CLOSE_WAIT, (earlier, later)


def test_replicas_stop_cleanly(history: History) -> None:
    """SIGTERM ends every replica with exit code 0 and leaves no run running."""
    assert history.exit_codes == dict.fromkeys(REPLICAS, 0)
    assert [r for r in history.rows if r["status"] == "running"] == []
