"""G8 with real processes: a worker SIGKILLed and Redis flushed in the middle of
authorizations and again in the middle of expiries; every authorization ends exactly
once (captured, voided or expired), and the holds add up. The expiring workers' clock
runs ahead (tests/e2e/late_worker.py), so no test waits the minute a hold lasts."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from shared.clock import from_text, utcnow
from tests.conftest import RedisServer
from tests.e2e.harness import (
    ApiClient,
    Customer,
    Json,
    Stack,
    TransferRequest,
    poll,
    random_transfers,
    submit_concurrently,
)

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

STREAM = 200
HOLD_S = 60  # the shortest hold the API takes
RECOVERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ManualTransferRequest(TransferRequest):
    def body(self) -> Json:
        return {**super().body(), "capture": "manual", "hold_seconds": HOLD_S}


def _manual(requests: list[TransferRequest]) -> list[TransferRequest]:
    return [
        ManualTransferRequest(r.sender, r.to_account_id, r.amount, r.key, r.currency)
        for r in requests
    ]


def test_holds_survive_a_killed_worker_and_a_flushed_redis_and_end_exactly_once(
    stack: Stack, redis_server: RedisServer
) -> None:
    stack.overrides.update(P2P_SETTLE_GROUP="4", P2P_EXPIRY_INTERVAL_S="0.2", P2P_EXPIRY_BATCH="3")
    api = stack.start_api()
    worker = stack.start_worker(wait_started=True)
    db = stack.database()
    with ApiClient(api.url) as client:
        customers = client.rich_customers()
    requests = _manual(random_transfers(customers, STREAM, seed=8, amounts=(1, 1_000)))
    killed: list[int] = []

    # 1. Authorizations: the worker dies and Redis forgets every message half-way.
    def kill_while_authorizing(answered: int) -> None:
        if killed or answered < STREAM // 3:
            return
        counts = db.status_counts()
        if counts["pending"] and counts["authorized"]:
            worker.kill()
            redis_server.flushall()
            killed.append(counts["authorized"])

    answers = submit_concurrently(api.url, requests, on_answer=kill_while_authorizing)
    assert [answer.status_code for answer in answers] == [202] * STREAM
    assert killed, "the worker never had payments both authorized and pending"
    stack.start_worker()
    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="no payment pending")
    assert db.status_counts()["authorized"] == STREAM
    stack.assert_ledger_holds()

    # 2. Captures (some partial) and voids, answered at once; the rest is left to expire.
    payments = [
        (request, answer.json()["id"]) for request, answer in zip(requests, answers, strict=True)
    ]
    receivers = {customer.account_id: customer for customer in customers}
    rng = random.Random(8)
    plan = [rng.choice(["capture", "partial", "void", "expire", "expire"]) for _ in payments]

    def act(index: int) -> int:
        request, payment_id = payments[index]
        action = plan[index]
        if action == "expire":
            return 0
        owner: Customer = receivers[request.to_account_id]
        path = "void" if action == "void" else "capture"
        body = {"amount": max(1, request.amount // 2)} if action == "partial" else None
        with httpx.Client(base_url=api.url, timeout=30) as http:
            response = http.post(
                f"/payments/{payment_id}/{path}",
                json=body,
                headers={**owner.headers, "Idempotency-Key": f"{path}-{payment_id}"},
            )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(act, range(STREAM)))
    assert {code for code, action in zip(codes, plan, strict=True) if action != "expire"} == {200}
    expiring = plan.count("expire")
    assert expiring > 3

    # 3. Expiries: the worker dies and Redis is flushed while it works through them, a
    #    few per pass; the worker started after expires what is left. Their clock starts
    #    when the first hold comes due instead of waiting the hold out: the holds come
    #    due one after another, as far apart as they were authorized.
    stack.processes[-1].terminate(timeout=RECOVERY_TIMEOUT_S)
    first_due = from_text(
        db.scalar("SELECT min(expires_at) FROM payments WHERE status = 'authorized'")
    )
    ahead_s = (first_due - utcnow()).total_seconds()
    assert 0 < ahead_s <= HOLD_S
    worker = stack.start_late_worker(ahead_s=ahead_s)

    def some_expired() -> bool | None:
        counts = db.status_counts()
        return (counts["expired"] > 0 and counts["authorized"] > 0) or None

    poll(some_expired, timeout=RECOVERY_TIMEOUT_S, what="the first expiries")
    worker.kill()
    redis_server.flushall()
    left = db.status_counts()["authorized"]
    assert 0 < left < expiring, "the expiries were not caught half-way"
    stack.start_late_worker(ahead_s=ahead_s)
    poll(
        lambda: db.status_counts()["authorized"] == 0 or None,
        timeout=RECOVERY_TIMEOUT_S,
        what="every authorization to end",
    )

    counts = db.status_counts()
    assert counts["expired"] == expiring
    assert counts["voided"] == plan.count("void")
    assert counts["completed"] == plan.count("capture") + plan.count("partial")
    assert db.scalar("SELECT coalesce(sum(held), 0) FROM accounts") == 0
    assert db.scalar("SELECT count(*) FROM payment_actions") == STREAM - expiring
    stack.assert_ledger_holds()
