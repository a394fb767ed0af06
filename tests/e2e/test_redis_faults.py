"""G1 when Redis misbehaves: it forgets every key, or it is not there at all."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import RedisServer
from tests.e2e.harness import (
    ApiClient,
    Customer,
    Stack,
    TransferRequest,
    poll,
    random_transfers,
    submit_concurrently,
)

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

# A correctness bound, not a benchmark: a submit must not hang on a missing Redis.
SUBMIT_BOUND_S = 2.0
RECOVERY_TIMEOUT_S = 30.0
SIGTERM_TIMEOUT_S = 10.0


def _transfers(client: ApiClient, count: int, seed: int) -> list[TransferRequest]:
    customers = [client.customer(deposit=1_000_000) for _ in range(3)]
    return random_transfers(customers, count, seed=seed, amounts=(1, 500))


def _submit_each_quickly(client: ApiClient, requests: list[TransferRequest]) -> list[str]:
    """Submit one at a time, each answered ``202 pending`` within the bound."""
    ids = []
    for request in requests:
        started = time.monotonic()
        payment = client.accepted(request)
        elapsed = time.monotonic() - started
        assert elapsed < SUBMIT_BOUND_S, f"a submit took {elapsed:.2f} s while Redis was down"
        assert payment["status"] == "pending"
        ids.append(payment["id"])
    return ids


def _settled(client: ApiClient, requests: list[TransferRequest], ids: list[str]) -> list[str]:
    pairs: list[tuple[Customer, str]] = [(r.sender, i) for r, i in zip(requests, ids, strict=True)]
    return [payment["status"] for payment in client.wait_all_final(pairs)]


def _ready(client: httpx.Client) -> bool | None:
    return client.get("/readyz").status_code == 200 or None


def test_payments_whose_messages_redis_lost_are_settled_by_the_sweep(
    stack: Stack, redis_server: RedisServer
) -> None:
    api = stack.start_api()
    with ApiClient(api.url) as client:
        requests = _transfers(client, 150, seed=3)
    answers = submit_concurrently(api.url, requests)
    assert [answer.status_code for answer in answers] == [202] * len(requests)
    with redis_server.client() as redis:
        assert redis.hlen("dramatiq:payments.msgs") == len(requests)

    redis_server.flushall()
    stack.start_worker()

    with ApiClient(api.url) as client:
        statuses = _settled(client, requests, [answer.json()["id"] for answer in answers])
    assert statuses == ["completed"] * len(requests)
    stack.assert_ledger_holds()


def test_submits_while_redis_is_down_are_accepted_and_settled_once_it_is_back(
    isolated_stack: Stack, fresh_redis: RedisServer
) -> None:
    stack = isolated_stack
    api = stack.start_api()
    worker = stack.start_worker()
    with ApiClient(api.url) as client, httpx.Client(base_url=api.url) as probe:
        requests = _transfers(client, 20, seed=4)
        fresh_redis.stop()

        ids = _submit_each_quickly(client, requests)
        assert stack.database().scalar("SELECT count(*) FROM payments") == len(requests)
        not_ready = probe.get("/readyz")
        assert not_ready.status_code == 503
        assert "broker" in not_ready.json()["detail"]

        fresh_redis.start()
        poll(lambda: _ready(probe), timeout=RECOVERY_TIMEOUT_S, what="/readyz once Redis is back")
        assert _settled(client, requests, ids) == ["completed"] * len(requests)

        first = requests[0]
        after = TransferRequest(first.sender, first.to_account_id, 1, key="after-redis-is-back")
        payment = client.accepted(after)
        assert client.wait_final(first.sender, payment["id"])["status"] == "completed"
    assert worker.alive, "the worker did not survive the Redis outage"
    stack.assert_ledger_holds()


def test_a_worker_started_while_redis_is_down_settles_through_the_sweep(
    isolated_stack: Stack, fresh_redis: RedisServer
) -> None:
    stack = isolated_stack
    api = stack.start_api()
    with ApiClient(api.url) as client:
        requests = _transfers(client, 20, seed=5)
        fresh_redis.stop()
        ids = _submit_each_quickly(client, requests)

        worker = stack.start_worker()

        assert _settled(client, requests, ids) == ["completed"] * len(requests)
    assert worker.alive
    stack.assert_ledger_holds()


def test_redis_restarted_empty_in_the_middle_of_a_stream_loses_no_payment(
    isolated_stack: Stack, fresh_redis: RedisServer
) -> None:
    stack = isolated_stack
    api = stack.start_api()
    db = stack.database()
    with ApiClient(api.url) as client:
        requests = _transfers(client, 300, seed=7)
    worker = stack.start_worker(wait_started=True)

    def restart_redis(answered: int) -> None:
        if answered == 100:
            fresh_redis.stop()
        elif answered == 150:
            fresh_redis.start()

    answers = submit_concurrently(api.url, requests, on_answer=restart_redis)

    assert [answer.status_code for answer in answers] == [202] * len(requests)
    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="no payment pending")
    assert db.status_counts() == {"completed": len(requests)}
    assert worker.alive
    stack.assert_ledger_holds()


def test_submits_while_redis_hangs_are_answered_within_the_bound(
    isolated_stack: Stack, fresh_redis: RedisServer
) -> None:
    stack = isolated_stack
    api = stack.start_api()
    worker = stack.start_worker()
    with ApiClient(api.url) as client, httpx.Client(base_url=api.url) as probe:
        requests = _transfers(client, 6, seed=6)
        fresh_redis.pause()
        try:
            ids = _submit_each_quickly(client, requests)
            assert probe.get("/readyz").status_code == 503
        finally:
            fresh_redis.resume()

        poll(lambda: _ready(probe), timeout=RECOVERY_TIMEOUT_S, what="/readyz once Redis answers")
        assert _settled(client, requests, ids) == ["completed"] * len(requests)
    assert worker.alive
    stack.assert_ledger_holds()


def test_a_worker_exits_zero_on_sigterm_while_redis_is_down(
    isolated_stack: Stack, fresh_redis: RedisServer
) -> None:
    worker = isolated_stack.start_worker(wait_started=True)
    fresh_redis.stop()

    assert worker.terminate(timeout=SIGTERM_TIMEOUT_S) == 0
