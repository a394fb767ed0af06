"""The processes a benchmark runs: its own redis-server, ``p2p api``, ``p2p worker`` and
the ceilings, on loopback, in one temporary directory, all stopped at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import redis

from bench.database import BenchDatabase
from bench.pg_activity import API_NAME, WORKER_NAME


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> int:
    """A port ``p`` with ``p + 1 … p + count - 1`` free too (one per worker process)."""
    while True:
        first = free_port()
        if first + count <= 65536 and all(_bindable(first + n) for n in range(1, count)):
            return first


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid``, as Linux lists them; none once it is gone."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Child:
    """A process whose output goes to a log file in the run's directory."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], directory: Path):
        self.name = name
        # A worker's first metrics port (process ``i`` of ``--processes N`` serves on
        # this + ``i``); 0 for other processes.
        self.metrics_port = 0
        self.log_path = directory / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            list(argv), env=env, cwd=directory, stdout=self._log, stderr=subprocess.STDOUT
        )

    def rss_mb(self) -> float:
        """Resident memory now, in MiB, its child processes' included (0 once gone)."""
        return sum(_status_kb(pid, "VmRSS") for pid in self._pids()) / 1024

    def peak_rss_mb(self) -> float:
        return sum(_status_kb(pid, "VmHWM") for pid in self._pids()) / 1024

    def _pids(self) -> list[int]:
        """It and, under ``--processes N``, its children."""
        return [self.popen.pid, *child_pids(self.popen.pid)]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class BenchStack:
    """One run's Redis, database and processes."""

    def __init__(
        self, directory: Path, settings_env: dict[str, str], database: BenchDatabase
    ) -> None:
        self.directory = directory
        self.db = database
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.children: list[Child] = []
        base = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
        self.env = (
            base
            | settings_env
            | {
                "P2P_DATABASE_URL": database.url,
                "P2P_REDIS_URL": self.redis_url,
                "P2P_LOG_LEVEL": "WARNING",
                # Served as in production, on a port nobody else holds.
                "P2P_WORKER_METRICS_PORT": str(free_port()),
            }
        )

    def start_redis(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH: the benchmark runs its own")
        self._start(
            "redis",
            [
                executable,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
        )
        wait_until(self._redis_answers, "redis-server")

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port)

    def start_api(self) -> tuple[Child, int]:
        port = free_port()
        child = self._start(
            "api",
            [sys.executable, "-m", "cli", "api", "--port", str(port)],
            {"PGAPPNAME": API_NAME},
        )
        wait_until(lambda: _answers(port), "p2p api")
        return child, port

    def start_worker(self, processes: int = 1) -> Child:
        """``p2p worker``, or ``p2p worker --processes N``: worker ``i`` serves its
        metrics on the base port + ``i``."""
        argv = [sys.executable, "-m", "cli", "worker"]
        if processes > 1:
            argv += ["--processes", str(processes)]
        name = "worker" if processes == 1 else f"worker-{processes}"
        port = free_ports(processes)
        child = self._start(
            name, argv, {"P2P_WORKER_METRICS_PORT": str(port), "PGAPPNAME": WORKER_NAME}
        )
        child.metrics_port = port
        return child

    def start_noop_http(self) -> tuple[Child, int]:
        port = free_port()
        child = self._start(
            "noop-http", [sys.executable, "-m", "bench.noop", "http", "--port", str(port)]
        )
        wait_until(lambda: _answers(port, "/docs"), "the no-op server")
        return child, port

    def queue_ceiling(self, count: int) -> str:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.noop",
                "queue",
                "--redis-url",
                self.redis_url,
                "--count",
                str(count),
            ],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return done.stdout

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        """``argv`` as a child of this run, with the run's environment and ``env``."""
        child = Child(name, argv, self.env | (env or {}), self.directory)
        self.children.append(child)
        return child

    def _redis_answers(self) -> bool:
        try:
            with self.redis() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False


def _answers(port: int, path: str = "/healthz") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
