"""CPU spent while a block runs: this process's, and the whole machine's (/proc/stat).

On a small machine the simulators, PostgreSQL and fa-sync share the cores, so a rate is bounded
by the machine CPU each record costs; the figures beside a rate say where that CPU went.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU-seconds the machine has spent on anything but idle and I/O wait since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user..steal, without idle and iowait
    return busy / TICK


def cores() -> int:
    """The cores this process (and so the machine's share it runs on) may use."""
    return len(os.sched_getaffinity(0))


def by_process() -> dict[int, tuple[str, float]]:
    """Every readable process: pid -> (kind, CPU-seconds since it started). kind is
    "postgres" (the server and its backends, whoever started them), "simulators" (this
    process's children: bench/simserver.py), or "other". A process that ends inside a block
    takes its CPU with it: PostgreSQL's pooled backends and the simulators outlive the block."""
    me, found = os.getpid(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        name, _, rest = stat.partition("(")[2].rpartition(")")
        fields = rest.split()
        seconds = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        kind = "postgres" if name.startswith("postgres") else "other"
        if kind == "other" and int(fields[1]) == me:
            kind = "simulators"
        found[int(entry.name)] = (kind, seconds)
    return found


def _spent(before: dict[int, tuple[str, float]], kind: str) -> float:
    return sum(
        seconds - before.get(pid, (kind, 0.0))[1]
        for pid, (k, seconds) in by_process().items()
        if k == kind
    )


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Cpu:
    own: float = 0.0  #: this process (fa-sync or the bare client)
    machine: float = 0.0  #: every process: PostgreSQL, the simulators, anything else running
    postgres: float = 0.0  #: PostgreSQL's processes (the server may serve others meanwhile)
    simulators: float = 0.0  #: this process's children

    def per(self, records: int) -> str:
        """ "1.2 ms own, 3.4 ms machine" per record."""
        if records <= 0:
            return "-"
        own, machine = 1000 * self.own / records, 1000 * self.machine / records
        return f"{own:.2f} ms own, {machine:.2f} ms machine"

    def split(self, records: int) -> str:
        """ "PostgreSQL 0.27 ms, simulators 0.17 ms" per record."""
        if records <= 0:
            return "-"
        pg, sims = 1000 * self.postgres / records, 1000 * self.simulators / records
        return f"PostgreSQL {pg:.2f} ms, simulators {sims:.2f} ms"


@contextmanager
def measured() -> Iterator[Cpu]:
    """The CPU spent inside the block (filled in when it ends)."""
    cpu = Cpu()
    own, machine, processes = own_cpu(), machine_busy(), by_process()
    try:
        yield cpu
    finally:
        cpu.own = own_cpu() - own
        cpu.machine = machine_busy() - machine
        cpu.postgres = _spent(processes, "postgres")
        cpu.simulators = _spent(processes, "simulators")
