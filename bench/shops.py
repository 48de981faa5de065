"""Measure 6: many shops on one daemon, then on three.

`profiles` profiles, each with a FreeAgent app (a user) of its own, share one Magento store of
a few customers and fire every `every` seconds (a minute, compressed) in `fa-sync run`
subprocesses (tests/replicas/harness.py). First every profile's first sync drains: records
exported per second from the first run's start to the last one's end. Then steady state: a few
customers change before every fire; fire lateness is started_at - scheduled_for of those
runs (profile_run), CPU is the daemon's (/proc) over the steady phase; beside lateness, how
long after its fire the last run of a round finished. Then the same first sync on a fresh
database and simulator with three daemons: the throughput ratio, with the CPU each process
used during each first sync and how busy the whole machine was (the daemons, the simulators,
PostgreSQL and whatever else runs here share its cores: a saturated machine caps the ratio).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections import Counter
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
    cpu: dict[str, float]  #: CPU-seconds by process group over the span, and machine busy %

    @property
    def rate(self) -> float:
        return ratio(self.exported, self.seconds)


def exported(run: asyncpg.Record) -> int:
    return int(run["created"] + run["updated"] + run["linked"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far (Linux: /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended: counted as nothing more
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuWatch:
    """CPU-seconds of the daemons, the simulators and this database's PostgreSQL backends
    between start() and stop(), and the machine's busy share meanwhile."""

    def __init__(self, pool: asyncpg.Pool, groups: dict[str, list[int]]) -> None:
        self._pool = pool
        self._groups = groups
        self._start: dict[int, float] = {}
        self._machine = (0, 0)

    async def _pids(self) -> dict[str, list[int]]:
        rows = await self._pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        return {**self._groups, "postgres": [r["pid"] for r in rows]}

    async def start(self) -> None:
        self._start = {p: cpu_seconds(p) for pids in (await self._pids()).values() for p in pids}
        self._machine = machine_jiffies()

    async def stop(self) -> dict[str, float]:
        busy, total = machine_jiffies()
        used = {name: sum(cpu_seconds(p) - self._start.get(p, 0.0) for p in pids)
                for name, pids in (await self._pids()).items()}  # fmt: skip
        used["machine busy %"] = 100 * ratio(busy - self._machine[0], total - self._machine[1])
        return used


def cpu_text(first: FirstSync) -> str:
    """'daemons 12.1 s, simulators 3.0 s, postgres 4.2 s (CPU); machine 97 % busy'."""
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in first.cpu.items() if not k.endswith("%"))
    return f"{parts} (CPU); machine {first.cpu.get('machine busy %', 0):.0f} % busy"


async def runs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch(QUERIES["run_history"], None, 1_000_000))


async def first_sync(
    cluster: Cluster, pool: asyncpg.Pool, profiles: int, within: float, watch: CpuWatch
) -> FirstSync:
    """Await a finished run with records for every profile; the span of those first runs,
    who ran them, and the CPU spent from the first claim on."""

    async def started() -> bool:
        return bool(await runs(pool))

    async def drained() -> bool:
        done = {r["profile_id"] for r in await runs(pool) if r["finished_at"] and exported(r)}
        return len(done) >= profiles

    await cluster.settle(started, on=event_is("run_started", "process_exited"), within=120)
    await watch.start()
    await cluster.settle(drained, on=event_is("run_finished", "process_exited"), within=within)
    cpu = await watch.stop()
    first: dict[int, asyncpg.Record] = {}
    for run in sorted(await runs(pool), key=lambda r: r["scheduled_for"]):
        if run["finished_at"] and exported(run) and run["profile_id"] not in first:
            first[run["profile_id"]] = run
    start = min(r["started_at"] for r in first.values())
    end = max(r["finished_at"] for r in first.values())
    owners = Counter(str(r["owner"]).split(":")[-1] for r in first.values())
    return FirstSync(
        sum(exported(r) for r in first.values()), (end - start).total_seconds(), dict(owners), cpu
    )


@contextlib.asynccontextmanager
async def shops(name: str, profiles: int, schedule: str, customers: int):  # type: ignore[no-untyped-def]
    """A database with `profiles` profiles on their own simulator process, and a cluster."""
    dsn = await scratch_database(name)
    async with sims(customers=customers, freeagent=FREEAGENT) as stack:
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
    finished = [(r["finished_at"] - r["scheduled_for"]).total_seconds() for r in late
                if r["finished_at"]]  # fmt: skip
    records = sum(exported(r) for r in late)
    errors = cluster.select(lambda e: EXHAUSTED in str(e), since=mark)
    return {"lateness": lateness, "runs": len(late), "records": records, "cpu": cpu,
            "exhausted": len(errors), "finished": finished}  # fmt: skip


def watch_for(pool: asyncpg.Pool, cluster: Cluster, stack: Sims) -> CpuWatch:
    daemons = [r.proc.pid for r in cluster.replicas.values() if r.proc is not None]
    return CpuWatch(pool, {"daemons": daemons, "simulators": [stack.proc.pid]})


async def measure(quick: bool) -> list[Row]:
    profiles, every, fires = (20, 5, 1) if quick else (500, 60, 2)
    customers = QUICK_CUSTOMERS if quick else CUSTOMERS
    schedule = "0 * * * * *" if every == 60 else f"*/{every} * * * * *"
    within = 120 if quick else 900
    async with shops("shops_one", profiles, schedule, customers) as (stack, pool, cluster):
        replica = await cluster.start_ready("a")
        one = await first_sync(cluster, pool, profiles, within, watch_for(pool, cluster, stack))
        assert replica.proc is not None
        state = await steady(stack, pool, cluster, replica.proc.pid, every, fires, profiles)
        await cluster.stop_all()
    async with shops("shops_three", profiles, schedule, customers) as (stack, pool, cluster):
        await asyncio.gather(*(cluster.start_ready(n) for n in "abc"))
        three = await first_sync(cluster, pool, profiles, within, watch_for(pool, cluster, stack))
        await cluster.stop_all()
    p99 = percentile(state["lateness"], 0.99)
    p50 = percentile(state["lateness"], 0.5)
    done99 = percentile(state["finished"], 0.99)
    scale = ratio(three.rate, one.rate)
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
        Row(
            f"many shops: 3 daemons vs 1 (first sync, {profiles} x {customers} customers)",
            f"{scale:.2f}x",
            ">= 2.5x",
            f"3 daemons {three.rate:,.0f}/s ({three.exported:,} in {three.seconds:.1f} s; "
            f"runs {'/'.join(str(n) for _, n in sorted(three.runs_by_owner.items()))}; "
            f"{cpu_text(three)}); "
            f"1 daemon {one.rate:,.0f}/s ({one.exported:,} in {one.seconds:.1f} s; "
            f"{cpu_text(one)})",
            scale >= 2.5,
        ),
    ]
