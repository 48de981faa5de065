"""`fa-sync demo`, the README's first command, ends with every check holding."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import ROOT


async def test_demo_ends_ok_with_faults_on(pg_server_dsn: str, tmp_path: Path) -> None:
    """The demo (429s, 5xx on creates, a settle window) exits 0: no duplicate, nobody stuck."""
    env = {
        **os.environ,
        "DATABASE_URL": pg_server_dsn,
        "FA_SYNC_LOG_FORMAT": "json",
        "FA_SYNC_DATA_DIR": str(tmp_path / "pgdata"),  # the demo's own key file goes here
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "demo",
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=100)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "demo OK" in text
    assert "duplicate contacts in FreeAgent: 0" in text
