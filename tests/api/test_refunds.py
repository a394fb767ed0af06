"""Refunds over HTTP: the receiver's owner refunds a completed payment (`202`, a new
payment back, settled by the worker); every refusal is a problem that records nothing."""

from __future__ import annotations

from typing import Any

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
    new_key,
    open_account,
    sign_up,
    transfer,
    transfer_body,
)


def _state(db: Database) -> tuple[tuple[object, ...], ...]:
    """Everything a refund could write: accounts' money, payments and what their refunds
    reserved and moved, entries."""
    conn = db.connection()
    return (
        tuple(
            tuple(r)
            for r in conn.execute("SELECT id, balance, pending_out FROM accounts ORDER BY seq")
        ),
        tuple(
            tuple(r)
            for r in conn.execute(
                "SELECT id, status, refund_reserved, refunded_amount FROM payments ORDER BY seq"
            )
        ),
        tuple(conn.execute("SELECT count(*) FROM ledger_entries").fetchone()),
    )


class Paid:
    """A completed payment of 300 EUR from Ada (1,000 funded) to Bob, and its accounts."""

    def __init__(self, client: TestClient, settle: Settle, ada: Caller, bob: Caller) -> None:
        self.client, self.settle, self.ada, self.bob = client, settle, ada, bob
        self.sender = funded_account(client, ada, 1000)
        self.receiver = open_account(client, bob)
        self.id: str = accepted(
            transfer(client, ada, transfer_body(self.sender, self.receiver, 300))
        )["id"]
        settle()
        assert self.payment()["status"] == "completed"

    def refund(
        self,
        body: Any = None,
        *,
        caller: Caller | None = None,
        key: str | None = None,
        payment_id: str | None = None,
    ) -> httpx2.Response:
        headers = (caller or self.bob).keyed(key or new_key())
        path = f"/payments/{payment_id or self.id}/refunds"
        if body is None:
            return self.client.post(path, headers=headers)
        return self.client.post(path, json=body, headers=headers)

    def payment(self, payment_id: str | None = None, caller: Caller | None = None) -> JSON:
        return get_json(self.client, caller or self.ada, f"/payments/{payment_id or self.id}")

    def balances(self) -> tuple[int, int]:
        return (
            get_json(self.client, self.ada, f"/accounts/{self.sender}")["balance"],
            get_json(self.client, self.bob, f"/accounts/{self.receiver}")["balance"],
        )


@pytest.fixture
def paid(settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller) -> Paid:
    return Paid(settling_client, settle, ada, bob)


# Accepted.


def test_a_partial_then_a_full_refund_end_to_end(paid: Paid, db: Database) -> None:
    response = paid.refund({"amount": 100, "description": "one item back"})

    refund = accepted(response)
    assert response.headers["Location"] == f"/payments/{refund['id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert (refund["from_account_id"], refund["to_account_id"]) == (paid.receiver, paid.sender)
    assert (refund["amount"], refund["currency"], refund["refund_of"]) == (100, "EUR", paid.id)
    assert (refund["status"], refund["description"]) == ("pending", "one item back")
    paid.settle()
    assert paid.payment(refund["id"])["status"] == "completed"
    assert paid.payment(refund["id"], paid.bob)["refund_of"] == paid.id
    assert paid.payment()["refunded_amount"] == 100
    assert paid.balances() == (800, 200)

    rest = accepted(paid.refund())  # no body: all that is left
    assert rest["amount"] == 200
    paid.settle()
    assert paid.payment()["refunded_amount"] == 300
    assert paid.balances() == (1000, 0)
    before = _state(db)

    body = assert_problem(paid.refund(), 422, "refund_exceeds_payment")
    assert "refunded in full" in body["detail"]
    assert_problem(paid.refund({"amount": 1}), 422, "refund_exceeds_payment")
    assert _state(db) == before


@pytest.mark.parametrize("body", [{}, {"amount": None}, {"description": "all of it"}])
def test_a_refund_without_an_amount_refunds_all_that_is_left(paid: Paid, body: JSON) -> None:
    accepted(paid.refund({"amount": 120}))

    assert accepted(paid.refund(body))["amount"] == 180


def test_a_refund_above_what_is_left_is_refused_and_records_nothing(
    paid: Paid, db: Database
) -> None:
    accepted(paid.refund({"amount": 250}))
    paid.settle()
    before = _state(db)

    body = assert_problem(paid.refund({"amount": 51}), 422, "refund_exceeds_payment")

    assert body["detail"] == f"payment {paid.id} has 50 left to refund, not 51"
    assert _state(db) == before


def test_a_refund_the_receiver_cannot_pay_fails_and_frees_what_it_reserved(
    paid: Paid, db: Database, bob: Caller
) -> None:
    elsewhere = open_account(paid.client, bob)
    accepted(transfer(paid.client, bob, transfer_body(paid.receiver, elsewhere, 250)))
    paid.settle()

    refund = accepted(paid.refund({"amount": 100}))
    paid.settle()

    for viewer in (paid.ada, paid.bob):
        failed = paid.payment(refund["id"], viewer)
        assert (failed["status"], failed["failure_code"]) == ("failed", "insufficient_funds")
    assert paid.payment()["refunded_amount"] == 0
    assert accepted(paid.refund({"amount": 50}))["amount"] == 50  # the 100 is free again


