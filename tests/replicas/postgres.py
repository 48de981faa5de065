"""A throwaway PostgreSQL cluster that a test may stop and start.

The shared test server (FA_SYNC_TEST_DSN or the embedded one) serves every other test, so it
must never be restarted under them. This cluster uses the binaries pgserver ships, listens on
a free loopback port, and lives in its own temporary directory. PostgreSQL refuses to run as
root, so as root it runs as pgserver's `pgserver` system user, as the embedded server does.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pgserver

BIN = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"
#: The system user pgserver runs PostgreSQL as when started by root.
ROOT_RUNS_AS = "pgserver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Postgres:
    """One cluster: `init()` once, then `start()`/`stop()` as often as the test likes."""

    data: Path
    port: int
    run_as: str | None  #: OS user running the server (None: ourselves)

    @classmethod
    def in_temp_dir(cls) -> Postgres:
        """A cluster directory outside pytest's tmp_path, which only root may enter."""
        run_as = ROOT_RUNS_AS if os.geteuid() == 0 else None
        data = Path(tempfile.mkdtemp(prefix="fa-sync-pg-"))
        if run_as is not None:
            user = pwd.getpwnam(run_as)  # KeyError: run the embedded server once as root first
            os.chown(data, user.pw_uid, user.pw_gid)
        return cls(data=data, port=_free_port(), run_as=run_as)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def _run(self, program: str, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / program),
            *args,
            user=self.run_as,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), 120)
        if proc.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{output.decode()}")

    async def init(self) -> None:
        await self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=utf8",
            "--no-sync",
        )

    async def start(self) -> None:
        """Start and wait until it accepts connections (pg_ctl -w)."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        await self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "-l",
            str(self.data / "server.log"),
            "start",
        )

    async def stop(self, mode: str = "fast") -> None:
        """Stop: `fast` disconnects every client at once, as a restart by an operator does."""
        await self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    async def destroy(self) -> None:
        """Stop if running and delete the directory."""
        if (self.data / "postmaster.pid").exists():
            await self.stop("immediate")
        shutil.rmtree(self.data, ignore_errors=True)
