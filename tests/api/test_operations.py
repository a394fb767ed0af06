"""Operations: health, readiness, metrics, and a submit while the broker is away (G1)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import fakeredis
import pytest
from dramatiq.brokers.redis import RedisBroker
from fastapi.testclient import TestClient

from jobs.broker import in_process_broker, redis_broker
from jobs.producer import SettlementQueue
from shared.settings import Settings
from shared.store import Database
from tests.api.support import (
    accepted,
    app_of,
    assert_problem,
    funded_account,
    get_json,
    metric,
    new_key,
    open_account,
    recorded,
    serve,
    sign_up,
    transfer,
    transfer_body,
)
from worker.runtime import WorkerRuntime

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def unreachable_client(settings: Settings, db: Database) -> Iterator[TestClient]:
    """The API with its broker on a port where nothing listens."""
    broker = redis_broker(CLOSED_PORT_REDIS, timeout_s=0.2)
    queue = SettlementQueue(broker, settings.queue_name)
    with serve(settings, db, queue) as test_client:
        yield test_client


def test_healthz_answers_without_a_key(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_when_the_database_and_the_broker_are_reachable(
    client: TestClient,
) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_names_an_unreachable_broker(unreachable_client: TestClient) -> None:
    response = unreachable_client.get("/readyz")

    body = assert_problem(response, 503, "not_ready")
    assert "broker" in body["detail"]
    assert "database" not in body["detail"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")


@pytest.mark.parametrize("settings", [{"sweep_grace_s": 0}], indirect=True, ids=["no_grace"])
def test_a_transfer_is_accepted_while_the_broker_is_down_and_the_sweep_settles_it(
    unreachable_client: TestClient, settings: Settings, db: Database
) -> None:
    client = unreachable_client
    ada = sign_up(client)
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)

    payment = accepted(transfer(client, ada, transfer_body(sender, receiver, 400)))

    assert payment["status"] == "pending"
    assert recorded(db).payments == 1
    assert metric(client, "p2p_payments_accepted_total") == 1
    app_of(client).state.services.queue.flush()
    assert metric(client, "p2p_enqueue_failures_total") == 1
    assert get_json(client, ada, f"/payments/{payment['id']}")["status"] == "pending"

    sweeping = WorkerRuntime(settings, in_process_broker(), db)
    try:
        assert sweeping.sweeper.sweep_once() == 1
    finally:
        sweeping.broker.close()

    assert get_json(client, ada, f"/payments/{payment['id']}")["status"] == "completed"
    assert get_json(client, ada, f"/accounts/{sender}")["balance"] == 600
    assert get_json(client, ada, f"/accounts/{receiver}")["balance"] == 400


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    ada = sign_up(client)
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    labels = {"method": "POST", "route": "/payments/transfer", "status": "202"}
    before = metric(client, "p2p_http_requests_total", **labels)

    payment = accepted(transfer(client, ada, transfer_body(sender, receiver, 100)))
    get_json(client, ada, f"/payments/{payment['id']}")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert metric(client, "p2p_http_requests_total", **labels) == before + 1
    read = {"method": "GET", "route": "/payments/{payment_id}", "status": "200"}
    assert metric(client, "p2p_http_requests_total", **read) == 1
    assert payment["id"] not in response.text
    timed = {"method": "GET", "route": "/payments/{payment_id}"}
    assert metric(client, "p2p_http_request_duration_seconds_count", **timed) == 1


def test_metrics_count_accepted_payments_but_not_replays(client: TestClient) -> None:
    ada = sign_up(client)
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    key = new_key()

    for _ in range(3):
        accepted(transfer(client, ada, transfer_body(sender, receiver, 100), key=key))
    accepted(transfer(client, ada, transfer_body(sender, receiver, 200)))
    transfer(client, ada, transfer_body(sender, sender, 200))

    assert metric(client, "p2p_payments_accepted_total") == 2
    labels = {"method": "POST", "route": "/payments/transfer"}
    assert metric(client, "p2p_http_requests_total", status="202", **labels) == 4
    assert metric(client, "p2p_http_requests_total", status="422", **labels) == 1


def test_a_transfer_puts_one_message_on_redis_carrying_only_the_payment_id(
    settings: Settings, db: Database
) -> None:
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    broker = RedisBroker(client=redis)  # type: ignore[no-untyped-call]
    queue = SettlementQueue(broker, settings.queue_name)
    key = new_key()
    try:
        with serve(settings, db, queue) as client:
            ada = sign_up(client)
            sender = funded_account(client, ada, 1_000)
            receiver = open_account(client, ada)
            body = transfer_body(sender, receiver, 100, description="rent")
            payment = accepted(transfer(client, ada, body, key=key))
            replay = transfer(client, ada, body, key=key)
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert client.get("/readyz").status_code == 200

        queued = redis.lrange(f"dramatiq:{settings.queue_name}", 0, -1)
        messages = redis.hgetall(f"dramatiq:{settings.queue_name}.msgs")
    finally:
        broker.close()

    assert len(queued) == 1
    [message] = [json.loads(raw) for raw in messages.values()]
    assert message["actor_name"] == "settle_payment"
    assert message["queue_name"] == settings.queue_name
    assert message["args"] == [payment["id"]]
    assert message["kwargs"] == {}


def test_made_up_methods_do_not_grow_the_metrics(client: TestClient) -> None:
    """Label values must be bounded, or anyone can grow the registry without limit."""
    for number in range(3):
        client.request(f"MADEUP{number}", "/accounts")

    response = client.get("/metrics")

    assert "MADEUP" not in response.text
