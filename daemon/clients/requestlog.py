"""The optional per-profile request/response log: JSON lines, scrubbed, private to its owner.

Files live in FA_SYNC_REQUEST_LOG_DIR and are named from the profile name, which is free
text: it is reduced to safe characters (no path separators, no dots, so no `..`) and suffixed
with a short hash of the raw name, so `../x` stays inside the directory and two names that
reduce alike still get two files. Files are created 0600 and a directory we create 0700:
even scrubbed, the traffic names customers.
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

    @classmethod
    def for_profile(
        cls, directory: Path, name: str, service: str, *, requests: bool, responses: bool
    ) -> RequestLog:
        """The log of one profile's traffic with one service, inside directory."""
        return cls(directory / log_file_name(name, service), requests, responses)

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append one entry; the caller has already scrubbed it."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, FILE_MODE)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:  # a file from before: tighten it
                with contextlib.suppress(OSError):
                    os.fchmod(fd, FILE_MODE)
            fh.write(json.dumps(entry, default=str, ensure_ascii=False) + "\n")
