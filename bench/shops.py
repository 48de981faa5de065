"""Measure 6: many shops on one daemon, then on three.

`profiles` profiles, each with a FreeAgent app (a user) of its own, share one Magento store of
a few customers and fire every `every` seconds (a minute, compressed) in `fa-sync run`
subprocesses (tests/replicas/harness.py). First every profile's first sync drains: records
exported per second from the first run's start to the last one's end. Then steady state: a few
customers change before every fire; fire lateness is started_at - scheduled_for of those
runs (profile_run), CPU is the daemon's (/proc) over the steady phase. Then the same first
sync on a fresh database and simulator with three daemons: the throughput ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.stack import UNLIMITED_IP, Sims, register, scratch_database, sims
from bench.table import Row, percentile, ratio
from daemon.db.pool import create_pool
from daemon.db.queries import QUERIES
from tests.replicas.harness import Cluster, event_is

CUSTOMERS = 8  #: customers in the shared store: each profile's first sync
CHANGED = 3  #: customers saved before every steady-state fire
EXHAUSTED = "no database connection free"
#: Real FreeAgent limits per user; the per-IP limit is lifted (every shop calls from here).
#: Each user is a company of its own, as each shop's accounts are.
FREEAGENT = {"per_ip_per_minute": UNLIMITED_IP, "company_per_user": True}
#: fa-sync is told the same: no per-address budget (the measure is the daemon's cost, not
#: FreeAgent's per-IP cap, which 500 busy shops on one address would reach).
DAEMON = {"resync_seconds": 30, "record_retry_base_seconds": 0, "log_level": "INFO",
          "rate_egress_per_minute": 0}  # fmt: skip


@dataclass
class FirstSync:
    exported: int
    seconds: float

    @property
    def rate(self) -> float:
        return ratio(self.exported, self.seconds)


def exported(run: asyncpg.Record) -> int:
    return int(run["created"] + run["updated"] + run["linked"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far (Linux: /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def runs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch(QUERIES["run_history"], None, 1_000_000))


async def first_sync(
    cluster: Cluster, pool: asyncpg.Pool, profiles: int, within: float
) -> FirstSync:
    """Await a finished run with records for every profile; the span of those first runs."""

    async def drained() -> bool:
        done = {r["profile_id"] for r in await runs(pool) if r["finished_at"] and exported(r)}
        return len(done) >= profiles

    await cluster.settle(drained, on=event_is("run_finished", "process_exited"), within=within)
    first: dict[int, asyncpg.Record] = {}
    for run in sorted(await runs(pool), key=lambda r: r["scheduled_for"]):
        if run["finished_at"] and exported(run) and run["profile_id"] not in first:
            first[run["profile_id"]] = run
    start = min(r["started_at"] for r in first.values())
    end = max(r["finished_at"] for r in first.values())
    return FirstSync(sum(exported(r) for r in first.values()), (end - start).total_seconds())


@contextlib.asynccontextmanager
async def shops(name: str, profiles: int, schedule: str):  # type: ignore[no-untyped-def]
    """A database with `profiles` profiles on their own simulator process, and a cluster."""
    dsn = await scratch_database(name)
    async with sims(customers=CUSTOMERS, freeagent=FREEAGENT) as stack:
        pool = await create_pool(dsn, max_size=4)
        cluster = Cluster(dsn=dsn, workdir=Path(tempfile.mkdtemp(prefix="fa-sync-bench-")),
                          settings=DAEMON)  # fmt: skip
        try:
            await register(pool, stack, profiles=profiles, schedule=schedule)
            yield stack, pool, cluster
        finally:
            await cluster.close()
            await pool.close()


async def steady(
    stack: Sims, pool: asyncpg.Pool, cluster: Cluster, pid: int, every: int, fires: int,
    profiles: int,
) -> dict[str, Any]:  # fmt: skip
    """`fires` rounds of changed customers; lateness and CPU of the runs they cause. A daemon
    that falls behind coalesces fires: the runs counted are then fewer than fires x profiles."""
    since = datetime.now().astimezone()
    cpu = cpu_seconds(pid)
    mark = cluster.mark()
    for _ in range(fires):
        await stack.touch(CHANGED)
        await asyncio.sleep(every)  # the load is a schedule: one round of edits per fire

    async def caught_up() -> bool:
        phase = [r for r in await runs(pool) if r["scheduled_for"] >= since]
        fired = {r["profile_id"] for r in phase if r["finished_at"]}
        return len(fired) >= profiles and all(r["finished_at"] for r in phase)

    with contextlib.suppress(AssertionError):  # still behind: measured as it stands
        await cluster.settle(caught_up, on=event_is("run_finished"), within=every * 5)
    cpu = cpu_seconds(pid) - cpu
    late = [r for r in await runs(pool) if r["scheduled_for"] >= since and r["started_at"]]
    lateness = [(r["started_at"] - r["scheduled_for"]).total_seconds() for r in late]
    records = sum(exported(r) for r in late)
    errors = cluster.select(lambda e: EXHAUSTED in str(e), since=mark)
    return {"lateness": lateness, "runs": len(late), "records": records, "cpu": cpu,
            "exhausted": len(errors)}  # fmt: skip


async def measure(quick: bool) -> list[Row]:
    profiles, every, fires = (10, 5, 1) if quick else (500, 60, 2)
    schedule = "0 * * * * *" if every == 60 else f"*/{every} * * * * *"
    within = 120 if quick else 900
    async with shops("shops_one", profiles, schedule) as (stack, pool, cluster):
        replica = await cluster.start_ready("a")
        one = await first_sync(cluster, pool, profiles, within)
        assert replica.proc is not None
        state = await steady(stack, pool, cluster, replica.proc.pid, every, fires, profiles)
        await cluster.stop_all()
    async with shops("shops_three", profiles, schedule) as (stack, pool, cluster):
        await asyncio.gather(*(cluster.start_ready(n) for n in "abc"))
        three = await first_sync(cluster, pool, profiles, within)
        await cluster.stop_all()
    p99 = percentile(state["lateness"], 0.99)
    p50 = percentile(state["lateness"], 0.5)
    scale = ratio(three.rate, one.rate)
    per_record = ratio(state["cpu"], state["records"])
    return [
        Row(
            f"many shops: p99 fire lateness ({profiles} profiles, every {every} s, one daemon)",
            f"{p99:.2f} s" if state["runs"] else "-",
            "<= 1 s",
            f"p50 {p50:.2f} s over {state['runs']} runs of {profiles * fires} fires",
            p99 <= 1 if state["runs"] else None,
        ),
        Row(
            "many shops: pool exhaustion errors",
            str(state["exhausted"]),
            "0",
            "log lines naming an exhausted pool",
            state["exhausted"] == 0,
        ),
        Row(
            "many shops: CPU-seconds per exported record (steady state)",
            f"{per_record * 1000:.1f} ms",
            "",
            f"{state['cpu']:.1f} CPU-s / {state['records']:,} records",
        ),
        Row(
            f"many shops: 3 daemons vs 1 (first sync, {profiles} x {CUSTOMERS} customers)",
            f"{scale:.2f}x",
            ">= 2.5x",
            f"3 daemons {three.rate:,.0f}/s ({three.exported:,} in {three.seconds:.1f} s); "
            f"1 daemon {one.rate:,.0f}/s ({one.exported:,} in {one.seconds:.1f} s)",
            scale >= 2.5,
        ),
    ]
