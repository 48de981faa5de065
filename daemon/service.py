"""The daemon as its supervisor sees it: systemd notifications, the heartbeat (liveness and
watchdog) and the health/metrics server, wrapped around Daemon.serve() by process.main().

    supervised(daemon) ─┬─ heartbeat task   ticks; pings WATCHDOG=1 (daemon/health.py)
                        ├─ announcer task   READY=1 once schedules are loaded, STATUS=
                        │                   while serving, STOPPING=1 when shutdown begins
                        ├─ HealthServer     /healthz /readyz /metrics (unless port 0)
                        └─ WebhookServer    POST /webhooks/magento (FA_SYNC_WEBHOOK_LISTEN)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from daemon.health import HealthServer, Heartbeat
from daemon.runner import utcnow
from daemon.systemd import Notifier
from daemon.webhook import WebhookServer

if TYPE_CHECKING:
    from daemon.process import Daemon

#: How often STATUS= is brought up to date (sent only when the text changed).
STATUS_SECONDS = 2.0


@asynccontextmanager
async def supervised(
    daemon: Daemon, notifier: Notifier, *, heartbeat: Heartbeat | None = None
) -> AsyncIterator[HealthServer | None]:
    """Heartbeat, announcements and (FA_SYNC_METRICS_PORT > 0) the health server, for as long
    as the block runs; yields the server, already listening, or None when disabled."""
    settings = daemon.settings
    beat = heartbeat or Heartbeat(notifier)
    tasks = [
        asyncio.create_task(beat.run(), name="heartbeat"),
        asyncio.create_task(announce(daemon, notifier), name="systemd-status"),
    ]
    server: HealthServer | None = None
    hooks: WebhookServer | None = None
    try:
        if settings.metrics_port:
            server = HealthServer(
                heartbeat=beat,
                pool=daemon.services.pool,
                metrics=daemon.metrics,
                ready=lambda: daemon.reload_count > 0 and not daemon.stopping.is_set(),
                stall_seconds=settings.health_stall_seconds,
                db_timeout=settings.health_db_timeout,
            )
            await server.start(settings.metrics_address, settings.metrics_port)
        if (address := settings.webhook_address()) is not None:
            hooks = WebhookServer(
                pool=daemon.services.pool,
                secrets=daemon.services.factory.secrets,
                on_event=daemon.priority.on_event,
                clock=utcnow,  # senders sign with wall time, even under FA_SYNC_CLOCK_START
                max_body_bytes=settings.webhook_max_body_bytes,
                tolerance_seconds=settings.webhook_tolerance_seconds,
                settle_seconds=settings.webhook_settle_seconds,
            )
            await hooks.start(*address)
        yield server
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.stop()
        if hooks is not None:
            await hooks.stop()
        notifier.close()


async def announce(daemon: Daemon, notifier: Notifier) -> None:
    """READY=1 after the first profile load, STATUS= as things change, STOPPING=1 at the
    start of shutdown (before the drain, so `systemctl status` says what it waits for)."""
    notifier.status(daemon.status_line())
    await _first_of(daemon.stopping.wait(), _loaded(daemon))
    if not daemon.stopping.is_set():
        notifier.ready(daemon.status_line())
    shown = None
    while not daemon.stopping.is_set():
        line = daemon.status_line()
        if line != shown:
            notifier.status(line)
            shown = line
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(daemon.stopping.wait(), STATUS_SECONDS)
    notifier.stopping(daemon.status_line())


async def _loaded(daemon: Daemon) -> None:
    async with daemon.reloaded:
        await daemon.reloaded.wait_for(lambda: daemon.reload_count > 0)


async def _first_of(*coros: Coroutine[Any, Any, object]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
