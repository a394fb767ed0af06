"""Where a drain's time goes, for each number of worker processes (``p2p bench
--workers-sweep``): CPU seconds per payment by process, time runnable but waiting for a
core, PostgreSQL's backend time by what it waits on, and from those a projection of the
drain on more cores.

A round's worker processes boot first and are stopped (``paused``) while its backlog is
submitted; the window opens as they are continued, all at once, and closes when the last
message is acknowledged. So four processes booting on two cores neither settle part of
the backlog early nor spend their start-up CPU inside the window.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bench.database import BenchDatabase, PostgresBench
from bench.pg_activity import Activity, ActivitySampler
from bench.process_cpu import NONE, CpuTimes, boot_ticks_now, cpu_times, machine_times
from bench.stack import BenchStack, Child, child_pids, wait_until

# The processes that settle a backlog; the API (idle while it drains), the bench itself
# and the rest of the machine are reported beside them but projected on no core.
SETTLING = ("worker", "worker supervisor", "redis", "pg: worker backends", "pg: server")
PROJECTED_CORES = (1, 2, 4, 8, 16)


def worker_processes(worker: Child, processes: int) -> list[int]:
    """The pids that settle: the worker, or the children of ``--processes N``."""
    if processes == 1:
        return [worker.popen.pid]
    return child_pids(worker.popen.pid)


def wait_booted(worker: Child, processes: int) -> None:
    """Until every worker process serves its metrics: it has imported, migrated and is
    about to consume."""
    ports = range(worker.metrics_port, worker.metrics_port + processes)
    wait_until(
        lambda: (
            len(worker_processes(worker, processes)) == processes
            and all(_serves(port) for port in ports)
        ),
        f"{processes} worker process(es) to boot",
        timeout=120,
    )


@contextmanager
def paused(worker: Child, processes: int) -> Iterator[None]:
    """The worker processes stopped (SIGSTOP) inside this block, and continued after it:
    a backlog submitted meanwhile waits for all of them, booted already, to start at
    once. Their parent (under ``--processes N``) runs on: it settles nothing."""
    pids = worker_processes(worker, processes)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


class DrainProfile:
    """CPU, run-queue wait and database activity of one drain, from ``start`` to
    ``stop``."""

    def __init__(
        self, stack: BenchStack, api: Child, worker: Child, processes: int, phase: str
    ) -> None:
        self._workers = processes
        self._db = stack.db
        self._phase = phase
        self._processes = processes
        workers = worker_processes(worker, processes)
        self._pids: dict[str, list[int]] = {
            "api": [api.popen.pid],
            "redis": [child.popen.pid for child in stack.children if child.name == "redis"],
            "bench": [os.getpid()],
        } | {f"worker {n + 1}": [pid] for n, pid in enumerate(workers)}
        if processes > 1:
            self._pids["worker supervisor"] = [worker.popen.pid]
        self._sampler = (
            ActivitySampler(self._db.url) if isinstance(self._db, PostgresBench) else None
        )

    def start(self) -> None:
        if self._sampler is not None:
            for kind, pids in self._sampler.backends().items():
                self._pids.setdefault(_pg_kind(kind), []).extend(pids)
            self._sampler.start()
        self._started_ticks = boot_ticks_now()
        self._settled_before = _settled(self._db, self._phase)
        self._machine = machine_times()
        self._first = {pid: cpu_times(pid) or NONE for pids in self._pids.values() for pid in pids}
        self._began = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """The round's figures, per payment settled in the window."""
        seconds = time.monotonic() - self._began
        machine = machine_times() - self._machine
        activity = self._sampler.stop() if self._sampler is not None else None
        if activity is not None:
            for kind, seen in activity.pids.items():
                known = self._pids.setdefault(_pg_kind(kind), [])
                known.extend(pid for pid in seen if pid not in known)
        cpu: dict[str, CpuTimes] = {}
        for kind, pids in self._pids.items():
            for pid in pids:
                spent = self._spent(pid)
                total = cpu.get(_kind(kind), NONE)
                cpu[_kind(kind)] = CpuTimes(
                    total.cpu_s + spent.cpu_s, total.runqueue_s + spent.runqueue_s, 0
                )
        payments = _settled(self._db, self._phase) - self._settled_before
        ours = sum(times.cpu_s for times in cpu.values())
        cpu["other"] = CpuTimes(max(0.0, machine.busy_s - ours), 0.0, 0)
        per = 1000 / max(1, payments)
        figures: dict[str, Any] = {
            "workers": self._workers,
            "window_s": seconds,
            "window_payments": payments,
            "window_rps": payments / seconds,
            "group_size": _group_size(self._db, self._phase),
            "cpu_ms_per_payment": {kind: t.cpu_s * per for kind, t in sorted(cpu.items())},
            "runqueue_ms_per_payment": {
                kind: t.runqueue_s * per for kind, t in sorted(cpu.items()) if kind != "other"
            },
            "worker_busy_cores": [
                self._spent(pids[0]).cpu_s / seconds
                for kind, pids in sorted(self._pids.items())
                if _kind(kind) == "worker"
            ],
            "machine_busy_cores": machine.busy_s / seconds,
            "machine_idle_share": machine.idle_s / (machine.busy_s + machine.idle_s),
        }
        if activity is not None:
            figures |= _database_figures(activity, payments)
            # SQLite's one writer runs every transaction one at a time, and no sample
            # tells how long: no projection.
            figures["projection_rps"] = projection(figures)
        return figures

    def _spent(self, pid: int) -> CpuTimes:
        now = cpu_times(pid)
        if now is None:
            return NONE  # gone before the end: its share is lost, and small
        first = self._first.get(pid)
        if first is None:
            # Seen only during the window: all of it counts if it started in it.
            first = NONE if now.started_ticks >= self._started_ticks else now
        return now - first


