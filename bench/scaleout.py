"""The first sync of many shops on N daemons, each on a CPU budget of its own (bench/quota.py).

Profiles are registered dormant; the daemons start and load them; then every profile is
given one fire a few seconds ahead, and once every daemon has loaded it they enter their CPU
groups: all daemons meet the same instant with the same fires, none of them still starting
and none unconstrained (loading 500 schedules takes a 0.2-core daemon longer than the
whole first sync; it is not what is measured).
What each process group spent (/proc), whether each daemon ran into its quota (cpu.stat) and
how busy the machine was are taken from just before that fire to the last first run's end.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.quota import CpuGroup, cpu_quota
from bench.table import ratio
from tests.replicas.harness import Cluster

#: A schedule that does not fire during a benchmark (1 January): profiles wait for `fire_at`.
DORMANT = "0 0 1 1 *"


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


@dataclass
class Spent:
    """What a first sync cost, by process group, and how the quotas bound the daemons."""

    cpu: dict[str, float]  #: CPU-seconds: each daemon, the simulators, postgres
    seconds: float  #: wall time watched
    busy: float  #: the machine's busy share, %
    #: Per daemon with a quota: (periods, periods throttled, seconds throttled).
    throttling: list[tuple[int, int, float]] = field(default_factory=list)

    def text(self, cpus: float) -> str:
        """'daemon a 3.1 s, simulators 0.5 s, postgres 4.2 s CPU in 14.0 s; daemons used
        98 % of their quota, throttled in 95 % of periods (10.1 s); machine 80 % busy'."""
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in self.cpu.items())
        held = ""
        if self.throttling:
            daemons = [v for k, v in self.cpu.items() if k.startswith("daemon ")]
            used = "/".join(f"{100 * ratio(v, self.seconds * cpus):.0f}" for v in daemons)
            shares = "/".join(f"{100 * ratio(t, p):.0f}" for p, t, _ in self.throttling)
            waits = "/".join(f"{s:.1f}" for _, _, s in self.throttling)
            held = (f"; daemons used {used} % of their quota, throttled in {shares} % of "
                    f"periods ({waits} s)")  # fmt: skip
        return f"{parts} CPU in {self.seconds:.1f} s{held}; machine {self.busy:.0f} % busy"


class CpuWatch:
    """CPU-seconds of the daemons, the simulators and this database's PostgreSQL backends
    between start() and stop(), the daemons' throttling, and the machine's busy share."""

    def __init__(
        self, pool: asyncpg.Pool, groups: dict[str, list[int]], quotas: list[CpuGroup]
    ) -> None:
        self._pool = pool
        self._groups = groups
        self._quotas = quotas
        self._start: dict[int, float] = {}
        self._throttled: list[tuple[int, int, float]] = []
        self._machine = (0, 0)
        self._started = 0.0

    async def _pids(self) -> dict[str, list[int]]:
        rows = await self._pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        return {**self._groups, "postgres": [r["pid"] for r in rows]}

    async def start(self) -> None:
        self._start = {p: cpu_seconds(p) for pids in (await self._pids()).values() for p in pids}
        self._throttled = [q.throttling() for q in self._quotas]
        self._machine = machine_jiffies()
        self._started = time.monotonic()

    async def stop(self) -> Spent:
        busy, total = machine_jiffies()
        throttling = [
            (p1 - p0, t1 - t0, s1 - s0)
            for (p0, t0, s0), (p1, t1, s1) in zip(
                self._throttled, (q.throttling() for q in self._quotas), strict=True
            )
        ]
        used = {name: sum(cpu_seconds(p) - self._start.get(p, 0.0) for p in pids)
                for name, pids in (await self._pids()).items()}  # fmt: skip
        share = 100 * ratio(busy - self._machine[0], total - self._machine[1])
        return Spent(used, time.monotonic() - self._started, share, throttling)


async def start_daemons(cluster: Cluster, names: str) -> None:
    """Start daemons `names` (a slot letter each) together; return once all listen."""
    for name in names:
        await cluster.start(name)
    for name in names:
        await cluster.ready(name, within=60)


@contextlib.contextmanager
def quotas(cluster: Cluster, cpus: float, prefix: str) -> Iterator[list[CpuGroup]]:
    """Every live daemon in a CPU group of its own while the block runs; the groups (none
    when no quota could be set). Afterwards the daemons run on unconstrained."""
    with contextlib.ExitStack() as stack:
        groups = []
        for name, replica in cluster.replicas.items():
            if replica.alive:
                assert replica.proc is not None
                group = stack.enter_context(
                    cpu_quota(f"{prefix}-{os.getpid()}-{name}", replica.proc.pid, cpus)
                )
                if group is not None:
                    groups.append(group)
        yield groups


async def schedule_all(
    pool: asyncpg.Pool, cluster: Cluster, schedule: str, profiles: int, *, within: float
) -> bool:
    """Give every profile `schedule`; True once every live daemon has set it for all of them
    (schedule_set), False if one had not within `within` seconds."""
    mark = cluster.mark()
    live = {r.replica_id for r in cluster.replicas.values() if r.alive}
    await pool.execute("UPDATE profile SET schedule = $1", schedule)

    async def loaded() -> bool:
        events = cluster.select(
            lambda e: e.get("event") == "schedule_set" and e.get("schedule") == schedule, mark
        )
        return all(sum(e["replica_id"] == rid for e in events) >= profiles for rid in live)

    try:
        await cluster.settle(loaded, on=lambda e: e.get("event") == "schedule_set", within=within)
    except AssertionError:
        return False
    return True


async def fire_together(
    pool: asyncpg.Pool, cluster: Cluster, profiles: int, lead: float
) -> datetime:
    """One fire of every profile `lead` seconds (or more) from now, known to every daemon
    before it comes; the instant."""
    for attempt in range(4):
        at = (datetime.now(UTC) + timedelta(seconds=lead * 2**attempt + 1)).replace(microsecond=0)
        once = f"{at.second} {at.minute} {at.hour} * * *"  # today only, within the benchmark
        if await schedule_all(pool, cluster, once, profiles, within=lead * 2**attempt):
            return at
    raise AssertionError(f"the daemons did not load a new schedule within {lead * 8:g} s")
