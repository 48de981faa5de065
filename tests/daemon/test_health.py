"""/healthz, /readyz and /metrics: what a probe and a Prometheus scrape see."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.clients.transport import Transport
from daemon.db.pool import create_pool
from daemon.health import HealthServer, Heartbeat
from daemon.metrics import Metrics
from daemon.resources import ClientFactory
from daemon.runner import Runner
from daemon.settings import Settings
from daemon.systemd import Notifier
from simulators.stack import Stack
from tests.secretkeys import sealing_box


@dataclass
class Probe:
    """A health server on its own port, and the knobs a test turns."""

    server: HealthServer
    url: str
    clock: list[float]  #: the heartbeat's monotonic clock, advanced by hand
    heartbeat: Heartbeat
    schedules_loaded: list[bool]
    metrics: Metrics

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(self.url + path) as resp:
            return resp.status, await resp.text()


@pytest.fixture
async def probe(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[Probe]:
    clock = [1000.0]
    loaded = [True]
    heartbeat = Heartbeat(Notifier(None), clock=lambda: clock[0])
    metrics = Metrics()
    server = HealthServer(
        heartbeat=heartbeat,
        pool=pool,
        metrics=metrics,
        ready=lambda: loaded[0],
        stall_seconds=settings.health_stall_seconds,
        db_timeout=settings.health_db_timeout,
    )
    port = await server.start(settings.metrics_address, 0)
    yield Probe(server, f"http://127.0.0.1:{port}", clock, heartbeat, loaded, metrics)
    await server.stop()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label pairs: value} of one metric family in Prometheus text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_defaults_are_loopback_port_9108() -> None:
    """The server listens on 127.0.0.1:9108 unless told otherwise (port 0 turns it off)."""
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.metrics_address, s.metrics_port) == ("127.0.0.1", 9108)


async def test_healthz_follows_the_heartbeat(probe: Probe) -> None:
    """200 while the loop ticks; 503 once the last tick is older than the stall threshold."""
    probe.heartbeat.beat()
    status, body = await probe.get("/healthz")
    assert status == 200 and '"ok"' in body
    probe.clock[0] += 60
    status, body = await probe.get("/healthz")
    assert status == 503 and '"stalled"' in body
    probe.heartbeat.beat()
    assert (await probe.get("/healthz"))[0] == 200


async def test_readyz_waits_for_schedules(probe: Probe) -> None:
    """503 until the profiles are loaded, then 200."""
    probe.schedules_loaded[0] = False
    status, body = await probe.get("/readyz")
    assert status == 503 and '"loading"' in body
    probe.schedules_loaded[0] = True
    assert (await probe.get("/readyz"))[0] == 200


async def test_readyz_is_503_while_the_database_is_unreachable(
    pg_server_dsn: str, database_dsn: str, settings: Settings
) -> None:
    """No connections to the database: 503 (liveness stays 200); back: 200 again."""
    pool = await create_pool(database_dsn, max_size=2)
    admin = await asyncpg.connect(pg_server_dsn)
    name = await pool.fetchval("SELECT current_database()")
    heartbeat = Heartbeat(Notifier(None))
    server = HealthServer(heartbeat=heartbeat, pool=pool, metrics=Metrics(), ready=lambda: True,
                          stall_seconds=10, db_timeout=2)  # fmt: skip
    port = await server.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            assert (await s.get(url + "/readyz")).status == 200
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1",
                name,
            )
            for _ in range(2):  # the dead pooled connection, then the refused reconnect
                resp = await s.get(url + "/readyz")
                assert resp.status == 503 and (await resp.json())["database"] == "unreachable"
            assert (await s.get(url + "/healthz")).status == 200
            metrics = await (await s.get(url + "/metrics")).text()
            assert samples(metrics, "fa_sync_database_up") == {(): 0.0}
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert (await s.get(url + "/readyz")).status == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await server.stop()
        await pool.close()


async def test_metrics_after_an_export_count_runs_records_and_requests(
    pool: asyncpg.Pool, settings: Settings, stack: Stack, probe: Probe
) -> None:
    """One export (a 429 and an expired token on the way): every counter matches what
    happened, and queue depth and last success come from the database."""
    await pool.execute(
        "UPDATE freeagent_client SET access_token_expires_at = now() - interval '1 hour'"
    )
    stack.freeagent.inject_429(1, retry_after=0)
    async with aiohttp.ClientSession() as session:
        transport = Transport(session=session, settings=settings, metrics=probe.metrics)
        factory = ClientFactory(
            pool=pool, settings=settings, transport=transport, secrets=sealing_box()
        )
        runner = Runner(pool=pool, settings=settings, resources=factory, metrics=probe.metrics)
        outcome = await runner.fire(stack.profile_id)
    status, text = await probe.get("/metrics")
    assert status == 200

    assert samples(text, "fa_sync_runs_total") == {
        (("profile", "demo"), ("status", str(outcome.status))): 1.0
    }
    records = samples(text, "fa_sync_records_total")
    expected = {k: v for k, v in outcome.counts.as_dict().items() if v}
    assert {dict(k)["outcome"]: v for k, v in records.items()} == expected
    assert samples(text, "fa_sync_run_seconds_count") == {(("profile", "demo"),): 1.0}

    api = [r for r in stack.freeagent.requests if r.path != "/v2/token_endpoint"]
    by_status = Counter(str(r.status) for r in api)
    requests = samples(text, "fa_sync_http_requests_total")
    assert {dict(k)["status"]: v for k, v in requests.items() if ("service", "freeagent") in k} \
        == by_status  # fmt: skip
    assert samples(text, "fa_sync_http_rate_limited_total") == {(("service", "freeagent"),): 1.0}
    assert samples(text, "fa_sync_http_retries_total")[(("service", "freeagent"),)] >= 1
    assert stack.freeagent.refresh_count == 1
    assert samples(text, "fa_sync_token_refreshes_total") == {(("outcome", "ok"),): 1.0}

    rows = await pool.fetch(
        "SELECT status::text, count(*)::int AS n FROM contact_entity GROUP BY status"
    )
    depth = samples(text, "fa_sync_queue_depth")
    assert {dict(k)["status"]: v for k, v in depth.items()} == {r["status"]: r["n"] for r in rows}
    assert (("profile", "demo"),) in samples(text, "fa_sync_last_success_timestamp_seconds")
    assert samples(text, "fa_sync_database_up") == {(): 1.0}


def test_alert_rules_use_only_metrics_the_daemon_exports() -> None:
    """Every fa_sync_* name in deploy/alerts.yml is one the registry serves."""
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    rules = (Path(__file__).parents[2] / "deploy" / "alerts.yml").read_text()
    used = set(re.findall(r"\bfa_sync_[a-z_]+", rules))
    assert used and used <= exported, used - exported
