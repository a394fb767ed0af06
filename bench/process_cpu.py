"""CPU time of processes, as Linux counts it: ``/proc/<pid>/stat`` for time on a core and
``/proc/<pid>/task/*/schedstat`` for time spent runnable, waiting for one.

Seconds of CPU are what a shared machine measures best: another process's load slows
a benchmark's wall-clock rates, but hardly the CPU seconds each of its payments costs.
The run-queue wait says how much of the wall clock went to waiting for a core.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """A process's CPU seconds (its reaped children's too) and seconds runnable but not
    running (its live threads')."""

    cpu_s: float
    runqueue_s: float
    started_ticks: int

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(
            self.cpu_s - other.cpu_s, self.runqueue_s - other.runqueue_s, self.started_ticks
        )


NONE = CpuTimes(0.0, 0.0, 0)


def cpu_times(pid: int) -> CpuTimes | None:
    """``None`` once the process is gone (or was never there)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields follow its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    started = int(fields[19])
    return CpuTimes((utime + stime + cutime + cstime) / _TICKS_PER_S, _runqueue_s(pid), started)


def _runqueue_s(pid: int) -> float:
    waited = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        # A thread may end meanwhile; a kernel without schedstats has no second field.
        with suppress(OSError, IndexError):
            waited += int((task / "schedstat").read_text().split()[1])
    return waited / 1e9


def boot_ticks_now() -> int:
    """Clock ticks since boot now, as ``started_ticks`` counts them."""
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    return int(uptime_s * _TICKS_PER_S)


@dataclass(frozen=True, slots=True)
class MachineTimes:
    """Every core's time together, from ``/proc/stat``: busy and idle (iowait included)."""

    busy_s: float
    idle_s: float

    def __sub__(self, other: MachineTimes) -> MachineTimes:
        return MachineTimes(self.busy_s - other.busy_s, self.idle_s - other.idle_s)


def machine_times() -> MachineTimes:
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    values = [int(value) for value in first[1:9]]
    idle = values[3] + values[4]
    return MachineTimes((sum(values) - idle) / _TICKS_PER_S, idle / _TICKS_PER_S)