def _kind(kind: str) -> str:
    """Worker processes are reported together; each one's share is in
    ``worker_busy_cores``."""
    return "worker" if kind.startswith("worker ") and kind != "worker supervisor" else kind


def _pg_kind(kind: str) -> str:
    return "pg: server" if kind == "server" else f"pg: {kind} backends"


def _database_figures(activity: Activity, payments: int) -> dict[str, Any]:
    per = 1000 / max(1, payments)
    waits = {
        f"{kind}: {doing}": seconds * per
        for (kind, doing), seconds in sorted(activity.backend_s.items())
        if kind in ("worker", "server")
        and doing != "idle"
        and not doing.startswith("Activity/")  # a server process's idle loop
        and seconds * per >= 0.0005
    }
    window = max(activity.seconds, 1e-9)
    return {
        "sampled_s": activity.seconds,
        "samples": activity.samples,
        "backend_ms_per_payment": waits,
        "worker_statement_ms_per_payment": {
            f"{name}: {doing}": seconds * per
            for (name, doing), seconds in sorted(
                activity.worker_statement_s.items(), key=lambda item: -item[1]
            )
            if seconds * per >= 0.0005
        },
        "worker_lock_wait_ms_per_payment": sum(
            seconds
            for (kind, doing), seconds in activity.backend_s.items()
            if kind == "worker" and doing.startswith("Lock/")
        )
        * per,
        "commit_order_held_share": activity.ordered_s / window,
        "commit_order_ms_per_payment": activity.ordered_s * per,
        # Backend time of settling transactions, their waits for each other's locks left
        # out: what groups that share accounts run one at a time.
        "worker_transaction_ms_per_payment": sum(
            seconds
            for (name, doing), seconds in activity.worker_statement_s.items()
            if not doing.startswith("Lock/") and name != "read a status"
        )
        * per,
        "worker_in_transaction_share": activity.worker_in_transaction_s / window,
        "worker_in_transaction_ms_per_payment": activity.worker_in_transaction_s * per,
    }


