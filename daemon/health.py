"""Liveness, readiness and metrics over HTTP, served by an aiohttp app on the daemon's loop.

    GET /healthz  200 while the event loop ticks (last tick younger than the stall
                  threshold), else 503. JSON: {"status", "last_tick_age_seconds"}.
    GET /readyz   200 once schedules are loaded and PostgreSQL answers within a short
                  timeout, else 503. JSON: {"status", "database", "schedules"}.
    GET /metrics  Prometheus text (daemon/metrics.py); PostgreSQL-backed gauges are read
                  per scrape under the same timeout.

Being on the same loop is the point: a blocked loop answers nothing, which a probe with a
timeout reads as unhealthy, exactly as systemd's watchdog does (daemon/systemd.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daemon.db.queries import QUERIES
from daemon.errors import ConfigError
from daemon.logs import get_logger
from daemon.metrics import Metrics
from daemon.systemd import Notifier

log = get_logger(__name__)

#: How often the heartbeat ticks when no watchdog asks for more.
TICK_SECONDS = 1.0


class Heartbeat:
    """A task on the event loop that records when it last ran and pings systemd's watchdog.

    The ping comes only from here, so it stops the moment the loop stops turning (a blocking
    call, a busy loop) and systemd kills and restarts the stalled process.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        tick: float = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._clock = clock
        ping = notifier.ping_interval
        #: Seconds between ticks: the health tick, or half the watchdog interval if shorter.
        self.period = min(tick, ping) if ping else tick
        self._ping_every = ping
        self.last_tick = clock()
        self._last_ping = float("-inf")

    def age(self) -> float:
        """Seconds since the loop last ran the heartbeat."""
        return max(0.0, self._clock() - self.last_tick)

    def beat(self) -> None:
        """One tick: note the time; ping the watchdog when half its interval has passed."""
        now = self.last_tick = self._clock()
        if self._ping_every is not None and now - self._last_ping >= self._ping_every - (
            self.period / 2
        ):
            self._notifier.watchdog()
            self._last_ping = now

    async def run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.period)


class HealthServer:
    """The /healthz, /readyz and /metrics app; start() binds it, stop() closes it."""

    def __init__(
        self,
        *,
        heartbeat: Heartbeat,
        pool: asyncpg.Pool,
        metrics: Metrics,
        ready: Callable[[], bool],
        stall_seconds: float,
        db_timeout: float,
    ) -> None:
        self._heartbeat = heartbeat
        self._pool = pool
        self._metrics = metrics
        self._ready = ready
        self._stall = stall_seconds
        self._db_timeout = db_timeout
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def healthz(self, _request: web.Request) -> web.Response:
        age = self._heartbeat.age()
        alive = age < self._stall
        body = {"status": "ok" if alive else "stalled", "last_tick_age_seconds": round(age, 3)}
        return web.json_response(body, status=200 if alive else 503)

    async def readyz(self, _request: web.Request) -> web.Response:
        database = await self._database_answers()
        schedules = self._ready()
        ok = database and schedules
        body: dict[str, Any] = {
            "status": "ready" if ok else "not ready",
            "database": "ok" if database else "unreachable",
            "schedules": "loaded" if schedules else "loading",
        }
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        await self._metrics.collect_database(self._pool, within=self._db_timeout)
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(self._db_timeout):
                await self._pool.fetchval(QUERIES["health_ping"])
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("readiness_database_unavailable", error=repr(exc))
            return False
        return True

    async def start(self, address: str, port: int) -> int:
        """Listen on address:port (port 0: any free one); returns the bound port."""
        self._runner, bound = await listen(
            self.app(), address, port, name="health/metrics server",
            fix="set FA_SYNC_METRICS_ADDRESS / FA_SYNC_METRICS_PORT, or FA_SYNC_METRICS_PORT=0 "
            "to disable it",
        )  # fmt: skip
        log.info("health_listening", address=address, port=bound)
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def listen(
    app: web.Application, address: str, port: int, *, name: str, fix: str
) -> tuple[web.AppRunner, int]:
    """Serve `app` on this loop at address:port (0: any free port): (runner, bound port).
    A port that cannot be bound is a ConfigError naming the server and what to change."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, address, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"{name}: cannot listen on {address}:{port} ({exc.strerror}); {fix}"
        ) from exc
    return runner, int(runner.addresses[0][1]) if runner.addresses else port
