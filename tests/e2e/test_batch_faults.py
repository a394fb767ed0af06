"""G10 through faults: batches settled by a worker SIGKILLed in the middle of them, or
whose messages a flushed Redis lost, end as one-by-one submission would end them
(independent) or whole or not at all (atomic), and ``p2p verify`` finds nothing."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace

import httpx
import pytest

from tests.conftest import RedisServer
from tests.e2e.harness import (
    START_TIMEOUT_S,
    ApiClient,
    Customer,
    Stack,
    poll,
)
from tests.e2e.state import AuditedDatabase

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

BATCHES = 12
ITEMS = 60
RECOVERY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class _Submitted:
    customer: Customer
    batch_id: str
    atomic: bool


def _submit_batches(api_url: str, seed: int) -> list[_Submitted]:
    """Independent and atomic batches among four customers, two of them poor enough
    that some of their transfers fail (which ones depends on the order of settling);
    the last batch is atomic and cannot succeed."""
    rng = random.Random(seed)
    submitted = []
    with ApiClient(api_url) as client:
        customers = [client.customer(deposit=amount) for amount in (10_000_000, 5_000, 2_000)]
        customers.append(client.customer(deposit=10_000_000))
        with httpx.Client(base_url=api_url, timeout=30) as http:
            for n in range(BATCHES):
                sender = customers[n % len(customers)]
                others = [c for c in customers if c != sender]
                items = [
                    {
                        "from_account_id": sender.account_id,
                        "to_account_id": rng.choice(others).account_id,
                        "amount": rng.randint(1, 400),
                        "currency": "USD",
                    }
                    for _ in range(ITEMS)
                ]
                atomic = n % 3 == 0
                if n == BATCHES - 1:  # more than all the money there is: fails whole
                    atomic, items[ITEMS // 2]["amount"] = True, 10**9
                response = http.post(
                    "/payments/batch",
                    json={"atomic": atomic, "transfers": items},
                    headers={**sender.headers, "Idempotency-Key": f"e2e-{uuid.uuid4()}"},
                )
                assert response.status_code == 202, response.text
                submitted.append(_Submitted(sender, response.json()["id"], atomic))
    return submitted


@dataclass
class _Payment:
    id: str
    sender: str
    receiver: str
    amount: int
    batch: str | None
    atomic: bool
    status: str = "pending"
    failure_code: str | None = None


def _one_by_one(db: AuditedDatabase) -> tuple[list[_Payment], list[tuple[str, str | None]]]:
    """Every payment in acceptance order, with the outcome one-by-one submission gives
    it: each judged against the balances those before it left, an atomic batch first
    on a copy (all or nothing)."""
    with db.connect() as conn:
        balances: dict[str, int] = {
            account: total
            for account, total in conn.execute(
                "SELECT account_id, sum(amount) FROM deposits GROUP BY account_id"
            )
        }
        payments = [
            _Payment(row[0], row[1], row[2], row[3], row[4], bool(row[5]))
            for row in conn.execute(
                "SELECT p.id, p.from_account_id, p.to_account_id, p.amount, p.batch_id,"
                " coalesce(b.atomic, false) FROM payments AS p"
                " LEFT JOIN batches AS b ON b.id = p.batch_id ORDER BY p.seq"
            )
        ]
        actual = {
            row[0]: (row[1], row[2])
            for row in conn.execute("SELECT id, status, failure_code FROM payments")
        }

    def judge(payment: _Payment, money: dict[str, int]) -> None:
        if money.get(payment.sender, 0) < payment.amount:
            payment.status, payment.failure_code = "failed", "insufficient_funds"
            return
        money[payment.sender] -= payment.amount
        money[payment.receiver] = money.get(payment.receiver, 0) + payment.amount
        payment.status = "completed"

    rehearsed: set[str] = set()
    for payment in payments:
        if payment.atomic and payment.batch not in rehearsed:
            assert payment.batch is not None
            rehearsed.add(payment.batch)
            batch = [p for p in payments if p.batch == payment.batch]
            trial, scratch = [replace(p) for p in batch], dict(balances)
            for tried in trial:
                judge(tried, scratch)
            if any(tried.status == "failed" for tried in trial):
                for one, tried in zip(batch, trial, strict=True):
                    one.status = "failed"
                    one.failure_code = tried.failure_code or "linked_payment_failed"
        if payment.status == "pending":
            judge(payment, balances)
    return payments, [actual[payment.id] for payment in payments]


def _assert_g10(api_url: str, db: AuditedDatabase, submitted: list[_Submitted]) -> None:
    payments, actual = _one_by_one(db)
    assert actual == [(p.status, p.failure_code) for p in payments]
    outcomes = {(p.atomic, p.status) for p in payments}
    assert {(True, "failed"), (False, "failed"), (False, "completed")} <= outcomes, (
        "the scenario should exercise failures of both kinds and completions"
    )
    with httpx.Client(base_url=api_url, timeout=30) as http:
        for one in submitted:
            batch = http.get(f"/batches/{one.batch_id}", headers=one.customer.headers).json()
            assert batch["status"] == "settled", batch
            assert batch["counts"]["pending"] == 0
            if one.atomic:
                assert ITEMS in (batch["counts"]["completed"], batch["counts"]["failed"]), batch


def _settled_some(db: AuditedDatabase) -> bool | None:
    counts = db.status_counts()
    return (counts["pending"] > 0 and counts["completed"] + counts["failed"] > 0) or None


def test_batches_settled_by_a_worker_killed_midway_end_as_one_by_one_would(
    stack: Stack,
) -> None:
    api = stack.start_api()
    db = stack.database()
    submitted = _submit_batches(api.url, seed=5)
    # Small groups: the worker is caught with part of the batches settled.
    stack.overrides["P2P_SETTLE_GROUP"] = "3"
    worker = stack.start_worker()
    poll(lambda: _settled_some(db), timeout=START_TIMEOUT_S, what="some payments settled")
    worker.kill()
    assert db.pending() > 0, "the worker had settled everything: nothing was tested"

    stack.start_worker()
    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="none pending")

    _assert_g10(api.url, db, submitted)
    stack.assert_ledger_holds()


def test_batches_whose_messages_a_flushed_redis_lost_end_as_one_by_one_would(
    stack: Stack, redis_server: RedisServer
) -> None:
    api = stack.start_api()
    db = stack.database()
    submitted = _submit_batches(api.url, seed=6)
    stack.overrides["P2P_SETTLE_GROUP"] = "3"
    stack.start_worker()
    poll(lambda: _settled_some(db), timeout=START_TIMEOUT_S, what="some payments settled")
    redis_server.flushall()
    assert db.pending() > 0, "the worker had settled everything: nothing was tested"

    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="none pending")

    _assert_g10(api.url, db, submitted)
    stack.assert_ledger_holds()
