"""Fixtures shared by the daemon's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clirun import fa_sync


@pytest.fixture
def cli80(database_dsn: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run `fa-sync ARGS` as on an 80-column terminal; returns (exit code, stdout, stderr)."""

    async def run(*args: str) -> tuple[int, str, str]:
        return await fa_sync(
            *args, dsn=database_dsn, cwd=tmp_path, env={"COLUMNS": "80", "LINES": "50"}
        )

    return run
