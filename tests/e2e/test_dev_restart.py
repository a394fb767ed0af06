"""``p2p dev``: its in-process broker loses everything on SIGKILL; the database does not."""

from __future__ import annotations

import pytest

from tests.e2e.harness import (
    ApiClient,
    Customer,
    Stack,
    poll,
    random_transfers,
    submit_through_crash,
)

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

PAYMENTS = 150
RECOVERY_TIMEOUT_S = 30.0
SIGTERM_TIMEOUT_S = 10.0


def test_payments_left_pending_by_a_killed_dev_server_settle_after_its_restart(
    dev_stack: Stack,
) -> None:
    stack = dev_stack
    db = stack.database()
    dev = stack.start_dev()
    with ApiClient(dev.url) as client:
        customers = [client.customer(deposit=1_000_000) for _ in range(3)]
    requests = random_transfers(customers, PAYMENTS, seed=8, amounts=(1, 500))

    pending_at_kill: list[int] = []

    def kill_dev_while_it_is_busy(answered: int) -> None:
        if dev.process.alive and answered >= PAYMENTS // 3 and (pending := db.pending()):
            dev.process.kill()
            pending_at_kill.append(pending)

    answers = submit_through_crash(dev.url, requests, crash=kill_dev_while_it_is_busy)
    assert pending_at_kill, "p2p dev never had a payment pending: nothing was tested"
    assert {answer.status_code for answer in answers if answer is not None} == {202}
    accepted: list[tuple[Customer, str]] = [
        (request.sender, answer.json()["id"])
        for request, answer in zip(requests, answers, strict=True)
        if answer is not None
    ]

    restarted = stack.start_dev()
    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="no payment pending")
    with ApiClient(restarted.url) as client:
        statuses = [payment["status"] for payment in client.wait_all_final(accepted)]
    assert statuses == ["completed"] * len(accepted)
    stack.assert_ledger_holds()


def test_a_dev_server_stopped_by_sigterm_shuts_down_and_exits_zero(dev_stack: Stack) -> None:
    dev = dev_stack.start_dev()

    assert dev.process.terminate(timeout=SIGTERM_TIMEOUT_S) == 0, (
        "p2p dev ended by its SIGTERM: its worker runtime was never stopped"
    )
