"""Request log files: named safely from free-text profile names, readable by the owner only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import asyncpg
import pytest

from daemon.clients.requestlog import RequestLog, log_file_name
from daemon.errors import ConfigError
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


def test_log_files_rotate_by_size_and_count(tmp_path: Path) -> None:
    """Past max_bytes the file moves to .1 (.1 to .2 ...); only `backups` old files stay,
    none larger than max_bytes, all 0600, and the newest lines are in the live file."""
    log = RequestLog.for_profile(
        tmp_path, "shop", "freeagent", requests=True, responses=True, max_bytes=1000, backups=3
    )
    for n in range(100):  # ~60 bytes a line: about six files' worth
        log.write({"n": n, "url": "https://api.test/v2/contacts"})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [log.path.name, *(f"{log.path.name}.{n}" for n in (1, 2, 3))]
    for path in tmp_path.iterdir():
        assert path.stat().st_size <= 1000
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    live = [json.loads(line)["n"] for line in log.path.read_text().splitlines()]
    newest_backup = [json.loads(line)["n"] for line in log.backup(1).read_text().splitlines()]
    assert live[-1] == 99
    assert newest_backup[-1] == live[0] - 1  # nothing lost between the two


def test_log_files_without_backups_start_over(tmp_path: Path) -> None:
    """backups=0: the full file is dropped, never renamed."""
    log = RequestLog(tmp_path / "r.jsonl", max_bytes=200, backups=0)
    for n in range(20):
        log.write({"n": n})
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]
    assert log.path.stat().st_size <= 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [("FA_SYNC_REQUEST_LOG_MAX_BYTES", "0"), ("FA_SYNC_REQUEST_LOG_BACKUPS", "-1")],
)
def test_rotation_settings_are_bounded(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A file size of 0 (rotate on every line) or negative backups is refused at start."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        Settings.load(_env_file=None)


async def test_daemon_rotates_with_the_configured_sizes(
    pool: asyncpg.Pool, factory: ClientFactory, stack: Stack, settings: Settings
) -> None:
    """The clients the daemon builds log with FA_SYNC_REQUEST_LOG_MAX_BYTES / _BACKUPS."""
    small = settings.model_copy(update={"request_log_max_bytes": 4096, "request_log_backups": 2})
    factory = ClientFactory(
        pool=pool, settings=small, transport=factory.transport, secrets=factory.secrets
    )
    client = await factory.freeagent(
        stack.client_id, profile_name="shop", log_requests=True, log_responses=True
    )
    for _ in range(12):
        await client.company()
    files = sorted(p.name for p in settings.request_log_dir.iterdir())
    assert len(files) == 3 and files[1].endswith(".1") and files[2].endswith(".2")
    assert all(p.stat().st_size <= 4096 for p in settings.request_log_dir.iterdir())
