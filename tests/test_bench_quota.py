"""bench/quota.py: a process held to a CPU quota while a block runs, or told why it cannot be."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.quota import cpu_quota, unavailable

BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"


def _cgroup(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def test_no_writable_cgroup_runs_unconstrained(tmp_path: Path) -> None:
    """Without a cgroup file system the block runs with no group, and the reason is given."""
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    assert unavailable(v1, v2) is not None
    with cpu_quota("fa-sync-test", 1, 0.5, v1=v1, v2=v2) as group:
        assert group is None
    assert not v1.exists()


def test_zero_cpus_means_no_quota() -> None:
    with cpu_quota("fa-sync-test-zero", 1, 0) as group:
        assert group is None


@pytest.mark.skipif(unavailable() is not None, reason=f"no CPU quota here: {unavailable()}")
def test_a_busy_process_is_throttled_then_released() -> None:
    """A spinning child in a 0.05-core group is throttled; afterwards it is back where it was
    and the group is gone."""
    child = subprocess.Popen([sys.executable, "-c", BUSY])  # noqa: S603
    try:
        before = _cgroup(child.pid)
        with cpu_quota("fa-sync-test-busy", child.pid, 0.05) as group:
            assert group is not None
            assert group.path.name in _cgroup(child.pid)
            while group.throttling()[1] < 3 and child.poll() is None:
                time.sleep(0.05)  # the kernel's counters announce nothing: polled
            periods, throttled, _ = group.throttling()
            assert throttled <= periods
        assert _cgroup(child.pid) == before
        assert not group.path.exists()
    finally:
        child.kill()
        child.wait()
