"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING reach $NOTIFY_SOCKET, and
the watchdog goes quiet while the event loop is blocked (so systemd restarts a hung daemon)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from daemon import process
from daemon.settings import Settings
from daemon.systemd import Notifier

WAIT = 20.0
#: WatchdogSec the test "unit" asks for: 0.2 s, so pings every 0.1 s.
WATCHDOG_USEC = 200_000
#: How long the test blocks the loop: five watchdog intervals.
BLOCK_SECONDS = 1.0


class NotifySocket:
    """The test's side of NOTIFY_SOCKET: a datagram socket read by a thread, so arrivals are
    timed even while the event loop under test is blocked."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.received: list[tuple[float, str]] = []
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while data := self.sock.recv(4096):
            item = (time.monotonic(), data.decode())
            self.received.append(item)
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def expect(self, line: str, *, after: float = 0.0) -> float:
        """Arrival time of the next message holding `line`, received after `after`."""
        async with asyncio.timeout(WAIT):
            while True:
                at, message = await self._queue.get()
                if at > after and line in message.splitlines():
                    return at

    def close(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"", self.sock.getsockname())  # an empty datagram ends the reader
        self._thread.join(WAIT)
        self.sock.close()


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    """An abstract-namespace NOTIFY_SOCKET, as systemd hands out."""
    s = NotifySocket(f"@fa-sync-test-{uuid.uuid4().hex}")
    yield s
    s.close()


@pytest.fixture
def systemd_env(notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield


@pytest.fixture
async def running(
    systemd_env: None, database_dsn: str, settings: Settings
) -> AsyncIterator[asyncio.Event]:
    """`fa-sync run` in-process (process.main) on this test's database; set the event to stop."""
    run_settings = settings.model_copy(
        update={"database_url": SecretStr(database_dsn), "metrics_port": 0}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(process.main(run_settings, stop=stop))
    yield stop
    stop.set()
    assert await asyncio.wait_for(task, WAIT) == 0


async def test_ready_watchdog_and_stopping_arrive(
    notify_socket: NotifySocket, running: asyncio.Event
) -> None:
    """READY=1 once schedules are loaded, WATCHDOG=1 while serving, STOPPING=1 on stop."""
    ready = await notify_socket.expect("READY=1")
    await notify_socket.expect("WATCHDOG=1", after=ready)
    running.set()
    await notify_socket.expect("STOPPING=1")
    statuses = [m for _, m in notify_socket.received if "STATUS=" in m]
    assert any("profile(s) scheduled" in m for m in statuses)


async def test_watchdog_stops_while_the_loop_is_blocked(
    notify_socket: NotifySocket, running: asyncio.Event
) -> None:
    """No WATCHDOG=1 is sent while the loop is stuck; pings resume once it runs again."""
    await notify_socket.expect("READY=1")
    await notify_socket.expect("WATCHDOG=1")
    start = time.monotonic()
    time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251 (a blocking call on the loop: the fault under test)
    end = time.monotonic()
    await notify_socket.expect("WATCHDOG=1", after=end)
    during = [at for at, m in notify_socket.received if m == "WATCHDOG=1" and start < at < end]
    # Unblocked, ~10 pings would arrive in this window; one sent just before the block may
    # still be read inside it.
    assert len(during) <= 1, during


async def test_abstract_socket_names_are_honoured(notify_socket: NotifySocket) -> None:
    """'@name' is the abstract namespace: the message reaches the socket bound there."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": notify_socket.address})
    notifier.ready("serving")
    await notify_socket.expect("READY=1")
    notifier.close()


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    """WATCHDOG_PID naming another process: no watchdog for this one."""
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(env).ping_interval is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier.from_environ(env).ping_interval == 0.5


def test_without_notify_socket_nothing_is_sent() -> None:
    """Outside systemd every call is a no-op (no socket is even opened)."""
    notifier = Notifier.from_environ({})
    notifier.ready("serving")
    notifier.watchdog()
    assert not notifier.enabled and notifier._sock is None
