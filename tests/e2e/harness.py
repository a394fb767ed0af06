"""Real ``p2p`` processes and an HTTP client for them.

A ``Stack`` owns one temporary directory: the SQLite file, one log file per process, and
every process it started, all killed when it closes. Waiting is always bounded: ``poll``
retries a cheap check until a deadline, ``ApiClient.wait_final`` long-polls
``GET /payments/{id}?wait=``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest

from bench.stack import child_pids
from tests.conftest import free_port as free_port  # re-exported for the e2e tests
from tests.e2e.state import AuditedDatabase

T = TypeVar("T")

P2P = str(Path(sys.executable).with_name("p2p"))
CRASHING_API = str(Path(__file__).with_name("crashing_api.py"))
LATE_WORKER = str(Path(__file__).with_name("late_worker.py"))
START_TIMEOUT_S = 20.0
BIND_ATTEMPTS = 3
SETTLE_TIMEOUT_S = 60.0
LONG_POLL_S = 10.0
# A Redis nobody listens on: a process that must not use Redis fails loudly, and never
# touches the machine's shared one on 6379.
NO_REDIS_URL = "redis://127.0.0.1:1/0"

Json = dict[str, Any]


def poll(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """``check()`` until it returns something other than ``None``; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    backoff = threading.Event()
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        backoff.wait(0.05)


