"""Measure 6: many shops on one daemon, then on three.

`profiles` profiles, each with a FreeAgent app (a user) of its own, share one Magento store of
a few customers, in `fa-sync run` subprocesses (tests/replicas/harness.py). First every
profile's first sync drains from one fire known to every daemon (bench/scaleout.py): records
exported per second from the first run's start to the last one's end. Then steady state, the
one daemon on the whole machine: the profiles fire every `every` seconds (a minute,
compressed), a few customers change before every fire; fire lateness is started_at -
scheduled_for of those runs (profile_run), CPU is the daemon's (/proc); beside lateness, how
long after its fire the last run of a round finished. Then the same first sync on a fresh
database and simulator with three daemons: the throughput ratio.

The first syncs give each daemon the same CPU quota (bench/quota.py, FA_SYNC_BENCH_DAEMON_CPUS
cores), as each replica has its own container or machine in production: unconstrained, the
daemons, simulators and PostgreSQL share this machine's cores, a second and third daemon add
no CPU, and the ratio says nothing about scaling out. Without a quota the row says so and
gives no verdict. Beside the ratio: each process group's CPU, how much of its quota each
daemon used and how often it was throttled (the quota, not PostgreSQL, bounding it), and how
busy the whole machine was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.quota import ENV, CpuGroup, daemon_cpus, unavailable
from bench.scaleout import (
    DORMANT,
    CpuWatch,
    Spent,
    cpu_seconds,
    fire_together,
    quotas,
    schedule_all,
    start_daemons,
)
from bench.stack import UNLIMITED_IP, Sims, register, scratch_database, sims
from bench.table import Row, percentile, ratio
from daemon.db.pool import create_pool
from daemon.db.queries import QUERIES
from tests.replicas.harness import Cluster, event_is

CUSTOMERS = 8  #: customers in the shared store: each profile's first sync
#: Quick mode: fewer shops, each with more customers, so the first sync lasts long enough
#: for the scaling ratio to mean something.
QUICK_CUSTOMERS = 30
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
    runs_by_owner: dict[str, int]
    spent: Spent  #: CPU by process group, throttling and machine busy % over the span

    @property
    def rate(self) -> float:
        return ratio(self.exported, self.seconds)


def exported(run: asyncpg.Record) -> int:
    return int(run["created"] + run["updated"] + run["linked"])


async def runs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch(QUERIES["run_history"], None, 1_000_000))


async def first_sync(
    cluster: Cluster, pool: asyncpg.Pool, stack: Sims, profiles: int, within: float
) -> FirstSync:
    """Fire every profile at once, each daemon on its quota; await a finished run with records
    for every profile: the span of those first runs, who ran them, and what was spent from
    just before the fire."""

    async def drained() -> bool:
        done = {r["profile_id"] for r in await runs(pool) if r["finished_at"] and exported(r)}
        return len(done) >= profiles

    at = await fire_together(pool, cluster, profiles, lead=1 + profiles / 50)
    with quotas(cluster, daemon_cpus(), "fa-sync-bench") as groups:
        watch = watch_for(pool, cluster, stack, groups)
        # The fire is an instant on the wall clock: watched from just before it, so the
        # quota's use is that of the first sync, not of the idle wait.
        await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds() - 0.2))
        await watch.start()
        await cluster.settle(drained, on=event_is("run_finished", "process_exited"),
                             within=within)  # fmt: skip
        spent = await watch.stop()
    first: dict[int, asyncpg.Record] = {}
    for run in sorted(await runs(pool), key=lambda r: r["scheduled_for"]):
        if run["finished_at"] and exported(run) and run["profile_id"] not in first:
            first[run["profile_id"]] = run
    start = min(r["started_at"] for r in first.values())
    end = max(r["finished_at"] for r in first.values())
    owners = Counter(str(r["owner"]).split(":")[-1] for r in first.values())
    return FirstSync(
        sum(exported(r) for r in first.values()), (end - start).total_seconds(), dict(owners),
        spent,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def shops(name: str, profiles: int, customers: int):  # type: ignore[no-untyped-def]
    """A database with `profiles` dormant profiles on their own simulator process, and a
    cluster."""
    dsn = await scratch_database(name)
    async with sims(customers=customers, freeagent=FREEAGENT) as stack:
        pool = await create_pool(dsn, max_size=4)
        cluster = Cluster(dsn=dsn, workdir=Path(tempfile.mkdtemp(prefix="fa-sync-bench-")),
                          settings=DAEMON)  # fmt: skip
        try:
            await register(pool, stack, profiles=profiles, schedule=DORMANT)
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
    finished = [(r["finished_at"] - r["scheduled_for"]).total_seconds() for r in late
                if r["finished_at"]]  # fmt: skip
    records = sum(exported(r) for r in late)
    errors = cluster.select(lambda e: EXHAUSTED in str(e), since=mark)
    return {"lateness": lateness, "runs": len(late), "records": records, "cpu": cpu,
            "exhausted": len(errors), "finished": finished}  # fmt: skip


def watch_for(
    pool: asyncpg.Pool, cluster: Cluster, stack: Sims, quotas: list[CpuGroup]
) -> CpuWatch:
    """Each daemon's CPU on its own line (name: its slot), the simulators', PostgreSQL's."""
    daemons = {f"daemon {r.name}": [r.proc.pid] for r in cluster.replicas.values()
               if r.proc is not None}  # fmt: skip
    return CpuWatch(pool, {**daemons, "simulators": [stack.proc.pid]}, quotas)


