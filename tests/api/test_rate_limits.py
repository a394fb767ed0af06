"""Rate limits per user on transfers and deposits, and per client address on sign-ups:
429 with Retry-After and the IETF RateLimit fields, nothing recorded, replays counted,
shared by API processes via Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.settings import Settings
from shared.store import Database
from shared.store.opening import open_store
from tests.api.support import (
    JSON,
    Caller,
    assert_problem,
    idle_queue,
    make_settings,
    new_key,
    open_account,
    recorded,
    sign_up,
    transfer,
    transfer_body,
)
from tests.conftest import RedisServer, free_port

# Two requests at once, then one every 100 s: nothing in a test comes back by itself.
TWO_PER_100_S = {"rate_limit_per_s": 0.01, "rate_limit_burst": 2}
LIMITED = pytest.mark.parametrize("settings", [TWO_PER_100_S], indirect=True, ids=["2/100s"])
POLICY = '"burst";q=2;w=200'


def _accounts(client: TestClient, caller: Caller) -> JSON:
    return transfer_body(open_account(client, caller), open_account(client, caller), 100)


def _deposit(
    client: TestClient, caller: Caller, account_id: str, key: str | None = None
) -> httpx2.Response:
    return client.post(
        f"/accounts/{account_id}/deposits",
        json={"amount": 100},
        headers=caller.keyed(key or new_key()),
    )


@LIMITED
def test_transfers_over_the_limit_get_429_with_retry_after_and_ratelimit_fields(
    client: TestClient, ada: Caller
) -> None:
    body = _accounts(client, ada)

    answers = [transfer(client, ada, body) for _ in range(3)]

    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[0].headers["RateLimit"] == '"burst";r=1;t=100'
    assert answers[1].headers["RateLimit"] == '"burst";r=0;t=200'
    assert all(a.headers["RateLimit-Policy"] == POLICY for a in answers)
    refused = answers[2]
    problem = assert_problem(refused, 429, "rate_limited")
    assert "retry after 100 s" in problem["detail"]
    assert refused.headers["Retry-After"] == "100"
    assert refused.headers["RateLimit"] == '"burst";r=0;t=200'
    assert "Retry-After" not in answers[0].headers


@LIMITED
def test_a_refused_transfer_or_deposit_records_nothing(
    client: TestClient, ada: Caller, db: Database
) -> None:
    body = _accounts(client, ada)
    transfer(client, ada, body)
    transfer(client, ada, body)
    before = recorded(db)

    refused_transfer = transfer(client, ada, body, key="refused-key")
    refused_deposit = _deposit(client, ada, body["from_account_id"], key="refused-key")

    assert_problem(refused_transfer, 429, "rate_limited")
    assert_problem(refused_deposit, 429, "rate_limited")
    assert recorded(db) == before
    with db.read() as conn:
        for table in ("payments", "deposits"):
            query = f"SELECT count(*) FROM {table} WHERE idempotency_key = 'refused-key'"
            assert conn.execute(query).fetchone()[0] == 0


@LIMITED
def test_transfers_and_deposits_share_the_keys_limit(client: TestClient, ada: Caller) -> None:
    body = _accounts(client, ada)

    assert transfer(client, ada, body).status_code == 202
    assert _deposit(client, ada, body["from_account_id"]).status_code == 201
    assert_problem(_deposit(client, ada, body["from_account_id"]), 429, "rate_limited")


@LIMITED
def test_a_replay_counts_against_the_limit(client: TestClient, ada: Caller, db: Database) -> None:
    body = _accounts(client, ada)
    first = transfer(client, ada, body, key="same")
    replay = transfer(client, ada, body, key="same")
    before = recorded(db)

    limited_replay = transfer(client, ada, body, key="same")

    assert first.status_code == replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert_problem(limited_replay, 429, "rate_limited")
    assert "Idempotent-Replayed" not in limited_replay.headers
    assert recorded(db) == before


@LIMITED
def test_the_limit_is_checked_after_auth_and_json_syntax_before_key_and_fields(
    client: TestClient, ada: Caller
) -> None:
    body = _accounts(client, ada)
    transfer(client, ada, body)
    transfer(client, ada, body)

    no_key = client.post("/payments/transfer", json=body, headers=ada.auth)
    bad_body = client.post("/payments/transfer", json={"amount": "x"}, headers=ada.keyed("k"))

    not_json = client.post(
        "/payments/transfer",
        content=b"{not json",
        headers={**ada.keyed("k"), "Content-Type": "application/json"},
    )
    no_auth = client.post("/payments/transfer", json=body)

    assert_problem(no_key, 429, "rate_limited")
    assert_problem(bad_body, 429, "rate_limited")
    assert_problem(not_json, 422, "validation_error")
    assert_problem(no_auth, 401, "unauthorized")


@LIMITED
def test_all_of_a_users_keys_share_one_limit(client: TestClient, ada: Caller, bob: Caller) -> None:
    """Per key, a user could multiply the limit by making keys."""
    body = _accounts(client, ada)
    transfer(client, ada, body)
    transfer(client, ada, body)
    created = client.post("/users/me/api-keys", headers=ada.auth)
    assert created.status_code == 201, created.text
    second = Caller(ada.user_id, ada.name, ada.email, created.json()["api_key"])

    assert_problem(transfer(client, ada, body), 429, "rate_limited")
    assert_problem(transfer(client, second, body), 429, "rate_limited")
    assert transfer(client, bob, _accounts(client, bob)).status_code == 202


THREE_SIGN_UPS_PER_HOUR = {"signup_rate_limit_per_hour": 3, "signup_rate_limit_burst": 3}


def _sign_up(client: TestClient, n: int) -> httpx2.Response:
    return client.post("/users", json={"name": "Ada", "email": f"ada-{n}@example.com"})


@pytest.mark.parametrize("settings", [THREE_SIGN_UPS_PER_HOUR], indirect=True)
def test_sign_ups_from_one_address_past_the_limit_get_429_and_record_nothing(
    client: TestClient, db: Database
) -> None:
    allowed = [_sign_up(client, n) for n in range(3)]
    before = recorded(db)

    refused = [_sign_up(client, n) for n in range(3, 6)]
    bad = client.post("/users", json={"name": "Ada"})

    assert [a.status_code for a in allowed] == [201, 201, 201]
    assert allowed[0].headers["RateLimit-Policy"] == '"burst";q=3;w=3600'
    for answer in [*refused, bad]:
        assert_problem(answer, 429, "rate_limited")
        assert answer.headers["Retry-After"] == "1200"
    assert recorded(db) == before


def test_sign_ups_are_limited_per_address_across_api_processes_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.flushall()
    settings = make_settings(tmp_path, redis_url=redis_server.url, **THREE_SIGN_UPS_PER_HOUR)
    db = open_store(settings)
    db.migrate()
    with _api(settings, db) as first, _api(settings, db) as second:
        answers = [_sign_up(client, n) for n, client in enumerate([first, second] * 2)]

        assert [a.status_code for a in answers] == [201, 201, 201, 429]
    db.close()


@LIMITED
def test_reads_are_not_limited_and_carry_no_ratelimit_fields(
    client: TestClient, ada: Caller
) -> None:
    body = _accounts(client, ada)
    transfer(client, ada, body)
    transfer(client, ada, body)

    for path in ("/payments", "/accounts", f"/accounts/{body['from_account_id']}"):
        answer = client.get(path, headers=ada.auth)
        assert answer.status_code == 200, path
        assert "RateLimit" not in answer.headers, path


def test_with_limits_off_nothing_is_limited_nor_announced(client: TestClient, ada: Caller) -> None:
    body = _accounts(client, ada)

    answers = [transfer(client, ada, body) for _ in range(150)]

    assert {a.status_code for a in answers} == {202}
    assert "RateLimit" not in answers[-1].headers


@LIMITED
def test_the_429_and_the_fields_are_documented_on_the_limited_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    limited = {
        ("/payments/transfer", "post"),
        ("/accounts/{account_id}/deposits", "post"),
        ("/users", "post"),
        ("/payments/{payment_id}/capture", "post"),
        ("/payments/{payment_id}/void", "post"),
        ("/payments/{payment_id}/refunds", "post"),
        ("/payments/batch", "post"),
    }

    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            if (path, method) not in limited:
                assert "429" not in answers, (method, path)
                continue
            refused = answers["429"]
            assert set(refused["content"]) == {"application/problem+json"}
            headers = refused["headers"]
            assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(headers)
            assert all(header["required"] for header in headers.values())
            success = next(status for status in answers if status.startswith("2"))
            assert {"RateLimit", "RateLimit-Policy"} <= set(answers[success]["headers"])


@contextmanager
def _api(settings: Settings, db: Database) -> Iterator[TestClient]:
    """An API as ``p2p api`` builds it: limits kept in Redis."""
    with idle_queue(settings, db) as queue:
        app = create_app(settings, db, queue, shared_limits=True)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


def test_two_api_processes_share_one_limit_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = make_settings(tmp_path, redis_url=redis_server.url, **TWO_PER_100_S)
    db = open_store(settings)
    db.migrate()
    with _api(settings, db) as first, _api(settings, db) as second:
        ada = sign_up(first, "Ada")
        body = _accounts(first, ada)

        assert transfer(first, ada, body).status_code == 202
        assert transfer(second, ada, body).status_code == 202
        assert_problem(transfer(first, ada, body), 429, "rate_limited")
        assert_problem(transfer(second, ada, body), 429, "rate_limited")
    db.close()


def test_without_redis_submits_are_still_accepted_and_limited_by_the_process(
    tmp_path: Path,
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(tmp_path, redis_url=nobody, **TWO_PER_100_S)
    db = open_store(settings)
    db.migrate()
    with _api(settings, db) as client:
        ada = sign_up(client, "Ada")
        body = _accounts(client, ada)

        answers = [transfer(client, ada, body) for _ in range(3)]

        assert [a.status_code for a in answers] == [202, 202, 429]
        assert answers[0].headers["RateLimit-Policy"] == POLICY
    db.close()
