"""Measure 4: freshness. During a first sync at FreeAgent's (scaled) real limit, how long a
customer saved in Magento and announced on POST /webhooks/magento takes to reach FreeAgent.

The whole path is the daemon's own: the signed delivery, GET /V1/customers/{id}, the priority
row, NOTIFY, the running run's priority lane, the rate budget's priority grant, the POST.
A delivery's time runs from just before it is sent to the moment its ledger row records
FreeAgent's answer (polled every POLL seconds, so figures are rounded up by at most that).
The simulators run in this process (on the same event loop: conservative for fa-sync).

    python bench/freshness.py [--quick]      (or `python -m bench --only freshness`)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

# ruff: noqa: T201  (a benchmark prints its figures)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.simserver import magento_store
from daemon.clients.transport import Transport
from daemon.db.pool import create_pool, migrate, recreate_database
from daemon.db.queries import QUERIES
from daemon.db.records import RunTrigger
from daemon.logs import configure
from daemon.loop import run as run_loop
from daemon.process import Daemon, Services
from daemon.resources import ClientFactory
from daemon.runner import utcnow
from daemon.secretbox import SecretBox
from daemon.settings import Settings
from daemon.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookServer, sign
from simulators.freeagent import FreeAgentState
from simulators.stack import Stack, register, simulators

try:
    from bench.table import Row
except ImportError:  # bench/table.py not on this branch yet: the same fields

    @dataclass(frozen=True)
    class Row:  # type: ignore[no-redef]
        measure: str
        figure: str
        target: str = ""
        raw: str = ""
        ok: bool | None = None


#: FreeAgent's 120 a minute and 3,600 an hour, both windows scaled down by SCALE (bench/limit).
SCALE = 20
MINUTE, HOUR = 60 / SCALE, 3600 / SCALE
TARGET_P99 = 5.0
POLL = 0.02
SECRET = "freshness-bench-shared-secret"  # noqa: S105 (a scratch database)
ROOT = Path(__file__).resolve().parent.parent


def _settings() -> Settings:
    from cryptography.fernet import Fernet

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        rate_minute_window=MINUTE,
        rate_hour_window=HOUR,
        rate_latency_allowance=5.0 / SCALE,
        export_concurrency=8,
        record_retry_base_seconds=0,
        shutdown_grace_seconds=1,
        metrics_port=0,
        secret_key=Fernet.generate_key().decode(),  # a scratch database: a throwaway key
        log_format="console",
        log_level="ERROR",
    )


def _server_dsn() -> tuple[str, Any]:
    dsn = os.environ.get("FA_SYNC_TEST_DSN") or os.environ.get("DATABASE_URL")
    if dsn:
        return dsn, None
    from daemon.db.embedded import start_embedded

    return start_embedded(ROOT / ".fa-sync" / "bench-pgdata")


@dataclass
class Freshness:
    seconds: list[float]  #: per delivery, sent -> exported
    backlog: int  #: customers in the first sync
    exported_meanwhile: int  #: backlog records FreeAgent got while the events were measured
    backlog_left: int  #: backlog rows still waiting when the measure ended


async def run(customers: int, events: int, spacing: float) -> Freshness:
    configure(log_format="console", level="ERROR")
    settings = _settings()
    server_dsn, server = _server_dsn()
    dsn = await recreate_database(server_dsn, "fa_sync_bench_freshness")
    pool = await create_pool(dsn, max_size=settings.pool_size())
    try:
        await migrate(pool)
        fa = FreeAgentState(minute_window=MINUTE, hour_window=HOUR, per_ip_per_minute=10**9)
        mg = magento_store(customers, guest_orders=0)
        async with aiohttp.ClientSession() as session, simulators(freeagent=fa, magento=mg) as st:
            return await _measure(settings, dsn, pool, session, st, events, spacing)
    finally:
        await pool.close()
        if server is not None:
            server.cleanup()


async def _measure(
    settings: Settings, dsn: str, pool: Any, session: aiohttp.ClientSession, stack: Stack,
    events: int, spacing: float,
) -> Freshness:  # fmt: skip
    box = SecretBox.from_settings(settings)
    await register(pool, stack, secrets=box, profile="fresh", schedule="0 3 1 1 *")
    await pool.execute(QUERIES["webhook_secret_set"], stack.connection_id, box.seal(SECRET))
    factory = ClientFactory(
        pool=pool, settings=settings, secrets=box,
        transport=Transport(session=session, settings=settings),
    )  # fmt: skip
    daemon = Daemon(Services(settings, dsn, pool, factory, session))
    stop = asyncio.Event()
    serving = asyncio.create_task(daemon.serve(stop))
    hooks = WebhookServer(pool=pool, secrets=box, on_event=daemon.priority.on_event, clock=utcnow)
    url = f"http://127.0.0.1:{await hooks.start('127.0.0.1', 0)}/webhooks/magento"
    try:
        async with daemon.reloaded:
            await daemon.reloaded.wait_for(lambda: daemon.reload_count > 0)
        now = datetime.now(UTC)
        backlog = asyncio.create_task(daemon.run_fire(stack.profile_id, now, RunTrigger.MANUAL))
        daemon.track(backlog)  # the shutdown below interrupts it, as it would a scheduled run
        while stack.freeagent.write_count() < 50:  # the first sync is exporting
            if backlog.done():
                raise RuntimeError("the first sync ended before the events were sent")
            await asyncio.sleep(0.05)
        written_before = stack.freeagent.write_count()
        seconds = await _deliver(pool, stack, session, url, events, spacing)
        exported = stack.freeagent.write_count() - written_before - len(seconds)
        left = int(await pool.fetchval(QUERIES["entity_count_unfinished"], stack.profile_id))
    finally:
        stop.set()
        await serving
        await hooks.stop()
    return Freshness(seconds, len(stack.magento.customers) - events, exported, left)


async def _deliver(
    pool: Any, stack: Stack, session: aiohttp.ClientSession, url: str, events: int,
    spacing: float,
) -> list[float]:  # fmt: skip
    """Save `events` new customers, one every `spacing` seconds, each announced by a signed
    delivery; the seconds each took to be exported."""
    sent: dict[str, float] = {}
    took: dict[str, float] = {}

    async def watch() -> None:
        while len(took) < events:
            waiting = [k for k in sent if k not in took]
            if waiting:
                rows = await pool.fetch(
                    "SELECT source_key FROM contact_entity WHERE source_key = ANY($1)"
                    " AND status IN ('created', 'linked', 'updated')",
                    waiting,
                )
                at = time.perf_counter()
                for r in rows:
                    took[r["source_key"]] = at - sent[r["source_key"]]
            await asyncio.sleep(POLL)

    watcher = asyncio.create_task(watch())
    for n in range(events):
        customer = stack.magento.add_customer(
            email=f"fresh{n}@example.com", firstname="Fresh", lastname=f"Customer{n}"
        )
        body = json.dumps({"event": "customer.saved", "customer_id": customer["id"]}).encode()
        stamp = str(int(time.time()))
        headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(SECRET, stamp, body)}
        sent[f"customer:{customer['id']}"] = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 202:
                raise RuntimeError(f"webhook answered {response.status}: {await response.text()}")
        await asyncio.sleep(spacing)
    await asyncio.wait_for(watcher, 120)
    return list(took.values())


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


async def measure(quick: bool) -> list[Row]:
    """Freshness p50 / p99 over the deliveries of one first sync (bench/__main__.py)."""
    # Full: deliveries for 150 s (50 scaled minutes, most of a scaled hour), so they also meet
    # the sync once it is bound by the hourly limit rather than the per-minute one.
    customers, events, spacing = (2_000, 10, 1.0) if quick else (20_000, 60, 2.5)
    result = await run(customers, events, spacing)
    p50, p99 = statistics.median(result.seconds), _p(result.seconds, 0.99)
    raw = (
        f"{len(result.seconds)} events during a {result.backlog:,}-customer first sync "
        f"(minute = {MINUTE:g} s, hour = {HOUR:g} s); "
        f"{result.exported_meanwhile:,} backlog writes meanwhile, "
        f"{result.backlog_left:,} rows still queued; max {max(result.seconds):.2f} s"
    )
    return [
        Row("freshness: event -> FreeAgent, p50", f"{p50:.2f} s", "", raw),
        Row(
            "freshness: event -> FreeAgent, p99",
            f"{p99:.2f} s",
            f"<= {TARGET_P99:g} s",
            raw,
            p99 <= TARGET_P99,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 customers, 10 events")
    args = parser.parse_args()
    for row in run_loop(measure(args.quick)):
        print(f"{row.measure:38} {row.figure:>9}  {row.target:8} {row.raw}")


if __name__ == "__main__":
    main()