def projection(figures: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Payments/s on ``n`` cores, with the round's number of worker processes: no more
    than ``n`` cores over the CPU seconds a payment costs the settling processes, nor
    than what runs one transaction at a time allows. Cold accounts: groups share none;
    the commit order's lock is held by one transaction at a time, and each worker runs
    one settling transaction at a time. Hot accounts: every group locks the same ones,
    so the whole settling transaction runs one at a time, whatever the workers."""
    cpu_s = sum(figures["cpu_ms_per_payment"].get(kind, 0.0) for kind in SETTLING) / 1000
    ordered_s = figures.get("commit_order_ms_per_payment", 0.0) / 1000
    transaction_s = figures.get("worker_transaction_ms_per_payment", 0.0) / 1000
    workers = figures.get("workers", 1)
    serial_rate = {
        "cold": min(_per(ordered_s), workers * _per(transaction_s)),
        "hot": _per(transaction_s),
    }
    return {
        accounts: {str(cores): min(cores * _per(cpu_s), cap) for cores in PROJECTED_CORES}
        for accounts, cap in serial_rate.items()
    }


def _per(seconds: float) -> float:
    return 1 / seconds if seconds else float("inf")


def _settled(db: BenchDatabase, phase: str) -> int:
    ((count,),) = db.rows(
        f"SELECT count(*) FROM payments WHERE idempotency_key LIKE '{phase}-%'"
        " AND status <> 'pending'"
    )
    return int(count or 0)


def _group_size(db: BenchDatabase, phase: str) -> float:
    """Payments per settling transaction: a group stamps all of its payments with one
    ``completed_at``."""
    ((payments, groups),) = db.rows(
        "SELECT count(*), count(DISTINCT completed_at) FROM payments"
        f" WHERE idempotency_key LIKE '{phase}-%' AND status <> 'pending'"
    )
    return int(payments or 0) / max(1, int(groups or 0))


def _serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def report(sweeps: Sequence[dict[str, Any]]) -> None:
    """A table per database: one row per round, its CPU and waits per payment."""
    for sweep in sweeps:
        rounds = sweep["workers_sweep"]
        kinds = sorted({kind for row in rounds for kind in row["cpu_ms_per_payment"]})
        print()
        print(f"{sweep['database']}: CPU ms per payment by process, waits per payment")
        print(
            "| accounts | workers | payments/s | group | "
            + " | ".join(kinds)
            + " | waiting for a core | lock waits | commit order held | idle machine |"
        )
        print("| ---" * (len(kinds) + 8) + " |")
        for row in rounds:
            cpu = row["cpu_ms_per_payment"]
            runqueue = sum(row["runqueue_ms_per_payment"].get(kind, 0.0) for kind in SETTLING)
            print(
                f"| {row['accounts']} | {row['workers']} | {row['window_rps']:,.0f} | "
                f"{row['group_size']:.0f} | "
                + " | ".join(f"{cpu.get(kind, 0.0):.3f}" for kind in kinds)
                + f" | {runqueue:.3f} | {row.get('worker_lock_wait_ms_per_payment', 0):.3f}"
                f" | {row.get('commit_order_held_share', 0):.0%}"
                f" | {row['machine_idle_share']:.0%} |"
            )
        if "projection_rps" not in rounds[0]:
            continue
        print()
        print(
            "| accounts | workers | settling CPU ms | commit order ms | transaction ms | "
            + " | ".join(f"{n} cores cold / hot" for n in PROJECTED_CORES)
            + " |"
        )
        print("| ---" * (len(PROJECTED_CORES) + 5) + " |")
        for row in rounds:
            cpu = sum(row["cpu_ms_per_payment"].get(kind, 0.0) for kind in SETTLING)
            cold, hot = row["projection_rps"]["cold"], row["projection_rps"]["hot"]
            print(
                f"| {row['accounts']} | {row['workers']} | {cpu:.3f}"
                f" | {row.get('commit_order_ms_per_payment', 0):.3f}"
                f" | {row.get('worker_transaction_ms_per_payment', 0):.3f} | "
                + " | ".join(f"{cold[str(n)]:,.0f} / {hot[str(n)]:,.0f}" for n in PROJECTED_CORES)
                + " |"
            )
