"""`fa-sync demo --serve`: the simulators and a real daemon, left running to try the
operator's workflow on (status, history, changing a schedule, following the logs).

    embedded PostgreSQL (or DATABASE_URL's server) ── database fa_sync_demo, recreated
    simulators: Magento (a shopper signs up or changes every --trickle seconds), FreeAgent
    one export at once, so history and the ledger have something to show
    process.main(): the daemon of `fa-sync run`, JSON logs to a file, until Ctrl-C/SIGTERM

Shutdown is the daemon's own (drain, release runs), then the simulators close and the
embedded server is stopped by pgserver (a clean shutdown: nothing to recover next time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from daemon.cli_contacts import run_once
from daemon.cli_support import console, err_console, settings
from daemon.context import RunOptions
from daemon.db.pool import recreate_database
from daemon.demo import DEMO_DB
from daemon.logs import configure
from daemon.process import database_server, open_services
from daemon.process import main as daemon_main
from daemon.scheduler import parse_cron
from daemon.screens import COUNT_LABELS, counts_text
from daemon.secretbox import embedded_key, embedded_key_path
from daemon.settings import Settings
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack, register, simulators
from simulators.trickle import trickle

PROFILE = "demo"
#: Printed last: everything above it is true by then (tests wait for this line).
READY_LINE = "Press Ctrl-C to stop."


def log_path(base: Settings) -> Path:
    """The served daemon's JSON log, beside the embedded data directory."""
    return (base.data_dir.parent / "demo-daemon.log").resolve()


@contextlib.contextmanager
def private_log(path: Path) -> Iterator[TextIO]:
    """The log file, started afresh with the demo's database (`tail -f` follows that) and
    readable by its owner only (it names customers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)  # a file from before may have been wider
    with os.fdopen(fd, "a", encoding="utf-8", buffering=1) as stream:
        yield stream


async def serve_demo(*, customers: int, faults: bool, schedule: str, trickle_seconds: float) -> int:
    """Run until SIGINT/SIGTERM; 0 after a clean stop."""
    parse_cron(schedule, "UTC")  # a bad --schedule is one red line, before anything starts
    base = settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # main() installs the same once it runs
    log_file = log_path(base)
    server_dsn, server = await database_server(base)
    try:
        demo_dsn = await recreate_database(server_dsn, DEMO_DB)
        key_file = None if base.secret_key else embedded_key_path(base.data_dir).resolve()
        demo_settings = base.model_copy(
            update={
                "database_url": SecretStr(demo_dsn),
                "secret_key": base.secret_key or SecretStr(embedded_key(base.data_dir)),
                "http_retry_max_wait": 1.0,
                "http_timeout": 3.0,
                "create_settle_seconds": 30.0,  # 5xx on a create: looked up 30 s later
                "record_retry_base_seconds": 10.0,
            }
        )
        with private_log(log_file) as stream:
            configure(log_format="json", level=base.log_level, stream=stream)
            try:
                code = await _serve(
                    demo_settings,
                    stop,
                    customers=customers,
                    faults=faults,
                    schedule=schedule,
                    trickle_seconds=trickle_seconds,
                    notes=_Notes(demo_dsn, key_file, log_file),
                )
            finally:  # back to stderr before the file closes
                configure(log_format=base.log_format, level="ERROR")
    finally:
        if server is not None:
            console.print("stopping the embedded PostgreSQL")
            server.cleanup()
    console.print("demo stopped" if code == 0 else "[red]demo stopped with an error[/red]")
    return code


@dataclass(frozen=True)
class _Notes:
    """What the instructions need to know."""

    dsn: str  #: the demo database (printed with any password replaced)
    key_file: Path | None  #: the generated key, unless FA_SYNC_SECRET_KEY was set
    log_file: Path  #: the served daemon's JSON log


async def _serve(
    demo_settings: Settings,
    stop: asyncio.Event,
    *,
    customers: int,
    faults: bool,
    schedule: str,
    trickle_seconds: float,
    notes: _Notes,
) -> int:
    fa = FreeAgentState(error_rate=0.02 if faults else 0.0, seed=11)
    mg = MagentoState.seeded(customers=customers, guest_orders=max(5, customers // 6))
    async with simulators(freeagent=fa, magento=mg) as stack:
        async with open_services(demo_settings) as s:
            await register(
                s.pool, stack, secrets=s.factory.secrets, profile=PROFILE, schedule=schedule
            )
            console.print(f"first export of profile {PROFILE} ...")
            outcome = await run_once(s, PROFILE, RunOptions())
        if stop.is_set():  # Ctrl-C during the first export
            return 0
        console.print(
            f"first export: {outcome.status}, "
            f"{counts_text(outcome.counts.as_dict(), COUNT_LABELS) or 'nothing to do'}"
        )
        _instructions(demo_settings, stack, notes, schedule, trickle_seconds)
        shop = asyncio.create_task(trickle(mg, every=trickle_seconds), name="magento-trickle")
        try:
            return await daemon_main(demo_settings, stop=stop)
        except OSError as exc:  # the health port is taken, most likely
            err_console.print(
                f"[red]error:[/red] the daemon could not start: {exc} "
                "(another fa-sync on port FA_SYNC_METRICS_PORT? set it to a free port or 0)"
            )
            return 1
        finally:
            shop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shop


def shown_dsn(dsn: str) -> str:
    """The DSN to print: a password is replaced by PASSWORD (never printed)."""
    parts = urlsplit(dsn)
    if not parts.password:
        return dsn
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:PASSWORD@{host}"))


def _instructions(
    s: Settings, stack: Stack, notes: _Notes, schedule: str, trickle_seconds: float
) -> None:
    """What to try, as commands to copy: lines are never wrapped, whatever the width."""
    health = f"http://{s.metrics_address}:{s.metrics_port}"
    exports = [f"export DATABASE_URL={shlex.quote(shown_dsn(notes.dsn))}"]
    if notes.key_file is not None:
        exports.append(f'export FA_SYNC_SECRET_KEY="$(cat {shlex.quote(str(notes.key_file))})"')
    else:
        exports.append("export FA_SYNC_SECRET_KEY=...  # the same key as this terminal's")
    lines = [
        "",
        f"A daemon is running profile {PROFILE!r} on schedule {schedule!r}.",
        f"  Magento simulator    {stack.magento_url} (a shopper signs up or changes "
        f"every {trickle_seconds:g} s)",
        f"  FreeAgent simulator  {stack.freeagent_url}",
        f"  daemon logs (JSON)   tail -f {shlex.quote(str(notes.log_file))}",
    ]
    if s.metrics_port:
        lines += [
            f"  health               {health}/healthz   {health}/readyz",
            f"  metrics              {health}/metrics",
        ]
    else:
        lines.append("  health and metrics   off (FA_SYNC_METRICS_PORT=0)")
    if shown_dsn(notes.dsn) != notes.dsn:
        lines.append("(put your database password in place of PASSWORD)")
    lines += [
        "",
        "In another terminal, the same database:",
        *(f"  {line}" for line in exports),
        "  fa-sync status",
        f"  fa-sync history --profile {PROFILE}",
        f"  fa-sync profile show {PROFILE}",
        "",
        "Change the schedule (the daemon picks it up at once):",
        f"  fa-sync profile set {PROFILE} --schedule '*/2 * * * *'",
        'or in SQL (psql "$DATABASE_URL"):',
        f"  UPDATE profile SET schedule = '*/2 * * * *' WHERE name = '{PROFILE}';",
        "",
        READY_LINE,
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
