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


def machine_busy() -> float:
    """CPU-seconds the machine has spent on anything but idle and I/O wait since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user..steal, without idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Cpu:
    own: float = 0.0  #: this process (fa-sync or the bare client)
    machine: float = 0.0  #: every process: PostgreSQL, the simulators, anything else running

    def per(self, records: int) -> str:
        """ "1.2 ms own, 3.4 ms machine" per record."""
        if records <= 0:
            return "-"
        own, machine = 1000 * self.own / records, 1000 * self.machine / records
        return f"{own:.2f} ms own, {machine:.2f} ms machine"


@contextmanager
def measured() -> Iterator[Cpu]:
    """The CPU spent inside the block (filled in when it ends)."""
    cpu = Cpu()
    own, machine = own_cpu(), machine_busy()
    try:
        yield cpu
    finally:
        cpu.own = own_cpu() - own
        cpu.machine = machine_busy() - machine
