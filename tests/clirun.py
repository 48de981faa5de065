"""Run the fa-sync CLI as a subprocess against a test database, as a user would."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.secretkeys import TEST_SECRET_KEY

#: This checkout: the subprocess imports fa-sync from here, not from wherever the virtualenv's
#: editable install points (another checkout of the repository).
ROOT = Path(__file__).resolve().parent.parent


async def fa_sync(
    *args: str, dsn: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`fa-sync ARGS` with DATABASE_URL=dsn, JSON logs, 200 columns and the tests' secret key
    (which seals rows a test seeded in plain text at start); env overrides any of them.
    Returns (exit code, stdout, stderr)."""
    environment = {
        **os.environ,
        "DATABASE_URL": dsn,
        "FA_SYNC_LOG_FORMAT": "json",
        "COLUMNS": "200",
        "FA_SYNC_SECRET_KEY": TEST_SECRET_KEY,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", *args,
        env=environment, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()
