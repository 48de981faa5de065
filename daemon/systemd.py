"""systemd's notify protocol, spoken directly: one datagram per message to $NOTIFY_SOCKET.

`Type=notify` units wait for READY=1; STATUS= is what `systemctl status` shows; STOPPING=1
says a shutdown has begun; WATCHDOG=1 must arrive at least every WatchdogSec or systemd kills
and (with Restart=) restarts the service. Outside systemd (no NOTIFY_SOCKET) every call is a
no-op, so the same code runs in a terminal, a container or a test.

Protocol quirks (sd_notify(3), sd_watchdog_enabled(3)):
- A socket name starting with '@' is in the abstract namespace: '@' stands for a NUL byte.
- WATCHDOG_USEC is the interval in microseconds; WATCHDOG_PID, when set, names the one
  process the watchdog is meant for (a child that inherited the environment must not ping).
- Sending never blocks and never raises: a full or vanished socket must not stall the loop
  or stop the daemon; systemd itself will notice missing pings.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from daemon.logs import get_logger
from daemon.numbers import whole_number

log = get_logger(__name__)


class Notifier:
    """Sends sd_notify messages; a no-op when the process was not started by systemd."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        #: Filesystem path, or "\0name" for an abstract socket; None: not under systemd.
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        #: The watchdog interval in seconds, or None when no watchdog is asked for.
        self.watchdog_seconds = watchdog_usec / 1_000_000 if watchdog_usec else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (os.environ by default)."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        pid = env.get("WATCHDOG_PID", "")
        if not pid or pid == str(os.getpid()):
            raw = env.get("WATCHDOG_USEC", "")
            number = whole_number(raw)
            usec = number if number is not None and number > 0 else None
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def ping_interval(self) -> float | None:
        """How often to send WATCHDOG=1: half the interval, as sd_watchdog_enabled advises."""
        return self.watchdog_seconds / 2 if self.watchdog_seconds and self.enabled else None

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str) -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def send(self, message: str) -> None:
        """One datagram; failures are logged once and otherwise ignored."""
        if self.address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd_notify_failed", error=repr(exc))
            self._failed = True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
