"""Fixtures for the whole suite: a real ``redis-server`` of the suite's own.

Tests never touch the shared Redis on 6379: each server here runs on a free port, keeps
nothing on disk, and is gone when its fixture ends. Without ``redis-server`` on PATH the
fixtures fail under CI (a guarantee left untested is a red build) and skip elsewhere.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import redis

from tests.backends import (
    backend,
    blank_database_url,
    database_url,
    db,
    parametrize_backends,
    postgres_server,
)

# Fixtures for the whole suite.
__all__ = ["backend", "blank_database_url", "database_url", "db", "postgres_server"]

TESTS_DIR = Path(__file__).parent
E2E_DIR = TESTS_DIR / "e2e"
REDIS_FIXTURES = frozenset({"redis_server", "fresh_redis"})
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on a fixed port, which can be stopped and started again."""

    def __init__(self, executable: str, port: int, directory: Path) -> None:
        self.executable = executable
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.directory = directory
        self.log_path = directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (again, on the same port) and return once it answers PING."""
        assert not self.running, "redis-server is already running"
        self._close_log()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_answering()

    def stop(self) -> None:
        """Stop the server as a crash would leave it: every key gone, the port closed."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()  # SIGKILL works on a paused process too
        process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None
        self._close_log()

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted, and nothing is ever answered."""
        self._running_process().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._running_process().send_signal(signal.SIGCONT)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    def client(self) -> redis.Redis:
        """A new client; close it (``with``) when done."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _running_process(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError("redis-server is not running")
        return process

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        backoff = threading.Event()
        with self.client() as client:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    self.stop()
                    pytest.fail(f"redis-server exited at start:\n{self.log_text()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server did not answer PING within {START_TIMEOUT_S} s")
                backoff.wait(0.02)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _redis_server_executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "redis-server is not on PATH; install it (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: tests that need Redis are never skipped in CI")
        pytest.skip(reason)
    return executable


def _serve(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(_redis_server_executable(), free_port(), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The suite's Redis, shared by every test that only needs one running."""
    yield from _serve(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def fresh_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this test's own, on its own port: stop and start it freely."""
    yield from _serve(tmp_path_factory.mktemp("fresh-redis"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_backends(metafunc)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers follow from what a test is: every test under ``tests/e2e`` is ``e2e``, every
    test that uses a Redis fixture (directly or through another) is ``redis``.

    The longest run first (pytest-xdist hands tests out in this order): the end-to-end
    scenarios, which mostly wait on their processes, start at once and overlap with the
    rest; the many short API tests come last and fill in until every worker is done."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
        if REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)
    items.sort(key=_start_rank)


# By directory under tests/: e2e first, api last, any other between unit and api.
_START_RANK = {"e2e": 0, "unit": 1, "api": 3}


def _start_rank(item: pytest.Item) -> int:
    if TESTS_DIR not in item.path.parents:
        return 2
    return _START_RANK.get(item.path.relative_to(TESTS_DIR).parts[0], 2)


@pytest.fixture(autouse=True)
def pristine_logging() -> Iterator[None]:
    """Put back what ``configure_logging`` changes for the whole process. Every test
    that runs ``p2p`` in-process needs it: the handler ``main`` installs writes, at
    INFO, to the ``sys.stderr`` of that moment (a capture that pytest closes after the
    test), so every later test's log line would fail to write ("Logging error").
    pytest's own capture handlers come and go with each phase: only the plain stream
    handlers a test added are taken away."""
    root = logging.getLogger()
    before = set(root.handlers)
    saved = (root.level, sys.excepthook, threading.excepthook)
    libraries = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq")
    }
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler and handler not in before:
                root.removeHandler(handler)
        root.setLevel(saved[0])
        sys.excepthook, threading.excepthook = saved[1], saved[2]
        logging.captureWarnings(False)
        for name, (handlers, propagate) in libraries.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
