"""The optional per-profile request/response log: JSON lines, scrubbed, private to its owner.

Files live in FA_SYNC_REQUEST_LOG_DIR and are named from the profile name, which is free
text: it is reduced to safe characters (no path separators, no dots, so no `..`) and suffixed
with a short hash of the raw name, so `../x` stays inside the directory and two names that
reduce alike still get two files. Files are created 0600 and a directory we create 0700:
even scrubbed, the traffic names customers.

Files rotate by size as the standard library's RotatingFileHandler does: a line that would
take the file past `max_bytes` first renames `x.jsonl` to `x.jsonl.1` (`.1` to `.2`, ...,
the oldest beyond `backups` is dropped), so at most (backups + 1) x max_bytes stay on disk.
A rename keeps the mode, so rotated files stay 0600.

Writes happen on the event loop, on purpose: one line is an O_APPEND open/write/close of a
few kB (tens of microseconds on a local disk, against the milliseconds of the request it
records), and rotation is a handful of renames once per max_bytes. A writer thread would
add a queue to drain at shutdown and let lines reach the file after the run that made them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Anything but letters, digits, underscore and hyphen is replaced in file names.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: Longest readable part of a file name (the hash keeps long names distinct).
MAX_NAME = 64
FILE_MODE = 0o600
DIR_MODE = 0o700
#: Defaults of FA_SYNC_REQUEST_LOG_MAX_BYTES and FA_SYNC_REQUEST_LOG_BACKUPS.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


def log_file_name(name: str, service: str) -> str:
    """`<safe name>-<8 hex of sha256(name)>.<service>.jsonl`; never a path."""
    safe = _UNSAFE.sub("_", name).strip("_")[:MAX_NAME] or "profile"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe}-{digest}.{_UNSAFE.sub('_', service)}.jsonl"


@dataclass(frozen=True)
class RequestLog:
    """Optional JSON-lines log of requests and responses, one line per attempt."""

    path: Path  #: file appended to
    log_requests: bool = True  #: include request headers and body
    log_responses: bool = True  #: include response headers and body
    max_bytes: int = DEFAULT_MAX_BYTES  #: rotate before a line would pass this size
    backups: int = DEFAULT_BACKUPS  #: rotated files kept: path.1 (newest) .. path.<backups>

    @classmethod
    def for_profile(
        cls,
        directory: Path,
        name: str,
        service: str,
        *,
        requests: bool,
        responses: bool,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> RequestLog:
        """The log of one profile's traffic with one service, inside directory."""
        path = directory / log_file_name(name, service)
        return cls(path, requests, responses, max_bytes, backups)

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append one entry, rotating first if it would not fit; already scrubbed."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        line = (json.dumps(entry, default=str, ensure_ascii=False) + "\n").encode()
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            if size and size + len(line) > self.max_bytes:
                os.close(fd)
                fd = -1
                self.rotate()
                fd = self._open()
            os.write(fd, line)
        finally:
            if fd >= 0:
                os.close(fd)

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, FILE_MODE)
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:  # a file from before: tighten it
            with contextlib.suppress(OSError):
                os.fchmod(fd, FILE_MODE)
        return fd

    def rotate(self) -> None:
        """path -> path.1 -> path.2 ... ; the file beyond `backups` is dropped (the stdlib
        RotatingFileHandler's scheme, so log tools that know it read these too)."""
        oldest = self.backup(self.backups)
        with contextlib.suppress(FileNotFoundError):
            oldest.unlink()
        for n in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                self.backup(n).rename(self.backup(n + 1))
        if self.backups:
            self.path.rename(self.backup(1))
        else:
            self.path.unlink()

    def backup(self, n: int) -> Path:
        """The n-th rotated file (1 is the newest)."""
        return self.path.with_name(f"{self.path.name}.{n}")