def test_a_refund_from_a_frozen_account_fails_when_settled(paid: Paid, bob: Caller) -> None:
    freeze = paid.client.patch(
        f"/accounts/{paid.receiver}", json={"status": "frozen"}, headers=bob.auth
    )
    assert freeze.status_code == 200, freeze.text

    refund = accepted(paid.refund({"amount": 100}))  # accepted: the worker judges it
    paid.settle()

    assert paid.payment(refund["id"])["failure_code"] == "account_frozen"
    assert paid.payment()["refunded_amount"] == 0


# Not refundable.


def test_a_refund_of_a_refund_answers_409(paid: Paid, db: Database, ada: Caller) -> None:
    refund = accepted(paid.refund({"amount": 100}))
    paid.settle()
    before = _state(db)

    response = paid.refund(caller=ada, payment_id=refund["id"])

    assert_problem(response, 409, "payment_not_refundable")
    assert _state(db) == before


def test_a_refund_of_a_failed_payment_answers_409(
    settling_client: TestClient, settle: Settle, db: Database, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(settling_client, ada, 10)
    receiver = open_account(settling_client, bob)
    payment = accepted(transfer(settling_client, ada, transfer_body(sender, receiver, 300)))
    settle()
    before = _state(db)

    response = settling_client.post(
        f"/payments/{payment['id']}/refunds", headers=bob.keyed(new_key())
    )

    assert_problem(response, 409, "payment_not_refundable")
    assert _state(db) == before


def test_a_refund_of_a_pending_payment_answers_409(
    client: TestClient, db: Database, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(client, ada, 1000)
    receiver = open_account(client, bob)
    payment = accepted(transfer(client, ada, transfer_body(sender, receiver, 300)))
    before = _state(db)

    response = client.post(f"/payments/{payment['id']}/refunds", headers=bob.keyed(new_key()))

    body = assert_problem(response, 409, "payment_not_refundable")
    assert "is pending" in body["detail"]
    assert _state(db) == before


# Refused input.


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"amount": 0}, id="zero"),
        pytest.param({"amount": -5}, id="negative"),
        pytest.param({"amount": "10"}, id="a string"),
        pytest.param({"amount": 10.0}, id="a float"),
        pytest.param({"amount": True}, id="a boolean"),
        pytest.param({"amount": 2**63}, id="above 64 bits"),
        pytest.param({"description": "x" * 501}, id="a long description"),
        pytest.param({"amount": 10, "reason": "why"}, id="an unknown field"),
        pytest.param([], id="a list"),
        pytest.param("10", id="a string body"),
    ],
)
def test_a_refund_with_a_bad_body_is_refused_and_records_nothing(
    paid: Paid, db: Database, body: Any
) -> None:
    before = _state(db)

    assert_problem(paid.refund(body), 422, "validation_error")

    assert _state(db) == before


def test_a_refund_needs_a_valid_idempotency_key(paid: Paid, db: Database) -> None:
    before = _state(db)
    path = f"/payments/{paid.id}/refunds"

    missing = paid.client.post(path, json={}, headers=paid.bob.auth)
    invalid = paid.client.post(path, json={}, headers=paid.bob.keyed("x" * 256))

    assert_problem(missing, 400, "idempotency_key_missing")
    assert_problem(invalid, 400, "idempotency_key_invalid")
    assert_problem(paid.client.post(path, json={}), 401, "unauthorized")
    assert _state(db) == before


def test_only_the_receivers_owner_may_refund(paid: Paid, db: Database) -> None:
    stranger = sign_up(paid.client, "Eve")
    before = _state(db)

    for caller in (paid.ada, stranger):
        assert_problem(paid.refund(caller=caller), 404, "not_found")
    assert_problem(paid.refund(payment_id="pay_unknown"), 404, "not_found")
    assert _state(db) == before


# Idempotency.


def test_a_replay_answers_the_same_refund_with_idempotent_replayed(
    paid: Paid, db: Database
) -> None:
    first = accepted(paid.refund({"amount": 100}, key="refund-1"))
    paid.settle()
    after = _state(db)

    again = paid.refund({"amount": 100}, key="refund-1")

    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    assert _state(db) == after


@pytest.mark.parametrize(
    "second",
    [
        pytest.param({"amount": 101}, id="another amount"),
        pytest.param(None, id="the amount left out"),
        pytest.param({"amount": 100, "description": "other"}, id="another description"),
    ],
)
def test_a_key_reused_with_another_refund_is_refused(
    paid: Paid, db: Database, second: JSON | None
) -> None:
    accepted(paid.refund({"amount": 100}, key="refund-1"))
    paid.settle()
    after = _state(db)

    assert_problem(paid.refund(second, key="refund-1"), 422, "idempotency_key_reused")
    assert _state(db) == after


def test_a_refund_key_does_not_collide_with_a_transfer_key(paid: Paid, bob: Caller) -> None:
    refund = accepted(paid.refund({"amount": 100}, key="shared-key"))

    sent = accepted(
        transfer(paid.client, bob, transfer_body(paid.receiver, paid.sender, 10), key="shared-key")
    )

    assert sent["id"] != refund["id"]
    assert sent["refund_of"] is None


def test_the_route_is_in_the_openapi_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/payments/{payment_id}/refunds"]["post"]

    assert {"202", "400", "404", "409", "422"} <= set(operation["responses"])
    schema = document["components"]["schemas"]["RefundCreate"]
    assert set(schema["properties"]) == {"amount", "description"}
