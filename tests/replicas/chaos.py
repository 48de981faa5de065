"""Chaos driver: daemons SIGKILLed at random moments of their runs while customers keep arriving.

Kill moments are picked from the daemons' own log: most often the replica that just logged
`run_started` (it owns the run: collect, index refresh, creates in flight), killed after a
random number of its further log lines; otherwise any live replica, after a few of its lines.
The killed slot is restarted at once, as systemd or a container runtime would. Now and then the
owner is frozen (SIGSTOP) instead, until another replica declares its lease expired, and then
thawed: it wakes up mid-run believing it still owns the profile, which fencing must stop.
After the last kill the cluster is left to finish the work, then stopped with SIGTERM.

Used by tests/replicas/test_chaos.py (CI-sized) and bench/chaos.py (long runs).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from simulators.magento import MagentoState
from simulators.stack import Stack
from tests.replicas.checks import check_export, open_rows, running_runs, settled
from tests.replicas.harness import Cluster, event_is, nth_line

#: Share of kills aimed at the replica that is running the profile right now.
KILL_OWNER = 0.6
#: Upper bound of the extra log lines a victim may write before it is killed.
MAX_LINES = 12
#: Share of owners frozen (SIGSTOP) until another replica takes their run over, then thawed.
FREEZE_OWNER = 0.12


@dataclass
class ChaosReport:
    """Figures of one chaos run."""

    kills: int = 0  #: SIGKILLs sent
    freezes: int = 0  #: owners frozen until their run was taken over, then thawed
    duplicates: int = 0  #: contacts beyond one per e-mail in FreeAgent
    count_429: int = 0  #: 429s FreeAgent sent
    customers: int = 0  #: ledger rows (Magento customers and guest buyers)
    exported: int = 0  #: rows that reached FreeAgent
    added: int = 0  #: customers added to Magento during the run
    dropped_creates: int = 0  #: creates FreeAgent stored but whose 201 never arrived
    reconciled: int = 0  #: unfinished creates found again in FreeAgent instead of repeated
    lease_takeovers: int = 0  #: runs closed by another replica after their lease expired
    runs: dict[str, int] = field(default_factory=dict)  #: profile_run rows by status
    exit_codes: dict[str, int] = field(default_factory=dict)  #: of the final SIGTERM
    problems: list[str] = field(default_factory=list)  #: rows not exported, stuck rows...
    elapsed: float = 0.0

    def figures(self) -> str:
        return (
            f"kills survived: {self.kills}\n"
            f"owners frozen past their lease and thawed: {self.freezes}\n"
            f"duplicates found: {self.duplicates}\n"
            f"429s seen: {self.count_429}\n"
            f"customers exported: {self.exported} of {self.customers} "
            f"({self.added} added during the run)\n"
            f"creates with a lost answer: {self.dropped_creates}, reconciled: {self.reconciled}\n"
            f"runs closed after their owner's lease expired: {self.lease_takeovers}\n"
            f"profile runs: {dict(sorted(self.runs.items()))}\n"
            f"problems: {len(self.problems)}\n"
            f"elapsed: {self.elapsed:.1f} s"
        )


def add_customers(magento: MagentoState, rng: random.Random, serial: int) -> int:
    """New work for the next runs: one to three new customers, sometimes a renamed one."""
    count = rng.randint(1, 3)
    for i in range(count):
        n = f"{serial}x{i}"
        magento.add_customer(
            email=f"chaos.{n}@example.com", firstname="Chaos", lastname=f"Customer{n}"
        )
    if rng.random() < 0.3:
        cid = rng.choice(sorted(magento.customers))
        magento.update_customer(cid, lastname=f"Renamed{serial}")
    return count


async def _owner(cluster: Cluster, rng: random.Random) -> tuple[str, int] | None:
    """The replica that starts the next run, and its run id, a few of its log lines later."""
    started = await cluster.next_event(event_is("run_started"), within=15)
    if started is None:
        return None
    owner = cluster.replicas[started["replica"]]
    if not owner.alive or owner.replica_id != started["replica_id"]:
        return None
    await cluster.next_event(nth_line(owner.replica_id, rng.randint(0, MAX_LINES)), within=3)
    return owner.name, started["run_id"]


async def _victim(cluster: Cluster, rng: random.Random) -> str:
    """Whom to kill, and when: returns once the moment has come."""
    live = [r for r in cluster.replicas.values() if r.alive]
    if rng.random() < KILL_OWNER and (owner := await _owner(cluster, rng)) is not None:
        return owner[0]
    victim = rng.choice(live)
    await cluster.next_event(nth_line(victim.replica_id, rng.randint(1, 4)), within=1.5)
    return victim.name


async def freeze_owner(cluster: Cluster, pool: asyncpg.Pool, rng: random.Random) -> bool:
    """Freeze a run's owner mid-run until another replica declares its lease expired, then
    thaw it: the old owner wakes up believing it still runs the profile (fencing's case)."""
    owner = await _owner(cluster, rng)
    if owner is None:
        return False
    name, run_id = owner
    mark = cluster.mark()
    cluster.freeze(name)
    try:
        status = await pool.fetchval("SELECT status::text FROM profile_run WHERE id = $1", run_id)
        if status != "running":
            return False  # the run ended before the freeze: nothing would expire
        await cluster.wait_for(
            lambda e: e.get("event") == "run_lease_expired" and e.get("run_id") == run_id,
            since=mark,
            within=60,
        )
    finally:
        cluster.thaw(name)
    return True


def _assert_none_died(cluster: Cluster) -> None:
    """Every slot is restarted right after its kill, so a dead one exited by itself."""
    for replica in cluster.replicas.values():
        if not replica.alive:
            rid = replica.replica_id
            lines = [
                e.get("text") or e.get("event")
                for e in cluster.events
                if e.get("replica_id") == rid
            ][-30:]
            raise AssertionError(f"{rid} exited by itself:\n" + "\n".join(map(str, lines)))


async def run_chaos(
    *,
    cluster: Cluster,
    pool: asyncpg.Pool,
    stack: Stack,
    kills: int,
    replicas: int = 3,
    seed: int = 0,
    settle_timeout: float = 90.0,
) -> ChaosReport:
    """Kill `kills` times, let the cluster finish, stop it, and report what FreeAgent holds."""
    rng = random.Random(seed)
    began = time.monotonic()
    report = ChaosReport()
    for i in range(replicas):
        await cluster.start(f"d{i}")
    while cluster.kills < kills:
        if rng.random() < FREEZE_OWNER:
            report.freezes += await freeze_owner(cluster, pool, rng)
            continue
        victim = await _victim(cluster, rng)
        await cluster.kill(victim)
        report.added += add_customers(stack.magento, rng, cluster.kills)
        await cluster.start(victim)
        _assert_none_died(cluster)
    for name in cluster.replicas:
        await cluster.ready(name)
    await cluster.settle(
        lambda: settled(pool, stack.magento), on=event_is("run_finished"), within=settle_timeout
    )
    report.exit_codes = await cluster.stop_all()
    return await _report(report, cluster, pool, stack, began)


async def _report(
    report: ChaosReport, cluster: Cluster, pool: asyncpg.Pool, stack: Stack, began: float
) -> ChaosReport:
    check = await check_export(pool, stack.freeagent)
    report.kills = cluster.kills
    report.duplicates = sum(n - 1 for n in check.duplicates.values())
    report.count_429 = stack.freeagent.count_429
    report.customers, report.exported = check.customers, check.exported
    report.dropped_creates = sum(
        1 for r in stack.freeagent.requests if r.dropped and r.method == "POST"
    )
    report.reconciled = len(
        cluster.select(event_is("create_reconciled", "create_outcome_recovered"))
    )
    report.lease_takeovers = len(cluster.select(event_is("run_lease_expired")))
    report.runs = dict(
        Counter(r["status"] for r in await pool.fetch("SELECT status::text FROM profile_run"))
    )
    report.problems = list(check.problems)
    report.problems += [f"stuck row {r}" for r in await open_rows(pool)]
    report.problems += [f"run left running {r}" for r in await running_runs(pool)]
    report.elapsed = time.monotonic() - began
    return report
