"""What the API tests share: callers, accounts and money, problems, rows and metrics."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from dramatiq.brokers.stub import StubBroker
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from jobs.producer import SettlementQueue
from shared.settings import Settings
from shared.store import Database

JSON = dict[str, Any]

PROBLEM_JSON = "application/problem+json"
PROBLEM_FIELDS = frozenset({"type", "title", "status", "detail", "code"})

# Long enough that the sweep never settles anything behind a test's back.
NO_SWEEP_S = 3600.0


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for one test's own database file; explicit, so no P2P_* variable leaks in."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'p2p.db'}",
        "redis_url": "redis://127.0.0.1:1/0",
        "max_amount": 10**12,
        "max_body_bytes": 1024 * 1024,
        "sweep_grace_s": NO_SWEEP_S,
        "sweep_interval_s": NO_SWEEP_S,
        "retry_min_backoff_ms": 10,
        "retry_max_backoff_ms": 50,
        "worker_timeout_ms": 20,
        # Off unless a test is about rate limits (tests/api/test_rate_limits.py).
        "rate_limit_per_s": 0,
        "signup_rate_limit_per_hour": 0,
    }
    values.update(overrides)
    return Settings(**values)


Settle = Callable[[], None]
"""Waits until what was submitted so far is settled (the ``settle`` fixture)."""


@contextmanager
def serve(settings: Settings, db: Database, queue: SettlementQueue) -> Iterator[TestClient]:
    """The app as ``p2p`` builds it, with its lifespan running.

    Server errors come back as ``500`` answers instead of exceptions, so that a test
    asserting "never a 5xx" reports the status and the body.
    """
    app = create_app(settings, db, queue)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        queue.close()


@contextmanager
def idle_queue(settings: Settings, db: Database) -> Iterator[SettlementQueue]:
    """A queue on a broker nobody consumes: accepted payments stay ``pending``."""
    broker = StubBroker()
    try:
        yield SettlementQueue(broker, settings.queue_name)
    finally:
        broker.close()


def app_of(client: TestClient) -> FastAPI:
    app = client.app
    assert isinstance(app, FastAPI)
    return app


@dataclass(frozen=True)
class Caller:
    """A signed-up user, as the client sees it."""

    user_id: str
    name: str
    email: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def keyed(self, key: str) -> dict[str, str]:
        return {**self.auth, "Idempotency-Key": key}


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def sign_up(client: TestClient, name: str = "Ada", email: str | None = None) -> Caller:
    email = email or f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    response = client.post("/users", json={"name": name, "email": email})
    assert response.status_code == 201, response.text
    body: JSON = response.json()
    return Caller(body["id"], name, email, body["api_key"])


def open_account(client: TestClient, caller: Caller, currency: str = "EUR") -> str:
    response = client.post("/accounts", json={"currency": currency}, headers=caller.auth)
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


def deposit(
    client: TestClient, caller: Caller, account_id: str, amount: int, *, key: str | None = None
) -> JSON:
    response = client.post(
        f"/accounts/{account_id}/deposits",
        json={"amount": amount},
        headers=caller.keyed(key or new_key()),
    )
    assert response.status_code == 201, response.text
    body: JSON = response.json()
    return body


def funded_account(client: TestClient, caller: Caller, amount: int, currency: str = "EUR") -> str:
    account_id = open_account(client, caller, currency)
    deposit(client, caller, account_id, amount)
    return account_id


def transfer_body(
    from_account_id: str,
    to_account_id: str,
    amount: int,
    currency: str = "EUR",
    description: str | None = None,
) -> JSON:
    body: JSON = {
        "from_account_id": from_account_id,
        "to_account_id": to_account_id,
        "amount": amount,
        "currency": currency,
    }
    if description is not None:
        body["description"] = description
    return body


def transfer(
    client: TestClient, caller: Caller, body: JSON, *, key: str | None = None
) -> httpx2.Response:
    return client.post("/payments/transfer", json=body, headers=caller.keyed(key or new_key()))


def accepted(response: httpx2.Response) -> JSON:
    """The payment of a transfer answered ``202``."""
    assert response.status_code == 202, response.text
    body: JSON = response.json()
    return body


def get_json(client: TestClient, caller: Caller, path: str, **params: Any) -> JSON:
    response = client.get(path, headers=caller.auth, params=params)
    assert response.status_code == 200, response.text
    body: JSON = response.json()
    return body


def assert_problem(response: httpx2.Response, status: int, code: str | None = None) -> JSON:
    """An RFC 9457 problem with this status (and code); returns its body."""
    assert response.status_code == status, response.text
    return assert_problem_shape(response, code)


def assert_problem_shape(response: httpx2.Response, code: str | None = None) -> JSON:
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: JSON = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == response.status_code
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert isinstance(body["code"], str)
    assert body["code"]
    if code is not None:
        assert body["code"] == code, body
    if body["code"] == "validation_error":
        assert body["errors"], body
        for item in body["errors"]:
            assert isinstance(item["msg"], str)
            assert item["msg"]
            assert isinstance(item["loc"], list)
            assert item["loc"]
            assert all(isinstance(part, str) for part in item["loc"])
    return body


@dataclass(frozen=True)
class Recorded:
    """Everything a request could have written."""

    users: int
    api_keys: int
    accounts: int
    payments: int
    deposits: int
    ledger_entries: int
    events: int
    balances: tuple[tuple[str, int, str], ...]


def recorded(db: Database) -> Recorded:
    with db.read() as conn:

        def count(table: str) -> int:
            value: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            return value

        balances = tuple(
            (row["id"], row["balance"], row["status"])
            for row in conn.execute("SELECT id, balance, status FROM accounts ORDER BY seq")
        )
        return Recorded(
            users=count("users"),
            api_keys=count("api_keys"),
            accounts=count("accounts"),
            payments=count("payments"),
            deposits=count("deposits"),
            ledger_entries=count("ledger_entries"),
            events=count("events"),
            balances=balances,
        )


def metric(client: TestClient, name: str, **labels: str) -> float:
    """A sample of ``/metrics``; 0 when the series does not exist yet."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
