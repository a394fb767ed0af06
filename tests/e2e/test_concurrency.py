"""G3 and G4 under concurrent clients, through the real server."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.harness import (
    ApiClient,
    Stack,
    TransferRequest,
    random_transfers,
    submit_concurrently,
    transfer,
)

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

TRANSFERS = 300
FUNDS = 500


def test_concurrent_transfers_never_overdraw_and_conserve_money(stack: Stack) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        customers = [client.customer(deposit=FUNDS) for _ in range(4)]
    requests = random_transfers(customers, TRANSFERS, seed=6, amounts=(50, 400))

    answers = submit_concurrently(api.url, requests, concurrency=32)

    assert [answer.status_code for answer in answers] == [202] * TRANSFERS
    with ApiClient(api.url) as client:
        settled = client.wait_all_final(
            [
                (request.sender, answer.json()["id"])
                for request, answer in zip(requests, answers, strict=True)
            ]
        )
        outcomes = Counter((p["status"], p["failure_code"]) for p in settled)
        assert set(outcomes) == {("completed", None), ("failed", "insufficient_funds")}, outcomes

        expected = {customer.account_id: FUNDS for customer in customers}
        for payment in settled:
            if payment["status"] == "completed":
                expected[payment["from_account_id"]] -= payment["amount"]
                expected[payment["to_account_id"]] += payment["amount"]
        accounts = [client.account(customer) for customer in customers]
    assert {a["id"]: a["balance"] for a in accounts} == expected
    assert all(a["balance"] >= 0 and a["pending_out"] == 0 for a in accounts)
    assert sum(a["balance"] for a in accounts) == FUNDS * len(customers)
    stack.assert_ledger_holds()


def test_concurrent_identical_requests_make_one_payment(stack: Stack) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        alice = client.customer(deposit=1_000)
        bob = client.customer()
    request = transfer(alice, bob, 700)

    answers = submit_concurrently(api.url, [request] * 20, concurrency=20)

    assert [answer.status_code for answer in answers] == [202] * 20
    assert len({answer.json()["id"] for answer in answers}) == 1
    replayed = [answer.headers.get("Idempotent-Replayed") for answer in answers]
    assert replayed.count("true") == 19, replayed
    payment_id = answers[0].json()["id"]
    with ApiClient(api.url) as client:
        assert client.wait_final(alice, payment_id)["status"] == "completed"
        assert client.account(alice)["balance"] == 300
        assert client.account(bob)["balance"] == 700
    assert stack.database().scalar("SELECT count(*) FROM payments") == 1
    stack.assert_ledger_holds()


def test_concurrent_requests_reusing_a_key_with_another_body_are_refused(stack: Stack) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        alice = client.customer(deposit=1_000)
        bob = client.customer()
    one = transfer(alice, bob, 100)
    other = TransferRequest(alice, bob.account_id, 200, key=one.key)

    answers = submit_concurrently(api.url, [one, other] * 10, concurrency=20)

    by_amount = {
        amount: {answer.status_code for answer in answers[index::2]}
        for index, amount in enumerate((100, 200))
    }
    assert sorted(sorted(codes) for codes in by_amount.values()) == [[202], [422]], by_amount
    refused = [answer for answer in answers if answer.status_code == 422]
    assert {answer.json()["code"] for answer in refused} == {"idempotency_key_reused"}
    accepted = [answer for answer in answers if answer.status_code == 202]
    assert len({answer.json()["id"] for answer in accepted}) == 1
    assert stack.database().scalar("SELECT count(*) FROM payments") == 1
    with ApiClient(api.url) as client:
        payment = client.wait_final(alice, accepted[0].json()["id"])
    assert payment["status"] == "completed"
    stack.assert_ledger_holds()
