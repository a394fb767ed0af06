"""Several ``p2p worker`` processes and two ``p2p api`` processes on one database: on
PostgreSQL they settle at once (each claims payments the others do not hold, and locks
accounts in one order); on SQLite they take turns. Either way every payment settles
exactly once, money is conserved, and no transfer is half applied."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.e2e.harness import ApiClient, Stack, poll, random_transfers, submit_concurrently

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

WORKERS = 3
TRANSFERS = 400
FUNDS = 2_000


def _settled_by(worker_log: str) -> int:
    return sum(
        1
        for line in worker_log.splitlines()
        if line.startswith("{") and json.loads(line).get("message") == "payment settled"
    )


def test_several_workers_settle_every_payment_exactly_once(stack: Stack) -> None:
    # Small groups and one message at a time, so that every worker has settling to do
    # while the others do too (with the default prefetch, one fast worker takes them all).
    stack.overrides["P2P_SETTLE_GROUP"] = "4"
    stack.overrides["P2P_WORKER_PREFETCH"] = "1"
    apis = [stack.start_api(), stack.start_api()]
    workers = [stack.start_worker(wait_started=True) for _ in range(WORKERS)]
    with ApiClient(apis[0].url) as client:
        # Few accounts, many transfers between them: the workers' groups share accounts.
        customers = [client.customer(deposit=FUNDS) for _ in range(5)]
    requests = random_transfers(customers, TRANSFERS, seed=11, amounts=(1, 300))
    half = TRANSFERS // 2

    answers = [
        *submit_concurrently(apis[0].url, requests[:half], concurrency=16),
        *submit_concurrently(apis[1].url, requests[half:], concurrency=16),
    ]

    assert [answer.status_code for answer in answers] == [202] * TRANSFERS
    with ApiClient(apis[1].url) as client:
        settled = client.wait_all_final(
            [
                (request.sender, answer.json()["id"])
                for request, answer in zip(requests, answers, strict=True)
            ]
        )
    outcomes = Counter(payment["status"] for payment in settled)
    assert set(outcomes) <= {"completed", "failed"}, outcomes
    db = stack.database()
    assert db.scalar("SELECT count(*) FROM payments") == TRANSFERS
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE payment_id IS NOT NULL") == (
        2 * outcomes["completed"]
    )
    # A worker logs a payment just after its commit: wait for the last lines.
    poll(
        lambda: sum(_settled_by(worker.log_text()) for worker in workers) >= TRANSFERS or None,
        timeout=10,
        what="every settled payment to be logged",
    )
    per_worker = [_settled_by(worker.log_text()) for worker in workers]
    assert sum(per_worker) == TRANSFERS, per_worker  # each payment settled once, by one
    assert sum(1 for n in per_worker if n) >= 2, f"only one worker settled: {per_worker}"
    stack.assert_ledger_holds()
