"""A fixed CPU budget for one process, as a container (`--cpus`) or CPUQuota= gives it.

In production each replica runs on a budget of its own; on one small machine, daemons
without one share the same cores with each other and with PostgreSQL and the simulators, so
a second and third daemon can add no throughput however well they coordinate. The scale-out
measure (bench/shops.py) puts each daemon in a CPU cgroup of its own with the same quota:

    cgroup v1  /sys/fs/cgroup/cpu/NAME: cpu.cfs_period_us, cpu.cfs_quota_us, cgroup.procs
    cgroup v2  /sys/fs/cgroup/NAME: cpu.max ("QUOTA PERIOD"), cgroup.procs; the parent must
               list cpu in cgroup.subtree_control (enabled here if it does not)

Needs root and a writable cgroup file system; where there is none, `cpu_quota` yields None
and the measure runs unconstrained, saying why (`unavailable()`). Children of a process in
a group stay in it; when the block ends every process in the group goes back to the group
it came from and the group is removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: FA_SYNC_BENCH_DAEMON_CPUS: each daemon's budget in cores; 0 runs them unconstrained.
ENV = "FA_SYNC_BENCH_DAEMON_CPUS"
DEFAULT_CPUS = 0.2
PERIOD_US = 100_000
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


def daemon_cpus() -> float:
    """The budget asked for by FA_SYNC_BENCH_DAEMON_CPUS (cores; 0: none)."""
    text = os.environ.get(ENV, "").strip()
    return float(text) if text else DEFAULT_CPUS


@dataclass
class CpuGroup:
    """One process's CPU cgroup while the block runs."""

    path: Path
    version: int  #: 1 or 2
    cpus: float

    def throttling(self) -> tuple[int, int, float]:
        """(periods, periods throttled, seconds throttled) so far, from cpu.stat."""
        lines = (self.path / "cpu.stat").read_text().splitlines()
        stat = dict(line.split()[:2] for line in lines if len(line.split()) >= 2)
        if self.version == 1:
            return (int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0)),
                    int(stat.get("throttled_time", 0)) / 1e9)  # fmt: skip
        return (int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0)),
                int(stat.get("throttled_usec", 0)) / 1e6)  # fmt: skip


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _v2_ready(root: Path) -> bool:
    """cgroup v2 with the cpu controller available to children of `root`."""
    controllers = root / "cgroup.controllers"
    if not controllers.exists() or "cpu" not in controllers.read_text().split():
        return False
    control = root / "cgroup.subtree_control"
    if "cpu" not in control.read_text().split():
        with contextlib.suppress(OSError):
            control.write_text("+cpu")
    return "cpu" in control.read_text().split() and _writable(root)


def unavailable(v1: Path = V1_ROOT, v2: Path = V2_ROOT) -> str | None:
    """Why no CPU quota can be set here, or None when one can."""
    if (v1 / "cpu.cfs_quota_us").exists():
        return None if _writable(v1) else f"{v1} is not writable (not root?)"
    try:
        if _v2_ready(v2):
            return None
    except OSError as exc:
        return f"cgroup v2 at {v2}: {exc}"
    return f"no writable cgroup cpu controller ({v1} or {v2})"


def _origin(pid: int, version: int) -> str:
    """The cgroup (relative path) the process is in now, for the cpu hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (version == 2 and controllers == "") or "cpu" in controllers.split(","):
            return path.lstrip("/")
    return ""


def _move(pid: int, group: Path) -> None:
    with contextlib.suppress(ProcessLookupError, FileNotFoundError):
        (group / "cgroup.procs").write_text(str(pid))


@contextlib.contextmanager
def cpu_quota(
    name: str, pid: int, cpus: float, *, v1: Path = V1_ROOT, v2: Path = V2_ROOT
) -> Iterator[CpuGroup | None]:
    """Process `pid` (and the children it starts) limited to `cpus` cores while the block
    runs; None (and no limit) when cpus is 0 or no cgroup can be written here."""
    if cpus <= 0 or unavailable(v1, v2) is not None:
        yield None
        return
    version, root = (1, v1) if (v1 / "cpu.cfs_quota_us").exists() else (2, v2)
    home = root / _origin(pid, version)
    group = root / name
    group.mkdir()
    try:
        quota = max(1000, round(cpus * PERIOD_US))
        if version == 1:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        _move(pid, group)
        yield CpuGroup(group, version, cpus)
    finally:
        for _ in range(10):  # a child may be forked while the group empties
            left = (group / "cgroup.procs").read_text().split()
            if not left:
                break
            for other in left:
                _move(int(other), home if home.is_dir() else root)
        group.rmdir()
