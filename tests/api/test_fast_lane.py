"""The transfer fast lane answers exactly as the route would, and hands everything that
is not a plainly valid, allowed transfer on to the route before counting or writing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

import api.routes.payments
from api.app import create_app
from shared.settings import Settings
from shared.store import Database
from tests.api.support import (
    Caller,
    accepted,
    assert_problem,
    funded_account,
    idle_queue,
    new_key,
    open_account,
    recorded,
    sign_up,
    transfer,
    transfer_body,
)

LIMITED = {"rate_limit_per_s": 1000, "rate_limit_burst": 1000}
# Differ between any two answers, whoever gives them.
_PER_ANSWER = {"date", "x-request-id", "ratelimit", "idempotent-replayed"}


@pytest.fixture
def route_only(settings: Settings, db: Database) -> Iterator[TestClient]:
    """The same app over the same database, without the fast lane."""
    with idle_queue(settings, db) as queue:
        app = create_app(settings, db, queue, fast_lane=False)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
        queue.close()


@pytest.fixture
def route_unused(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records every transfer the route itself accepts."""
    calls: list[Any] = []
    real = api.routes.payments.accept_transfer

    async def recording(*args: Any) -> Any:
        calls.append(args)
        return await real(*args)

    monkeypatch.setattr(api.routes.payments, "accept_transfer", recording)
    return calls


def _same_answer(fast: httpx2.Response, route: httpx2.Response) -> None:
    assert fast.status_code == route.status_code, (fast.text, route.text)
    assert fast.content == route.content
    assert {k: v for k, v in fast.headers.items() if k not in _PER_ANSWER} == {
        k: v for k, v in route.headers.items() if k not in _PER_ANSWER
    }
    assert ("ratelimit" in fast.headers) == ("ratelimit" in route.headers)


@pytest.mark.parametrize("settings", [LIMITED], indirect=True)
def test_a_plain_transfer_is_accepted_by_the_fast_lane_and_the_route_is_not_run(
    client: TestClient, ada: Caller, route_unused: list[Any]
) -> None:
    sender = funded_account(client, ada, 100)
    body = transfer_body(sender, open_account(client, ada), 40)
    key = new_key()

    first = transfer(client, ada, body, key=key)
    again = transfer(client, ada, body, key=key)

    assert accepted(first) == accepted(again)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["RateLimit-Policy"] == '"burst";q=1000;w=1'
    assert route_unused == []


@pytest.mark.parametrize("settings", [LIMITED], indirect=True)
def test_the_fast_lane_answers_byte_for_byte_as_the_route_does(
    client: TestClient, route_only: TestClient, ada: Caller
) -> None:
    sender = funded_account(client, ada, 100)
    receiver = open_account(client, ada)
    usd = open_account(client, ada, "USD")
    body = transfer_body(sender, receiver, 40, description="Zürich rent ✓")
    # Each key is used first by one and then replayed by the other: one payment, and the
    # two answers must be the same bytes.
    for first, then in ((client, route_only), (route_only, client)):
        key = new_key()
        original = transfer(first, ada, body, key=key)
        replay = transfer(then, ada, body, key=key)
        assert replay.headers["Idempotent-Replayed"] == "true"
        _same_answer(
            original if first is client else replay, replay if first is client else original
        )
    # Refusals the core makes, once the body is plainly valid, are the fast lane's too.
    used = new_key()
    transfer(client, ada, body, key=used)
    refusals = [
        (transfer_body(sender, "acc_nobody", 1), new_key()),
        (transfer_body(sender, sender, 1), new_key()),
        (transfer_body(sender, usd, 1), new_key()),
        (transfer_body(sender, receiver, 41), used),
    ]
    for refused, key in refusals:
        _same_answer(
            transfer(client, ada, refused, key=key), transfer(route_only, ada, refused, key=key)
        )


@pytest.mark.parametrize("settings", [LIMITED], indirect=True)
def test_what_the_fast_lane_hands_on_gets_the_routes_answer_and_is_counted_once(
    client: TestClient, db: Database, ada: Caller
) -> None:
    sender = funded_account(client, ada, 100)
    body = transfer_body(sender, open_account(client, ada), 1)
    before = recorded(db)
    headers = {**ada.auth, "Content-Type": "application/json"}
    plain = httpx2.Request("POST", "/", json=body).content
    handed_on = [
        (b'{"amount": 1', {"Idempotency-Key": new_key()}),
        (b"[" * 100_000, {"Idempotency-Key": new_key()}),
        (b'{"amount": 1}', {"Idempotency-Key": new_key()}),
        (plain, {}),
        (plain, {"Idempotency-Key": "a\tb"}),
        (httpx2.Request("POST", "/", json={**body, "amount": 10**12 + 1}).content, {}),
    ]
    for content, extra in handed_on:
        answer = client.post("/payments/transfer", content=content, headers=headers | extra)
        assert 400 <= answer.status_code < 500, answer.text
        assert_problem(answer, answer.status_code)
    assert recorded(db) == before

    # The route counts what reaches its rate limit, as it always has; the fast lane,
    # which handed them on, counted none of them. Time only gives requests back.
    assert accepted_remaining(transfer(client, ada, body)) >= 1000 - len(handed_on) - 1


@pytest.mark.parametrize(
    "settings", [{"rate_limit_per_s": 1, "rate_limit_burst": 3}], indirect=True
)
def test_a_transfer_over_the_limit_is_handed_on_and_refused_by_the_route(
    client: TestClient, db: Database, ada: Caller
) -> None:
    sender = funded_account(client, ada, 100)
    body = transfer_body(sender, open_account(client, ada), 1)
    before = recorded(db)

    # The deposit took one of the burst of 3.
    assert transfer(client, ada, body).status_code == 202
    assert transfer(client, ada, body).status_code == 202
    refused = transfer(client, ada, body)

    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "1"
    assert recorded(db).payments == before.payments + 2


def accepted_remaining(answer: httpx2.Response) -> int:
    """``r`` of the ``RateLimit`` field of an accepted transfer."""
    accepted(answer)
    return int(answer.headers["RateLimit"].split("r=")[1].split(";")[0])


def test_a_transfer_from_another_users_account_is_not_found_on_either_path(
    client: TestClient, route_only: TestClient, ada: Caller
) -> None:
    eve = sign_up(client, "Eve")
    body = transfer_body(funded_account(client, ada, 10), open_account(client, eve), 1)
    key = new_key()
    _same_answer(transfer(client, eve, body, key=key), transfer(route_only, eve, body, key=key))
    assert_problem(transfer(client, eve, body), 404, "not_found")