class Process:
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.popen = subprocess.Popen(
            list(argv),
            env=env,
            cwd=log_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, whatever it was doing."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self, *, timeout: float) -> int:
        """SIGTERM, then wait at most ``timeout``; returns the exit code."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s of SIGTERM")

    def wait_exit(self, *, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s")

    def wait_for_output(self, text: str, *, timeout: float) -> None:
        poll(
            lambda: text in self.log_text() or None,
            timeout=timeout,
            what=f"{self.name} to print {text!r}",
        )

    def children(self) -> set[int]:
        """The pids of its live child processes (``--processes N``)."""
        return set(child_pids(self.pid))

    def close(self) -> None:
        self.kill()
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def pids_that_answered(api: Process, route: str) -> set[int]:
    """From the access lines: every line names the process that wrote it."""
    lines = (json.loads(line) for line in api.log_text().splitlines() if line.startswith("{"))
    return {
        line["pid"]
        for line in lines
        if line["logger"] == "p2p.access" and line.get("route") == route
    }


def started_children(api: Process, count: int) -> set[int]:
    """Waits until ``count`` children have logged that uvicorn serves."""
    return poll(
        lambda: (
            (
                (pids := _pids_that_logged("Application startup complete.", api))
                and len(pids) >= count
                and pids
            )
            or None
        ),
        timeout=START_TIMEOUT_S,
        what=f"{count} API processes to start",
    )


def _pids_that_logged(message: str, process: Process) -> set[int]:
    lines = (json.loads(line) for line in process.log_text().splitlines() if line.startswith("{"))
    return {line["pid"] for line in lines if line["message"] == message}


@dataclass(frozen=True)
class Api:
    """A process serving the HTTP API."""

    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Stack:
    """The processes of one scenario, sharing one database and one Redis."""

    def __init__(self, directory: Path, redis_url: str, database_url: str | None = None) -> None:
        self.directory = directory
        self.db_path = directory / "p2p.db"
        self.database_url = database_url or f"sqlite:///{self.db_path}"
        """``P2P_DATABASE_URL``: the SQLite file ``db_path`` unless a PostgreSQL database."""
        self.redis_url = redis_url
        self.processes: list[Process] = []
        self.overrides: dict[str, str] = {}
        """``P2P_*`` settings for the processes started from now on."""
        self._started = Counter[str]()

    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("P2P_")}
        env.update(
            PYTHONUNBUFFERED="1",
            P2P_DATABASE_URL=self.database_url,
            P2P_REDIS_URL=self.redis_url,
            P2P_SWEEP_INTERVAL_S="0.2",
            P2P_SWEEP_GRACE_S="1",
            P2P_LOG_LEVEL="INFO",
            # On, through Redis, but never reached unless a test lowers it.
            P2P_RATE_LIMIT_PER_S="100000",
            P2P_RATE_LIMIT_BURST="100000",
            P2P_SIGNUP_RATE_LIMIT_PER_HOUR="1000000",
            P2P_SIGNUP_RATE_LIMIT_BURST="100000",
            # No fixed port: workers of one scenario may overlap. A test that scrapes the
            # worker sets a free port in ``overrides``.
            P2P_WORKER_METRICS_PORT="0",
        )
        env.update(self.overrides)
        return env

    def start(self, name: str, argv: Sequence[str]) -> Process:
        self._started[name] += 1
        log_path = self.directory / f"{name}-{self._started[name]}.log"
        process = Process(f"{name} #{self._started[name]}", argv, self.env(), log_path)
        self.processes.append(process)
        return process

    def start_worker(self, *, wait_started: bool = False, processes: int = 1) -> Process:
        """``p2p worker`` (``--processes N`` when ``processes`` > 1). It has no readiness
        endpoint: ``wait_started`` waits for the log line of every process, after which
        they consume and sweep."""
        argv = [P2P, "worker"] if processes == 1 else [P2P, "worker", "--processes", str(processes)]
        worker = self.start("worker", argv)
        if wait_started:
            poll(
                lambda: worker.log_text().count("worker started") >= processes or None,
                timeout=START_TIMEOUT_S,
                what=f"{worker.name} to start {processes} worker(s)",
            )
        return worker

    def start_late_worker(self, *, ahead_s: float) -> Process:
        """A worker whose expiry pass reads a clock ``ahead_s`` seconds ahead
        (tests/e2e/late_worker.py), started as ``start_worker`` waits for one."""
        worker = self.start("late-worker", [sys.executable, LATE_WORKER, "--ahead", str(ahead_s)])
        worker.wait_for_output("worker started", timeout=START_TIMEOUT_S)
        return worker

    def start_api(self, *, processes: int = 1) -> Api:
        """``p2p api`` (``--processes N`` when ``processes`` > 1), answering ``/healthz``."""
        more = ["--processes", str(processes)] if processes > 1 else []
        return self._serving("api", lambda port: [P2P, "api", "--port", str(port), *more])

    def start_crashing_api(self) -> Api:
        """An API that dies between committing a payment and enqueueing it."""
        return self._serving(
            "crashing-api", lambda port: [sys.executable, CRASHING_API, "--port", str(port)]
        )

    def start_dev(self) -> Api:
        return self._serving("dev", lambda port: [P2P, "dev", "--port", str(port)])

    def verify(self) -> subprocess.CompletedProcess[str]:
        """``p2p verify`` over this stack's database."""
        return subprocess.run(
            [P2P, "verify"],
            env=self.env(),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def database(self) -> AuditedDatabase:
        return AuditedDatabase(self.database_url)

    def assert_ledger_holds(self) -> None:
        """``p2p verify`` exits 0, and the same invariants hold by the tests' own SQL."""
        result = self.verify()
        assert result.returncode == 0, f"p2p verify failed:\n{result.stdout}{result.stderr}"
        self.database().assert_invariants()

    def logs(self) -> str:
        return "\n".join(
            f"----- {process.name} (pid {process.pid}, {process.log_path.name}) -----\n"
            f"{process.log_text()}"
            for process in self.processes
        )

    def close(self) -> None:
        for process in self.processes:
            process.close()

    def _serving(self, name: str, argv: Callable[[int], list[str]]) -> Api:
        """``argv(port)`` started on a free port, once it answers ``/healthz``. A port is
        free when ``free_port`` sees it, not always still when the server binds it (tests
        in other processes start servers too): on "address already in use" the server is
        started again on another."""
        for _ in range(BIND_ATTEMPTS):
            port = free_port()
            process = self.start(name, argv(port))
            api = Api(process, port)
            if self._answers(api):
                return api
        pytest.fail(f"{name}: every port tried was taken:\n{process.log_text()}")

    @staticmethod
    def _answers(api: Api) -> bool:
        """Whether ``api`` answers ``/healthz``; ``False`` when its port was taken."""
        process = api.process
        with httpx.Client(base_url=api.url, timeout=2.0) as client:

            def healthy() -> bool | None:
                if not process.alive:
                    log = process.log_text()
                    if "address already in use" in log.lower():
                        return False
                    pytest.fail(f"{process.name} exited at start:\n{log}")
                try:
                    return client.get("/healthz").status_code == 200 or None
                except httpx.TransportError:
                    return None

            return poll(healthy, timeout=START_TIMEOUT_S, what=f"{process.name} to answer /healthz")


@dataclass(frozen=True)
class Customer:
    """A signed-up user with one funded account."""

    api_key: str
    account_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass(frozen=True)
class TransferRequest:
    sender: Customer
    to_account_id: str
    amount: int
    key: str
    currency: str = "USD"

    def body(self) -> Json:
        return {
            "from_account_id": self.sender.account_id,
            "to_account_id": self.to_account_id,
            "amount": self.amount,
            "currency": self.currency,
        }

    def headers(self) -> dict[str, str]:
        return {**self.sender.headers, "Idempotency-Key": self.key}


def transfer(sender: Customer, receiver: Customer, amount: int) -> TransferRequest:
    """A transfer request with a fresh Idempotency-Key."""
    return TransferRequest(sender, receiver.account_id, amount, key=f"e2e-{uuid.uuid4()}")


def random_transfers(
    customers: Sequence[Customer], count: int, *, seed: int, amounts: tuple[int, int]
) -> list[TransferRequest]:
    """``count`` transfers between distinct random customers, amounts drawn from ``amounts``."""
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        sender, receiver = rng.sample(customers, 2)
        requests.append(transfer(sender, receiver, rng.randint(*amounts)))
    return requests


class ApiClient:
    """Synchronous calls against one API process."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=LONG_POLL_S + 10)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def customer(self, *, deposit: int = 0, currency: str = "USD") -> Customer:
        """Sign up, open an account and deposit ``deposit`` into it."""
        response = self._http.post(
            "/users", json={"name": "E2E", "email": f"e2e-{uuid.uuid4().hex}@example.com"}
        )
        assert response.status_code == 201, response.text
        api_key: str = response.json()["api_key"]
        headers = {"Authorization": f"Bearer {api_key}"}
        response = self._http.post("/accounts", json={"currency": currency}, headers=headers)
        assert response.status_code == 201, response.text
        customer = Customer(api_key, response.json()["id"])
        if deposit:
            self.deposit(customer, deposit)
        return customer

    def rich_customers(self, count: int = 4) -> list[Customer]:
        """``count`` customers with far more money than any stream here moves."""
        return [self.customer(deposit=10_000_000) for _ in range(count)]

    def deposit(self, customer: Customer, amount: int) -> Json:
        response = self._http.post(
            f"/accounts/{customer.account_id}/deposits",
            json={"amount": amount},
            headers={**customer.headers, "Idempotency-Key": f"e2e-{uuid.uuid4()}"},
        )
        assert response.status_code == 201, response.text
        made: Json = response.json()
        return made

    def submit(self, request: TransferRequest) -> httpx.Response:
        return self._http.post("/payments/transfer", json=request.body(), headers=request.headers())

    def accepted(self, request: TransferRequest) -> Json:
        """Submit and expect ``202``; returns the payment."""
        response = self.submit(request)
        assert response.status_code == 202, response.text
        payment: Json = response.json()
        return payment

    def payment(self, customer: Customer, payment_id: str, *, wait: float = 0) -> Json:
        response = self._http.get(
            f"/payments/{payment_id}", params={"wait": wait}, headers=customer.headers
        )
        assert response.status_code == 200, response.text
        payment: Json = response.json()
        return payment

    def account(self, customer: Customer) -> Json:
        response = self._http.get(f"/accounts/{customer.account_id}", headers=customer.headers)
        assert response.status_code == 200, response.text
        account: Json = response.json()
        return account

    def wait_final(
        self, customer: Customer, payment_id: str, *, timeout: float = SETTLE_TIMEOUT_S
    ) -> Json:
        """Long-poll until the payment is ``completed`` or ``failed``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            payment = self.payment(customer, payment_id, wait=max(0, min(LONG_POLL_S, remaining)))
            if payment["status"] != "pending":
                return payment
            if remaining <= 0:
                pytest.fail(f"payment {payment_id} still pending after {timeout} s")

    def wait_all_final(
        self, submitted: Sequence[tuple[Customer, str]], *, timeout: float = SETTLE_TIMEOUT_S
    ) -> list[Json]:
        """Long-poll each ``(customer, payment_id)`` in turn, all within one deadline."""
        deadline = time.monotonic() + timeout
        return [
            self.wait_final(customer, payment_id, timeout=max(0, deadline - time.monotonic()))
            for customer, payment_id in submitted
        ]


def settled_statuses(
    api_url: str, requests: Sequence[TransferRequest], answers: Sequence[httpx.Response]
) -> list[str]:
    """The final status of each answered submit, long-polled in request order."""
    with ApiClient(api_url) as client:
        settled = client.wait_all_final(
            [
                (request.sender, answer.json()["id"])
                for request, answer in zip(requests, answers, strict=True)
            ]
        )
    return [payment["status"] for payment in settled]


def submit_concurrently(
    base_url: str,
    requests: Sequence[TransferRequest],
    *,
    concurrency: int = 16,
    on_answer: Callable[[int], None] | None = None,
) -> list[httpx.Response]:
    """Submit every request, ``concurrency`` at a time; the answers in request order.

    ``on_answer(n)`` runs on the event loop after the n-th answer arrives, so a test can
    inject a fault in the middle of the stream.
    """
    answers = _submit_all(base_url, requests, concurrency, on_answer, lose_answers=False)
    answered = [answer for answer in answers if answer is not None]
    assert len(answered) == len(requests)
    return answered


def submit_through_crash(
    base_url: str,
    requests: Sequence[TransferRequest],
    *,
    crash: Callable[[int], None],
    concurrency: int = 16,
) -> list[httpx.Response | None]:
    """As ``submit_concurrently``, where ``crash`` may kill the server: a request whose
    answer is lost that way (it may or may not have been committed) answers ``None``."""
    return _submit_all(base_url, requests, concurrency, crash, lose_answers=True)


def _submit_all(
    base_url: str,
    requests: Sequence[TransferRequest],
    concurrency: int,
    on_answer: Callable[[int], None] | None,
    *,
    lose_answers: bool,
) -> list[httpx.Response | None]:
    async def submit_all() -> list[httpx.Response | None]:
        limits = httpx.Limits(max_connections=concurrency)
        gate = asyncio.Semaphore(concurrency)
        answered = 0
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

            async def submit(request: TransferRequest) -> httpx.Response | None:
                nonlocal answered
                async with gate:
                    try:
                        response = await client.post(
                            "/payments/transfer", json=request.body(), headers=request.headers()
                        )
                    except httpx.TransportError:
                        if not lose_answers:
                            raise
                        return None
                answered += 1
                if on_answer is not None:
                    on_answer(answered)
                return response

            return await asyncio.gather(*(submit(request) for request in requests))

    return asyncio.run(submit_all())
