"""Run the fa-sync CLI as a subprocess against a test database, as a user would."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.secretkeys import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent


def cli_env(dsn: str, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: DATABASE_URL=dsn, JSON logs, 200 columns and the
    tests' secret key (which seals rows a test seeded in plain text at start), importing this
    checkout's code; env overrides any of them, None removes one."""
    environment: dict[str, str | None] = {
        **os.environ,
        "DATABASE_URL": dsn,
        "FA_SYNC_LOG_FORMAT": "json",
        "COLUMNS": "200",
        "FA_SYNC_SECRET_KEY": TEST_SECRET_KEY,
        # The code of this checkout, not whichever one the interpreter has installed in
        # editable mode: the command runs from another directory (cwd).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **(env or {}),
    }
    return {k: v for k, v in environment.items() if v is not None}


async def spawn(
    *args: str, dsn: str, cwd: Path, env: Mapping[str, str | None] | None = None
) -> asyncio.subprocess.Process:
    """Start `fa-sync ARGS` (environment as cli_env) in a session of its own, so a test can
    check that nothing it started outlives it; stdout and stderr are pipes."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", *args,
        env=cli_env(dsn, env), cwd=cwd, start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def fa_sync(
    *args: str, dsn: str, cwd: Path, env: Mapping[str, str | None] | None = None
) -> tuple[int, str, str]:
    """`fa-sync ARGS` run to the end (environment as cli_env). Returns (exit code, stdout,
    stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", *args,
        env=cli_env(dsn, env), cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()
