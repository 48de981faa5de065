"""fa-sync's CLI as a child process, with its peak RSS and CPU time (os.wait4's rusage)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bench.stack import ROOT, SECRET_KEY


@dataclass
class ChildRun:
    returncode: int
    seconds: float
    peak_rss_mib: float  #: ru_maxrss of the child
    cpu_seconds: float  #: user + system
    stdout: str


def daemon_env(dsn: str, settings: dict[str, Any]) -> dict[str, str]:
    """The child's whole configuration: no FA_SYNC_* or DATABASE_URL of ours leaks in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FA_SYNC_") and k != "DATABASE_URL"}  # fmt: skip
    env.update({"DATABASE_URL": dsn, "FA_SYNC_SECRET_KEY": SECRET_KEY,
                "FA_SYNC_LOG_FORMAT": "json", "FA_SYNC_LOG_LEVEL": "ERROR",
                "PYTHONPATH": str(ROOT)})  # fmt: skip
    env.update({f"FA_SYNC_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def _run(args: list[str], env: dict[str, str]) -> ChildRun:
    with tempfile.TemporaryDirectory() as cwd, tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "daemon", *args], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    return ChildRun(
        proc.returncode, seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, text
    )


async def fa_sync_cli(args: list[str], env: dict[str, str]) -> ChildRun:
    """`fa-sync ARGS` to completion, in a thread so the simulators' control calls go on."""
    return await asyncio.to_thread(_run, args, env)
