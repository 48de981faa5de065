"""The built wheel is all a deployment needs: installed in a fresh virtualenv outside the
source tree (what the Docker image does), `fa-sync db migrate` sets up an empty database."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from daemon.db.pool import drop_database, recreate_database

ROOT = Path(__file__).resolve().parent.parent
#: What the Dockerfile's build stage copies: the wheel must build from these alone.
BUILD_INPUTS = ["pyproject.toml", "README.md", "schema.sql", "daemon", "profiles", "simulators"]
#: pip's words when a dependency cannot be fetched (no index reachable): skip, not fail.
OFFLINE_SIGNS = ("No matching distribution", "Could not find a version", "NewConnectionError")


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment minus anything pointing back at the source tree."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FA_SYNC_") and k not in drop}
    env.update(extra)
    return env


def _run(args: list[str | Path], cwd: Path, timeout: float, **env: str) -> str:
    done = subprocess.run(  # noqa: S603 (fixed argument lists)
        [str(a) for a in args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(sign in output for sign in OFFLINE_SIGNS):
            pytest.skip(f"dependencies cannot be installed here (offline?): {output[-500:]}")
        raise AssertionError(f"{args[:3]} exited {done.returncode}:\n{output[-3000:]}")
    return done.stdout


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        else:
            shutil.copy2(path, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", tmp / "dist"],
         cwd=src, timeout=180)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("fa_sync-*.whl")
    return wheel


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_wheel_in_a_fresh_virtualenv_migrates_an_empty_database(
    tmp_path: Path, pg_server_dsn: str
) -> None:
    """pip install fa_sync-*.whl into a new venv, then `fa-sync db migrate` from elsewhere."""
    wheel = _build_wheel(tmp_path)
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    _run([sys.executable, "-m", "venv", venv], cwd=work, timeout=120)
    _run([venv / "bin" / "pip", "install", "-q", wheel], cwd=work, timeout=300)
    where = _run([venv / "bin" / "python", "-c", "import daemon; print(daemon.__file__)"],
                 cwd=work, timeout=60)  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv), where

    name = f"fa_sync_wheel_{uuid.uuid4().hex[:10]}"
    dsn = asyncio.run(recreate_database(pg_server_dsn, name))
    try:
        out = _run([venv / "bin" / "fa-sync", "db", "migrate"], cwd=work, timeout=120,
                   DATABASE_URL=dsn)  # fmt: skip
        assert "schema up to date" in out
        assert {"profile", "profile_run", "contact_entity", "fa_sync_schema"} <= asyncio.run(
            _tables(dsn)
        )
    finally:
        asyncio.run(drop_database(pg_server_dsn, name))


async def _tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await conn.close()
