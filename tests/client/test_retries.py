"""Retries, against fake servers: which failures are retried, with the same key, after
which delays, and where they stop. The client's sleep is recorded, never waited out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from p2p_client import (
    AsyncClient,
    Client,
    InvalidRequest,
    RateLimited,
    RetryPolicy,
    ServerError,
    Transfer,
    Unreachable,
)
from tests.client.support import (
    ACCOUNT,
    API_KEY,
    CREATED_AT,
    PAYMENT,
    FakeServer,
    FakeTime,
    problem,
)

JSON = dict[str, Any]

BATCH = {
    "id": "bat_1",
    "atomic": False,
    "status": "pending",
    "created_at": CREATED_AT,
    "payments": [PAYMENT],
}
ENDPOINT = {
    "id": "whe_1",
    "url": "https://example.com/hooks",
    "description": None,
    "event_types": None,
    "status": "enabled",
    "created_at": CREATED_AT,
    "updated_at": CREATED_AT,
}


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def time_out_reading(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


def client_of(
    server: FakeServer, time: FakeTime, retry: RetryPolicy | None = None, rng: float = 0.0
) -> Client:
    return Client(
        "http://p2p.test",
        API_KEY,
        transport=httpx.MockTransport(server),
        retry=retry,
        sleep=time.sleep,
        clock=time.clock,
        wall_clock=time.wall_clock,
        rng=lambda: rng,
    )


def transfer(client: Client, idempotency_key: str | None = None) -> str:
    return client.transfer("acc_a", "acc_b", 2500, "EUR", idempotency_key=idempotency_key).id


def test_a_transfer_gets_a_fresh_idempotency_key_and_keeps_it_across_5xx_retries() -> None:
    server = FakeServer(
        problem(500, "internal_error"),
        problem(503, "not_ready"),
        httpx.Response(202, json=PAYMENT),
    )
    time = FakeTime()

    assert transfer(client_of(server, time)) == "pay_1"

    (key, *others) = server.keys
    assert key is not None
    uuid.UUID(key)
    assert others == [key, key]
    assert [request.content for request in server.requests[1:]] == [server.requests[0].content] * 2


def test_a_given_idempotency_key_is_the_one_sent_every_time() -> None:
    server = FakeServer(problem(502, "http_502"), httpx.Response(202, json=PAYMENT))

    transfer(client_of(server, FakeTime()), idempotency_key="rent-2026-11")

    assert server.keys == ["rent-2026-11", "rent-2026-11"]


def test_backoff_doubles_from_the_first_delay_up_to_its_ceiling_with_equal_jitter() -> None:
    policy = RetryPolicy(attempts=6, total_s=600, backoff_s=1.0, max_backoff_s=4.0)
    for rng, expected in ((0.0, [0.5, 1.0, 2.0, 2.0, 2.0]), (1.0, [1.0, 2.0, 4.0, 4.0, 4.0])):
        server = FakeServer(*[problem(503, "not_ready")] * 6)
        time = FakeTime()

        with pytest.raises(ServerError) as failed:
            transfer(client_of(server, time, policy, rng))

        assert time.slept == expected
        assert len(server.requests) == 6
        assert (failed.value.status, failed.value.code) == (503, "not_ready")


def test_retries_stop_before_their_total_time_is_spent() -> None:
    policy = RetryPolicy(attempts=100, total_s=10, backoff_s=2.0, max_backoff_s=4.0)
    server = FakeServer(*[problem(500, "internal_error")] * 100)
    time = FakeTime()

    with pytest.raises(ServerError):
        transfer(client_of(server, time, policy, rng=1.0))

    assert time.slept == [2.0, 4.0, 4.0]
    assert len(server.requests) == 4


def test_429_waits_the_retry_after_seconds_then_sends_the_same_request() -> None:
    server = FakeServer(
        problem(429, "rate_limited", **{"Retry-After": "3"}), httpx.Response(202, json=PAYMENT)
    )
    time = FakeTime()

    transfer(client_of(server, time))

    assert time.slept == [3.0]
    assert server.keys[0] == server.keys[1]


def test_429_with_an_http_date_waits_until_that_date() -> None:
    time = FakeTime(wall=1_800_000_000.0)
    when = formatdate(1_800_000_007.0, usegmt=True)
    server = FakeServer(
        problem(429, "rate_limited", **{"Retry-After": when}), httpx.Response(202, json=PAYMENT)
    )

    transfer(client_of(server, time))

    assert time.slept == [7.0]


@pytest.mark.parametrize("value", ["soon", "-1", "1.5", "Wed, 99 Foo 2026"])
def test_a_retry_after_that_cannot_be_read_falls_back_to_the_backoff(value: str) -> None:
    server = FakeServer(
        problem(429, "rate_limited", **{"Retry-After": value}), httpx.Response(202, json=PAYMENT)
    )
    time = FakeTime()

    transfer(client_of(server, time, RetryPolicy(backoff_s=1.0), rng=0.0))

    assert time.slept == [0.5]


def test_a_retry_after_beyond_the_total_time_raises_rate_limited_at_once() -> None:
    server = FakeServer(problem(429, "rate_limited", **{"Retry-After": "120"}))
    time = FakeTime()

    with pytest.raises(RateLimited) as limited:
        transfer(client_of(server, time, RetryPolicy(total_s=60)))

    assert time.slept == []
    assert (limited.value.code, limited.value.retry_after) == ("rate_limited", 120.0)


def test_network_errors_are_retried_with_the_same_key_then_raise_unreachable() -> None:
    server = FakeServer(refuse_connection, time_out_reading, httpx.Response(202, json=PAYMENT))
    time = FakeTime()

    assert transfer(client_of(server, time)) == "pay_1"
    assert len(set(server.keys)) == 1

    down = FakeServer(*[refuse_connection] * 3)
    with pytest.raises(Unreachable) as unreachable:
        transfer(client_of(down, FakeTime(), RetryPolicy(attempts=3)))
    assert isinstance(unreachable.value.__cause__, httpx.ConnectError)
    assert len(down.requests) == 3


def test_a_refused_request_is_not_retried() -> None:
    server = FakeServer(problem(422, "currency_mismatch"))
    time = FakeTime()

    with pytest.raises(InvalidRequest) as refused:
        transfer(client_of(server, time))

    assert refused.value.code == "currency_mismatch"
    assert len(server.requests) == 1
    assert time.slept == []


def test_a_request_that_would_create_twice_is_retried_only_when_surely_unsent() -> None:
    time = FakeTime()
    unsent = FakeServer(
        refuse_connection, problem(429, "rate_limited"), httpx.Response(201, json=ACCOUNT)
    )
    assert client_of(unsent, time).create_account("EUR").id == "acc_a"
    assert len(unsent.requests) == 3

    maybe_sent = FakeServer(time_out_reading)
    with pytest.raises(Unreachable):
        client_of(maybe_sent, time).create_account("EUR")
    failed = FakeServer(problem(503, "not_ready"))
    with pytest.raises(ServerError):
        client_of(failed, time).create_account("EUR")

    assert len(maybe_sent.requests) == len(failed.requests) == 1


KEYED_WRITES: dict[str, tuple[Callable[[Client], str], JSON]] = {
    "capture": (lambda client: client.capture("pay_1", amount=100).id, PAYMENT),
    "void": (lambda client: client.void("pay_1").id, PAYMENT),
    "refund": (lambda client: client.refund("pay_1").id, PAYMENT),
    "submit_batch": (
        lambda client: client.submit_batch([Transfer("acc_a", "acc_b", 1, "EUR")]).id,
        BATCH,
    ),
}


@pytest.mark.parametrize("write", sorted(KEYED_WRITES))
def test_captures_voids_refunds_and_batches_keep_one_fresh_key_across_retries(write: str) -> None:
    send, answer = KEYED_WRITES[write]
    server = FakeServer(
        problem(503, "not_ready"), time_out_reading, httpx.Response(200, json=answer)
    )
    again = FakeServer(httpx.Response(200, json=answer))

    send(client_of(server, FakeTime()))
    send(client_of(again, FakeTime()))

    (key, *others) = server.keys
    assert key is not None
    uuid.UUID(key)
    assert others == [key, key]
    assert [request.content for request in server.requests[1:]] == [server.requests[0].content] * 2
    assert again.keys != [key]


def test_creating_an_endpoint_or_rotating_its_secret_is_retried_only_when_surely_unsent() -> None:
    time = FakeTime()
    unsent = FakeServer(
        refuse_connection,
        httpx.Response(201, json={**ENDPOINT, "secret": "whsec_new"}),
        refuse_connection,
        httpx.Response(200, json={"secret": "whsec_rotated"}),
    )
    client = client_of(unsent, time)
    assert client.create_webhook_endpoint("https://example.com/hooks").secret == "whsec_new"
    assert client.rotate_webhook_secret("whe_1") == "whsec_rotated"
    assert len(unsent.requests) == 4

    creating: list[Callable[[Client], object]] = [
        lambda client: client.create_webhook_endpoint("https://example.com/hooks"),
        lambda client: client.rotate_webhook_secret("whe_1"),
    ]
    for create_or_rotate in creating:
        maybe_sent = FakeServer(time_out_reading)
        with pytest.raises(Unreachable):
            create_or_rotate(client_of(maybe_sent, time))
        failed = FakeServer(problem(503, "not_ready"))
        with pytest.raises(ServerError):
            create_or_rotate(client_of(failed, time))
        assert len(maybe_sent.requests) == len(failed.requests) == 1


def test_an_answer_that_is_no_problem_still_raises_with_the_status_as_its_code() -> None:
    server = FakeServer(*[httpx.Response(502, text="<html>bad gateway</html>")] * 2)

    with pytest.raises(ServerError) as failed:
        transfer(client_of(server, FakeTime(), RetryPolicy(attempts=2)))

    assert (failed.value.status, failed.value.code) == (502, "http_502")


def test_the_async_client_retries_alike_with_the_same_key() -> None:
    server = FakeServer(
        refuse_connection,
        problem(500, "internal_error"),
        problem(429, "rate_limited", **{"Retry-After": "2"}),
        httpx.Response(202, json=PAYMENT),
    )
    time = FakeTime()

    async def scenario() -> str:
        async with AsyncClient(
            "http://p2p.test",
            API_KEY,
            transport=httpx.MockTransport(server),
            sleep=time.async_sleep,
            clock=time.clock,
            wall_clock=time.wall_clock,
            rng=lambda: 0.0,
        ) as client:
            payment = await client.transfer("acc_a", "acc_b", 2500, "EUR")
            return payment.id

    assert asyncio.run(scenario()) == "pay_1"
    assert len(set(server.keys)) == 1
    assert len(server.requests) == 4
    assert time.slept == [0.125, 0.25, 2.0]
