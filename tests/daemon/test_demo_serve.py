"""`fa-sync demo --serve`: a daemon to try the operator's commands on, stopped by Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from daemon.demo_serve import READY_LINE, shown_dsn
from tests.clirun import cli_env, spawn


async def lines_until(stream: asyncio.StreamReader, last: str) -> list[str]:
    """Lines read up to and including `last` (callers bound the wait)."""
    lines: list[str] = []
    while not lines or lines[-1] != last:
        raw = await stream.readline()
        if not raw:
            raise AssertionError("output ended before the instructions:\n" + "\n".join(lines))
        lines.append(raw.decode().rstrip())
    return lines


async def as_printed(exports: list[str], *args: str, cwd: Path) -> tuple[int, str]:
    """`fa-sync ARGS` in a shell that ran the printed `export` lines, and nothing else told
    it where the database is or what the key is."""
    env = cli_env("", {"DATABASE_URL": None, "FA_SYNC_SECRET_KEY": None, "COLUMNS": "80"})
    script = "\n".join([*exports, 'exec "$0" -m daemon "$@"'])
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, sys.executable, *args,
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


async def test_demo_serve_runs_until_ctrl_c(
    pg_server_dsn: str, tmp_path: Path, unused_tcp_port: int
) -> None:
    """The printed instructions work from another shell (status, history, health), and
    SIGINT stops everything: exit 0, the daemon's shutdown logged, no process left behind."""
    proc = await spawn(
        "demo", "--serve", "--customers", "12", "--no-faults", "--trickle", "1",
        dsn=pg_server_dsn, cwd=tmp_path,
        env={
            "FA_SYNC_SECRET_KEY": None,  # the demo makes its own, beside its data directory
            "FA_SYNC_DATA_DIR": str(tmp_path / "pgdata"),
            "FA_SYNC_METRICS_PORT": str(unused_tcp_port),
        },
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        printed = await asyncio.wait_for(lines_until(proc.stdout, READY_LINE), 40)
        exports = [line.strip() for line in printed if line.strip().startswith("export ")]
        assert [e.split("=")[0] for e in exports] == [
            "export DATABASE_URL",
            "export FA_SYNC_SECRET_KEY",
        ]
        assert "WHERE name = 'demo'" in "\n".join(printed)

        code, status = await as_printed(exports, "status", cwd=tmp_path)
        assert code == 0, status
        assert "demo  enabled" in status and "every minute" in status
        code, history = await as_printed(exports, "history", "--profile", "demo", cwd=tmp_path)
        assert code == 0, history
        # the first export, done before serving, as printed and as history shows it
        first = next(line for line in printed if line.startswith("first export: complete, "))
        assert first.removeprefix("first export: complete, ") in history
        health = next(w for line in printed for w in line.split() if w.endswith("/healthz"))
        async with aiohttp.ClientSession() as http, http.get(health) as answer:
            assert answer.status == 200

        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "demo stopped" in rest.decode()
    log = (tmp_path / "demo-daemon.log").read_text()
    assert '"event": "daemon_started"' in log and '"event": "daemon_stopped"' in log
    assert (tmp_path / "demo-daemon.log").stat().st_mode & 0o077 == 0
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        pass  # the whole session is gone
    else:
        raise AssertionError("a process the demo started is still running")


def test_printed_database_url_never_shows_a_password() -> None:
    """A password in DATABASE_URL is printed as PASSWORD; the embedded socket DSN as is."""
    assert (
        shown_dsn("postgresql://fa:hunter2@db.internal:5433/fa_sync_demo?sslmode=require")
        == "postgresql://fa:PASSWORD@db.internal:5433/fa_sync_demo?sslmode=require"
    )
    embedded = "postgresql://postgres:@/fa_sync_demo?host=/srv/.fa-sync/pgdata"
    assert shown_dsn(embedded) == embedded
