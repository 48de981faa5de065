"""Request log files: named safely from free-text profile names, readable by the owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from daemon.clients.requestlog import RequestLog, log_file_name
from daemon.resources import ClientFactory
from daemon.settings import Settings
from simulators.stack import Stack

HOSTILE_NAMES = ["../x", "../../etc/passwd", "/abs/path", "a/b", "a_b", "..", ".", "", "x\x00y"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_log_file_names_stay_inside_the_directory(name: str, tmp_path: Path) -> None:
    """Whatever the profile is called, its log is a plain file directly in the directory."""
    log = RequestLog.for_profile(tmp_path, name, "freeagent", requests=True, responses=True)
    assert log.path.parent == tmp_path
    assert log.path.resolve().parent == tmp_path.resolve()
    assert not log.path.name.startswith(".")
    assert log.path.name.endswith(".freeagent.jsonl")


def test_log_file_names_keep_names_apart() -> None:
    """Names that sanitise alike ("a/b", "a_b", "a b") still get a file each."""
    names = [*HOSTILE_NAMES, "a b", "a?b"]
    assert len({log_file_name(n, "freeagent") for n in names}) == len(names)


def test_log_files_are_private(tmp_path: Path) -> None:
    """The directory is created 0700 and the file 0600, whatever the umask allows."""
    directory = tmp_path / "logs"
    log = RequestLog.for_profile(directory, "shop", "freeagent", requests=True, responses=True)
    log.write({"url": "https://api.test/v2/company"})
    log.write({"url": "https://api.test/v2/contacts"})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert len(log.path.read_text().splitlines()) == 2


async def test_profile_named_dot_dot_logs_inside_the_log_dir(
    factory: ClientFactory, stack: Stack, settings: Settings
) -> None:
    """A profile called `../x` logs its traffic inside FA_SYNC_REQUEST_LOG_DIR, not beside it."""
    client = await factory.freeagent(stack.client_id, profile_name="../x", log_requests=True)
    await client.company()
    outside = [p for p in settings.request_log_dir.parent.iterdir() if p.name.startswith("x")]
    assert outside == []
    (written,) = settings.request_log_dir.iterdir()
    assert written.name.startswith("x-") and written.name.endswith(".freeagent.jsonl")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
