"""Real `fa-sync run` processes on the test database, and their JSON logs as awaitable events.

Tests start daemons the way systemd or a container runtime does (a subprocess with an
environment), read the JSON lines each writes to stderr, kill them with SIGKILL, stop them with
SIGTERM and start them again. Nothing here waits by sleeping: callers await a log event, a
process exit or a database condition re-checked on each event, always under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from daemon.db.pool import drop_database as drop_named_database
from daemon.db.pool import recreate_database
from simulators.freeagent import FreeAgentState
from tests.clirun import checkout_pythonpath
from tests.secretkeys import TEST_SECRET_KEY

Event = dict[str, Any]
Predicate = Callable[[Event], bool]

#: Environment variables a test run could leak into the daemons; each daemon gets only ours.
_OWN_VARS = ("DATABASE_URL",)
_OWN_PREFIX = "FA_SYNC_"
#: Log lines kept per process for a failure message.
TAIL = 40

#: FreeAgent's "minute" and "hour", shortened alike in the simulator and in the daemons'
#: shared budget (FA_SYNC_RATE_*_WINDOW); the limits themselves stay 120 and 3600.
MINUTE, HOUR = 2.0, 120.0
#: Short timings so leases expire, schedules reload and retries come round within a test.
FAST: dict[str, Any] = {
    "rate_minute_window": MINUTE,
    "rate_hour_window": HOUR,
    "lease_seconds": 3,
    "resync_seconds": 5,
    "shutdown_grace_seconds": 5,
    "http_retry_attempts": 6,
    "http_retry_max_wait": 0.2,
    "record_retry_base_seconds": 0.2,
    # Creates cut short by a kill settle for max(1 s, 10 x http_timeout) = 10 s before they
    # are looked up again; the simulators answer well within 1 s.
    "http_timeout": 1.0,
    "create_settle_seconds": 1.0,
}


def fast_freeagent(**switches: Any) -> FreeAgentState:
    """A FreeAgent simulator whose rate windows match FAST."""
    return FreeAgentState(minute_window=MINUTE, hour_window=HOUR, **switches)


async def create_database(server_dsn: str, template: str) -> str:
    """A fresh database cloned from the migrated template (for module-scoped scenarios)."""
    name = f"fa_sync_r_{uuid.uuid4().hex[:12]}"
    return await recreate_database(server_dsn, name, template=template)


T = TypeVar("T")


def play_once(
    server_dsn: str,
    template: str,
    workdir: Path,
    scenario: Callable[[str, Path], Awaitable[T]],
) -> T:
    """Play a module's scenario once on a database of its own (dropped after), from a
    synchronous module-scoped fixture."""

    async def play() -> T:
        dsn = await create_database(server_dsn, template)
        try:
            return await scenario(dsn, workdir)
        finally:
            await drop_database(server_dsn, dsn)

    return asyncio.run(play())


async def drop_database(server_dsn: str, dsn: str) -> None:
    """Drop a database made by create_database, given its DSN."""
    await drop_named_database(server_dsn, dsn.split("?", 1)[0].rsplit("/", 1)[1])


def event_is(*names: str, replica: str | None = None) -> Predicate:
    """Match log events by name (and optionally by replica slot)."""
    return lambda e: e.get("event") in names and (replica is None or e.get("replica") == replica)


def nth_line(replica_id: str, n: int) -> Predicate:
    """Match the n-th event (counted from the first call) of one daemon process."""
    seen = 0

    def match(event: Event) -> bool:
        nonlocal seen
        if event.get("replica_id") == replica_id:
            seen += 1
        return seen >= n

    return match


@dataclass
class Replica:
    """One daemon slot. A restart keeps the name; each process gets its own replica_id."""

    name: str
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0  #: processes started in this slot so far
    reader: asyncio.Task[None] | None = None

    @property
    def replica_id(self) -> str:
        """FA_SYNC_REPLICA_ID of the current (or last) process: unique per process, as in
        production where it is host:pid."""
        return f"{self.name}.{self.starts}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class Cluster:
    """Daemons on one database, sharing settings; every log line lands in `events`."""

    dsn: str
    workdir: Path
    settings: Mapping[str, Any] = field(default_factory=dict)  #: FA_SYNC_* without the prefix
    replicas: dict[str, Replica] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    kills: int = 0  #: SIGKILLs sent

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._changed = asyncio.Condition()
        self._log = (self.workdir / "daemons.log").open("a", encoding="utf-8")
        self._started = time.monotonic()

    # -- processes --------------------------------------------------------------------------

    def env(self, replica: Replica) -> dict[str, str]:
        """The daemon's whole configuration, as an operator would give it."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_OWN_PREFIX) and k not in _OWN_VARS
        }
        env.update(
            {
                "DATABASE_URL": self.dsn,
                "FA_SYNC_LOG_FORMAT": "json",
                "FA_SYNC_LOG_LEVEL": "INFO",
                "FA_SYNC_REPLICA_ID": replica.replica_id,
                "FA_SYNC_REQUEST_LOG_DIR": str(self.workdir / "requests"),
                # Several replicas on one host: no health server (it would need a port each).
                "FA_SYNC_METRICS_PORT": "0",
                "FA_SYNC_SECRET_KEY": TEST_SECRET_KEY,
                "PYTHONPATH": checkout_pythonpath(),
            }
        )
        env.update({f"{_OWN_PREFIX}{k.upper()}": str(v) for k, v in self.settings.items()})
        return env

    async def start(self, name: str) -> Replica:
        """Start (or restart) the daemon in slot `name`; returns without waiting for it."""
        replica = self.replicas.setdefault(name, Replica(name))
        if replica.alive:
            raise RuntimeError(f"replica {name} is already running")
        replica.starts += 1
        replica.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "run",
            cwd=self.workdir,  # no .env of the developer's, request logs stay in tmp
            env=self.env(replica),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=2**20,  # a JSON line with a traceback can be long
        )
        replica.reader = asyncio.create_task(
            self._read(replica, replica.proc, replica.replica_id), name=f"log-{replica.replica_id}"
        )
        return replica

    async def start_ready(self, name: str, *, within: float = 30.0) -> Replica:
        """Start a daemon and wait until it listens for profile changes."""
        mark = self.mark()
        replica = await self.start(name)
        await self.ready(name, within=within, since=mark)
        return replica

    async def ready(self, name: str, *, within: float = 30.0, since: int = 0) -> None:
        """Wait until the current process of slot `name` listens for profile changes."""
        rid = self.replicas[name].replica_id
        await self.wait_for(
            lambda e: e.get("replica_id") == rid and e.get("event") == "listening",
            since=since,
            within=within,
        )

    async def kill(self, name: str) -> None:
        """SIGKILL: no drain, no cleanup, as when a host dies or the OOM killer strikes."""
        replica = self.replicas[name]
        if not replica.alive:
            return
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGKILL)
        self.kills += 1
        await self._reaped(replica)

    def freeze(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets and locks but does nothing (a VM paused, a
        process swapped out, a long GC pause) until thaw()."""
        self._signal(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        """SIGCONT: the frozen process carries on where it stopped, unaware of the gap."""
        self._signal(name, signal.SIGCONT)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        replica = self.replicas[name]
        if replica.alive:
            assert replica.proc is not None
            replica.proc.send_signal(sig)

    async def terminate(self, name: str, *, within: float) -> int:
        """SIGTERM and wait for the exit code (systemd stop, docker stop)."""
        replica = self.replicas[name]
        assert replica.proc is not None
        if replica.alive:
            replica.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self._reaped(replica), within)
        assert replica.proc.returncode is not None
        return replica.proc.returncode

    async def stop_all(self, *, within: float = 30.0) -> dict[str, int]:
        """SIGTERM every live daemon at once; their exit codes."""
        live = [r.name for r in self.replicas.values() if r.alive]
        codes = await asyncio.gather(*(self.terminate(n, within=within) for n in live))
        return dict(zip(live, codes, strict=True))

    async def close(self) -> None:
        """Kill whatever still runs (teardown after a failure)."""
        for replica in self.replicas.values():
            if replica.alive:
                assert replica.proc is not None
                replica.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reaped(replica), 10)
        self._log.close()

    async def _reaped(self, replica: Replica) -> None:
        """The process has exited and its log is read to the end."""
        if replica.proc is not None:
            await replica.proc.wait()
        if replica.reader is not None:
            await replica.reader

    async def _read(self, replica: Replica, proc: asyncio.subprocess.Process, rid: str) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode("utf-8", errors="replace").rstrip("\n")
            self._log.write(f"{rid} {text}\n")
            try:
                event = json.loads(text)
            except ValueError:
                event = {"event": "stderr", "text": text}
            if not isinstance(event, dict):
                event = {"event": "stderr", "text": text}
            await self._add({**event, "replica": replica.name, "replica_id": rid})
        code = await proc.wait()
        self._log.flush()
        await self._add(
            {
                "event": "process_exited",
                "returncode": code,
                "replica": replica.name,
                "replica_id": rid,
            }
        )

    async def _add(self, event: Event) -> None:
        event["t"] = time.monotonic() - self._started
        async with self._changed:
            event["seq"] = len(self.events)  #: wait_for(since=event["seq"] + 1) goes on after it
            self.events.append(event)
            self._changed.notify_all()

    # -- events -----------------------------------------------------------------------------

    def mark(self) -> int:
        """A position in `events`: wait_for(since=mark) sees only what came after it."""
        return len(self.events)

    def select(self, predicate: Predicate, since: int = 0) -> list[Event]:
        return [e for e in self.events[since:] if predicate(e)]

    async def wait_for(self, predicate: Predicate, *, within: float, since: int = 0) -> Event:
        """The first event from `since` on that matches; AssertionError after `within` s."""

        async def scan() -> Event:
            position = since
            async with self._changed:
                while True:
                    for event in self.events[position:]:
                        if predicate(event):
                            return event
                    position = len(self.events)
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            raise AssertionError(
                f"no matching daemon event within {within:g} s; last events:\n{self.tail()}"
            ) from None

    async def next_event(
        self, predicate: Predicate, *, within: float, since: int | None = None
    ) -> Event | None:
        """Like wait_for, but None when nothing matched in time (for drivers that go on)."""
        try:
            return await self.wait_for(
                predicate, within=within, since=self.mark() if since is None else since
            )
        except AssertionError:
            return None

    async def settle(
        self, check: Callable[[], Awaitable[bool]], *, on: Predicate, within: float
    ) -> None:
        """Await check() becoming true: evaluated now and again after every event matching
        `on` (e.g. each run_finished), never on a timer."""
        deadline = time.monotonic() + within
        while True:
            mark = self.mark()
            if await check():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {within:g} s:\n{self.tail()}")
            await self.wait_for(on, since=mark, within=remaining)

    def tail(self, n: int = TAIL) -> str:
        keys = ("t", "replica_id", "event", "status", "error", "reason", "run_id")
        return "\n".join(
            " ".join(f"{k}={e[k]!r}" for k in keys if k in e) for e in self.events[-n:]
        )
