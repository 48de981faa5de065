"""Chaos benchmark: `fa-sync run` replicas SIGKILLed at random moments of their exports.

The long form of tests/replicas/test_chaos.py: three daemons on one profile firing every
second, a FreeAgent simulator with latency that drops the answer to a fifth of its creates,
customers added after every kill, some owners frozen (SIGSTOP) past their lease and thawed.
Prints the figures and exits 1 if FreeAgent ends with a duplicate, a customer is missing or
anything is left stuck.

    .venv/bin/python bench/chaos.py --kills 200

PostgreSQL: --dsn, else FA_SYNC_TEST_DSN, else an embedded server in .fa-sync/bench-pgdata.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from tests.secretkeys import sealing_box

# ruff: noqa: T201  (a benchmark prints its figures)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.db.embedded import start_embedded
from daemon.db.pool import create_pool, migrate, recreate_database
from daemon.loop import run as run_loop
from simulators.magento import MagentoState
from simulators.stack import register, simulators
from tests.replicas.chaos import ChaosReport, run_chaos
from tests.replicas.harness import FAST, Cluster, fast_freeagent

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "fa_sync_chaos"


async def chaos(kills: int, replicas: int, seed: int, server_dsn: str) -> ChaosReport:
    dsn = await recreate_database(server_dsn, DATABASE)
    pool = await create_pool(dsn, max_size=4)
    await migrate(pool)
    workdir = Path(tempfile.mkdtemp(prefix="fa-sync-chaos-"))
    cluster = Cluster(dsn=dsn, workdir=workdir, settings={**FAST, "lease_seconds": 2})
    freeagent = fast_freeagent(latency=0.03, drop_after_create_rate=0.2, seed=seed)
    magento = MagentoState.seeded(customers=40, guest_orders=6, seed=seed)
    print(f"daemon logs: {workdir / 'daemons.log'}")
    try:
        async with simulators(freeagent=freeagent, magento=magento) as s:
            stack = await register(pool, s, secrets=sealing_box(), schedule="* * * * * *")
            return await run_chaos(
                cluster=cluster,
                pool=pool,
                stack=stack,
                kills=kills,
                replicas=replicas,
                seed=seed,
                settle_timeout=300,
            )
    finally:
        await cluster.close()
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("FA_SYNC_TEST_DSN"),
        help="server DSN (maintenance database); default: embedded server",
    )
    args = parser.parse_args()
    # The simulators log a traceback for every request whose client was killed mid-body.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    server = None
    dsn = args.dsn
    if dsn is None:
        dsn, server = start_embedded(ROOT / ".fa-sync" / "bench-pgdata")
    try:
        report = run_loop(chaos(args.kills, args.replicas, args.seed, dsn))
    finally:
        if server is not None:
            server.cleanup()
    print(report.figures())
    for problem in report.problems[:20]:
        print(f"  {problem}")
    stopped_cleanly = set(report.exit_codes.values()) <= {0}
    return 0 if report.duplicates == 0 and not report.problems and stopped_cleanly else 1


if __name__ == "__main__":
    raise SystemExit(main())
