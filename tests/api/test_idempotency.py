"""G4: an Idempotency-Key makes a transfer or a deposit happen once, whatever the retries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx2
import pytest
from fastapi.testclient import TestClient

from shared.store import Database
from tests.api.support import (
    JSON,
    Caller,
    Settle,
    accepted,
    assert_problem,
    funded_account,
    get_json,
    metric,
    new_key,
    open_account,
    recorded,
    transfer,
    transfer_body,
)

CONCURRENT_CALLERS = 20


def _deposit(
    client: TestClient, caller: Caller, account_id: str, body: JSON, key: str
) -> httpx2.Response:
    return client.post(f"/accounts/{account_id}/deposits", json=body, headers=caller.keyed(key))


def test_a_replayed_transfer_returns_the_same_payment(
    client: TestClient, db: Database, ada: Caller
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    body = transfer_body(sender, receiver, 300, description="rent")
    key = new_key()
    first = transfer(client, ada, body, key=key)
    after_first = recorded(db)

    again = transfer(client, ada, {**dict(reversed(body.items())), "description": "rent"}, key=key)

    assert first.status_code == again.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert recorded(db) == after_first
    assert after_first.payments == 1
    assert metric(client, "p2p_payments_accepted_total") == 1


def test_a_replay_after_settlement_answers_the_payment_as_it_is_now(
    settling_client: TestClient, settle: Settle, ada: Caller
) -> None:
    sender = funded_account(settling_client, ada, 1_000)
    receiver = open_account(settling_client, ada)
    body = transfer_body(sender, receiver, 300)
    key = new_key()
    first = accepted(transfer(settling_client, ada, body, key=key))
    settle()

    again = transfer(settling_client, ada, body, key=key)

    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    assert again.json()["status"] == "completed"
    assert get_json(settling_client, ada, f"/accounts/{sender}")["balance"] == 700


def test_a_replayed_deposit_returns_the_same_deposit(
    client: TestClient, db: Database, ada: Caller
) -> None:
    account_id = open_account(client, ada)
    key = new_key()
    first = _deposit(client, ada, account_id, {"amount": 500, "description": "gift"}, key)
    after_first = recorded(db)

    again = _deposit(client, ada, account_id, {"description": "gift", "amount": 500}, key)

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert recorded(db) == after_first
    assert get_json(client, ada, f"/accounts/{account_id}")["balance"] == 500


@pytest.mark.parametrize(
    "change",
    [{"amount": 301}, {"description": "other"}, {"to_account_id": "other receiver"}],
    ids=["amount", "description", "receiver"],
)
def test_a_transfer_key_reused_with_another_body_is_refused(
    client: TestClient, db: Database, ada: Caller, bob: Caller, change: JSON
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    body = transfer_body(sender, receiver, 300)
    key = new_key()
    accepted(transfer(client, ada, body, key=key))
    if change.get("to_account_id") == "other receiver":
        change = {"to_account_id": open_account(client, bob)}
    before = recorded(db)

    response = transfer(client, ada, {**body, **change}, key=key)

    assert_problem(response, 422, "idempotency_key_reused")
    assert "Idempotent-Replayed" not in response.headers
    assert recorded(db) == before


@pytest.mark.parametrize(
    "body",
    [{"amount": 501}, {"amount": 500, "description": "other"}],
    ids=["amount", "description"],
)
def test_a_deposit_key_reused_with_another_body_is_refused(
    client: TestClient, db: Database, ada: Caller, body: JSON
) -> None:
    account_id = open_account(client, ada)
    key = new_key()
    assert _deposit(client, ada, account_id, {"amount": 500}, key).status_code == 201
    before = recorded(db)

    response = _deposit(client, ada, account_id, body, key)

    assert_problem(response, 422, "idempotency_key_reused")
    assert recorded(db) == before


@dataclass(frozen=True)
class KeyedRequest:
    """A transfer or a deposit, ready to send with whatever headers a test picks."""

    path: str
    body: JSON


def _prepare(kind: str, client: TestClient, caller: Caller) -> KeyedRequest:
    if kind == "transfer":
        sender = funded_account(client, caller, 1_000)
        receiver = open_account(client, caller)
        return KeyedRequest("/payments/transfer", transfer_body(sender, receiver, 100))
    return KeyedRequest(f"/accounts/{open_account(client, caller)}/deposits", {"amount": 100})


KINDS = ["transfer", "deposit"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_key_is_refused(client: TestClient, db: Database, ada: Caller, kind: str) -> None:
    request = _prepare(kind, client, ada)
    before = recorded(db)

    response = client.post(request.path, json=request.body, headers=ada.auth)

    assert_problem(response, 400, "idempotency_key_missing")
    assert recorded(db) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"k" * 256,
        "caf\u00e9".encode(),
        "\u00e9t\u00e9".encode("latin-1"),
        b"key\x00",
        b"key\x01",
        b"tab\tkey",
        b"new\nline",
        b"del\x7f",
    ],
    ids=["empty", "256", "utf8", "latin1", "nul", "soh", "tab", "newline", "del"],
)
def test_a_malformed_key_is_refused(
    client: TestClient, db: Database, ada: Caller, kind: str, key: bytes
) -> None:
    request = _prepare(kind, client, ada)
    before = recorded(db)

    response = client.post(
        request.path,
        json=request.body,
        headers=[(b"Authorization", ada.auth["Authorization"].encode()), (b"Idempotency-Key", key)],
    )

    assert_problem(response, 400, "idempotency_key_invalid")
    assert recorded(db) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "key", ["k", "~" * 255, " spaced key ", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"]
)
def test_a_key_of_1_to_255_printable_characters_is_accepted(
    client: TestClient, ada: Caller, kind: str, key: str
) -> None:
    request = _prepare(kind, client, ada)

    response = client.post(request.path, json=request.body, headers=ada.keyed(key))

    assert response.status_code in (201, 202), response.text
    assert "Idempotent-Replayed" not in response.headers


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"amount": 0}, 422, "validation_error"),
        ({"amount": 10**12 + 1}, 422, "validation_error"),
        ({"currency": "usd"}, 422, "validation_error"),
        ({"currency": "USD"}, 422, "currency_mismatch"),
        ({"to_account_id": "acc_nobody"}, 404, "not_found"),
        ({"unknown": True}, 422, "validation_error"),
    ],
    ids=["zero", "too_large", "lowercase_currency", "currency_mismatch", "no_receiver", "extra"],
)
def test_a_refused_transfer_does_not_burn_its_key(
    client: TestClient, db: Database, ada: Caller, change: JSON, status: int, code: str
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    body = transfer_body(sender, receiver, 300)
    key = new_key()
    before = recorded(db)

    refused = transfer(client, ada, {**body, **change}, key=key)
    assert_problem(refused, status, code)
    assert recorded(db) == before

    corrected = transfer(client, ada, body, key=key)
    assert corrected.status_code == 202, corrected.text
    assert "Idempotent-Replayed" not in corrected.headers


def test_a_refused_deposit_does_not_burn_its_key(
    client: TestClient, db: Database, ada: Caller
) -> None:
    account_id = open_account(client, ada)
    key = new_key()

    assert_problem(_deposit(client, ada, account_id, {"amount": -5}, key), 422, "validation_error")
    corrected = _deposit(client, ada, account_id, {"amount": 5}, key)

    assert corrected.status_code == 201, corrected.text
    assert "Idempotent-Replayed" not in corrected.headers


def test_a_transfer_key_is_scoped_to_its_sending_account(
    client: TestClient, db: Database, ada: Caller, bob: Caller
) -> None:
    first_sender = funded_account(client, ada, 1_000)
    second_sender = funded_account(client, ada, 1_000)
    bobs_sender = funded_account(client, bob, 1_000)
    receiver = open_account(client, ada)
    key = new_key()

    answers = [
        transfer(client, caller, transfer_body(sender, receiver, 100), key=key)
        for caller, sender in ((ada, first_sender), (ada, second_sender), (bob, bobs_sender))
    ]

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert all("Idempotent-Replayed" not in a.headers for a in answers)
    assert len({a.json()["id"] for a in answers}) == 3
    assert recorded(db).payments == 3


def test_a_deposit_key_is_scoped_to_its_account(client: TestClient, ada: Caller) -> None:
    first = open_account(client, ada)
    second = open_account(client, ada)
    key = new_key()

    answers = [
        _deposit(client, ada, account_id, {"amount": 100}, key) for account_id in (first, second)
    ]

    assert [a.status_code for a in answers] == [201, 201]
    assert all("Idempotent-Replayed" not in a.headers for a in answers)
    assert answers[0].json()["id"] != answers[1].json()["id"]


def _all_at_once(send: Callable[[], httpx2.Response]) -> list[httpx2.Response]:
    start = threading.Barrier(CONCURRENT_CALLERS, timeout=10)

    def lined_up(_: int) -> httpx2.Response:
        start.wait()
        return send()

    with ThreadPoolExecutor(max_workers=CONCURRENT_CALLERS) as pool:
        return list(pool.map(lined_up, range(CONCURRENT_CALLERS)))


def test_concurrent_identical_transfers_make_one_payment(
    client: TestClient, db: Database, ada: Caller
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    body = transfer_body(sender, receiver, 100)
    key = new_key()

    answers = _all_at_once(lambda: transfer(client, ada, body, key=key))

    assert [a.status_code for a in answers] == [202] * CONCURRENT_CALLERS, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    fresh = [a for a in answers if "Idempotent-Replayed" not in a.headers]
    assert len(fresh) == 1
    assert all(a.headers["Idempotent-Replayed"] == "true" for a in answers if a not in fresh)
    assert recorded(db).payments == 1
    assert metric(client, "p2p_payments_accepted_total") == 1
    assert get_json(client, ada, f"/accounts/{sender}")["pending_out"] == 100


def test_concurrent_identical_deposits_make_one_deposit(
    client: TestClient, db: Database, ada: Caller
) -> None:
    account_id = open_account(client, ada)
    key = new_key()

    answers = _all_at_once(lambda: _deposit(client, ada, account_id, {"amount": 100}, key))

    assert [a.status_code for a in answers] == [201] * CONCURRENT_CALLERS, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert recorded(db).deposits == 1
    assert get_json(client, ada, f"/accounts/{account_id}")["balance"] == 100
