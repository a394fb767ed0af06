"""G1 and G4 when the API dies between committing a payment and enqueueing it."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.crashing_api import CRASH_EXIT_CODE
from tests.e2e.harness import (
    ApiClient,
    Stack,
    poll,
    random_transfers,
    submit_through_crash,
    transfer,
)

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

RECOVERY_TIMEOUT_S = 30.0
STREAM = 120


def test_a_payment_committed_by_an_api_that_died_before_enqueueing_is_settled_once(
    stack: Stack,
) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        alice = client.customer(deposit=10_000)
        bob = client.customer()
    request = transfer(alice, bob, 4_000)
    api.process.kill()

    crashing = stack.start_crashing_api()
    with ApiClient(crashing.url) as client, pytest.raises(httpx.TransportError):
        client.submit(request)
    assert crashing.process.wait_exit(timeout=10) == CRASH_EXIT_CODE

    db = stack.database()
    recorded = db.scalar(
        "SELECT id FROM payments WHERE from_account_id = ? AND idempotency_key = ?",
        alice.account_id,
        request.key,
    )
    assert recorded is not None, "the crashed API's commit was lost"
    poll(
        lambda: (
            db.scalar("SELECT status FROM payments WHERE id = ?", recorded) != "pending" or None
        ),
        timeout=RECOVERY_TIMEOUT_S,
        what="the sweep to settle the payment nobody enqueued",
    )

    restarted = stack.start_api()
    with ApiClient(restarted.url) as client:
        retried = client.submit(request)
        assert retried.status_code == 202, retried.text
        assert retried.headers.get("Idempotent-Replayed") == "true"
        assert retried.json()["id"] == recorded
        assert retried.json()["status"] == "completed"
        assert client.account(alice)["balance"] == 6_000
        assert client.account(bob)["balance"] == 4_000
    assert db.scalar("SELECT count(*) FROM payments") == 1
    stack.assert_ledger_holds()


def test_payments_committed_before_the_api_was_killed_mid_stream_all_settle(
    stack: Stack,
) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        customers = [client.customer(deposit=1_000_000) for _ in range(3)]
    requests = random_transfers(customers, STREAM, seed=5, amounts=(1, 500))

    def kill_api(answered: int) -> None:
        if answered == STREAM // 2:
            api.process.kill()

    answers = submit_through_crash(api.url, requests, crash=kill_api)

    lost = [request for request, answer in zip(requests, answers, strict=True) if answer is None]
    assert lost, "the API was killed after the last request: nothing was tested"
    db = stack.database()
    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="no payment pending")
    assert db.status_counts() == {"completed": db.scalar("SELECT count(*) FROM payments")}
    stack.assert_ledger_holds()

    # A client retries what it got no answer for: each ends in exactly one payment.
    restarted = stack.start_api()
    with ApiClient(restarted.url) as client:
        retried = [client.submit(request) for request in lost]
        accepted = [
            (request.sender, answer.json()["id"])
            for request, answer in zip(requests, answers, strict=True)
            if answer is not None
        ]
        accepted += [
            (request.sender, answer.json()["id"])
            for request, answer in zip(lost, retried, strict=True)
        ]
        statuses = [payment["status"] for payment in client.wait_all_final(accepted)]
    assert {answer.status_code for answer in retried} == {202}
    assert statuses == ["completed"] * STREAM
    assert db.scalar("SELECT count(*) FROM payments") == STREAM
    stack.assert_ledger_holds()