def budget(cpus: float) -> tuple[str, str | None]:
    """The quota in words, and why there is none (None: each daemon has one)."""
    if cpus <= 0:
        return "no CPU quota", f"{ENV}=0"
    why = unavailable()
    return (f"{cpus:g} core per daemon", None) if why is None else ("no CPU quota", why)


def run_text(first: FirstSync, cpus: float) -> str:
    """'1,234/s (4,000 in 3.2 s; runs a.1 170/b.1 160/c.1 170; daemon a 1.0 s, ... CPU ...)'."""
    runs_by = "/".join(f"{k} {n}" for k, n in sorted(first.runs_by_owner.items()))
    return (f"{first.rate:,.0f}/s ({first.exported:,} in {first.seconds:.1f} s; "
            f"runs {runs_by}; {first.spent.text(cpus)})")  # fmt: skip


def scale_row(one: FirstSync, three: FirstSync, profiles: int, customers: int) -> Row:
    """3 daemons vs 1, on a quota each (a verdict) or unconstrained (no verdict: they share
    this machine's cores, so the ratio says nothing about scaling out)."""
    cpus = daemon_cpus()
    words, why = budget(cpus)
    if why is not None:
        words = f"{words.upper()} ({why}): daemons share {os.cpu_count()} cores, no verdict"
    scale = ratio(three.rate, one.rate)
    return Row(
        f"many shops: 3 daemons vs 1 (first sync, {profiles} x {customers} customers, {words})",
        f"{scale:.2f}x",
        ">= 2.5x",
        f"3 daemons {run_text(three, cpus)}; 1 daemon {run_text(one, cpus)}",
        scale >= 2.5 if why is None else None,
    )


async def measure(quick: bool) -> list[Row]:
    profiles, every, fires = (20, 5, 1) if quick else (500, 60, 2)
    customers = QUICK_CUSTOMERS if quick else CUSTOMERS
    schedule = "0 * * * * *" if every == 60 else f"*/{every} * * * * *"
    within = 120 if quick else 900
    async with shops("shops_one", profiles, customers) as (stack, pool, cluster):
        await start_daemons(cluster, "a")
        one = await first_sync(cluster, pool, stack, profiles, within)
        # Steady state as before: the one daemon on the whole machine, no quota.
        if not await schedule_all(pool, cluster, schedule, profiles, within=60):
            raise AssertionError(f"the daemon did not load schedule {schedule!r} within 60 s")
        replica = cluster.replicas["a"]
        assert replica.proc is not None
        state = await steady(stack, pool, cluster, replica.proc.pid, every, fires, profiles)
        await cluster.stop_all()
    async with shops("shops_three", profiles, customers) as (stack, pool, cluster):
        await start_daemons(cluster, "abc")
        three = await first_sync(cluster, pool, stack, profiles, within)
        await cluster.stop_all()
    p99 = percentile(state["lateness"], 0.99)
    p50 = percentile(state["lateness"], 0.5)
    done99 = percentile(state["finished"], 0.99)
    per_record = ratio(state["cpu"], state["records"])
    return [
        Row(
            f"many shops: p99 fire lateness ({profiles} profiles, every {every} s, one daemon)",
            f"{p99:.2f} s" if state["runs"] else "-",
            "<= 1 s",
            f"p50 {p50:.2f} s over {state['runs']} runs of {profiles * fires} fires; "
            f"finished p99 {done99:.1f} s after the fire",
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
        scale_row(one, three, profiles, customers),
    ]
