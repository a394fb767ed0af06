"""Submit, then poll: through a real ``p2p api`` and ``p2p worker``; and ``p2p verify``."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ApiClient, Stack, transfer

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL


def test_a_submitted_transfer_is_completed_by_the_worker(stack: Stack) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        alice = client.customer(deposit=10_000)
        bob = client.customer()

        accepted = client.accepted(transfer(alice, bob, 2_500))
        assert accepted["status"] == "pending"
        settled = client.wait_final(alice, accepted["id"])

        assert settled["status"] == "completed", settled
        assert settled["failure_code"] is None
        assert client.account(alice)["balance"] == 7_500
        assert client.account(bob)["balance"] == 2_500
        assert client.account(alice)["pending_out"] == 0
    stack.assert_ledger_holds()


def test_a_transfer_beyond_the_balance_fails_and_moves_nothing(stack: Stack) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        alice = client.customer(deposit=100)
        bob = client.customer()

        accepted = client.accepted(transfer(alice, bob, 101))
        settled = client.wait_final(alice, accepted["id"])

        assert settled["status"] == "failed", settled
        assert settled["failure_code"] == "insufficient_funds"
        assert client.account(alice)["balance"] == 100
        assert client.account(bob)["balance"] == 0
    stack.assert_ledger_holds()


def test_verify_reports_a_balance_changed_behind_the_ledgers_back(stack: Stack) -> None:
    api = stack.start_api()
    stack.start_worker()
    with ApiClient(api.url) as client:
        alice = client.customer(deposit=10_000)
        bob = client.customer()
        accepted = client.accepted(transfer(alice, bob, 2_500))
        assert client.wait_final(alice, accepted["id"])["status"] == "completed"
    assert stack.verify().returncode == 0

    with stack.database().connect() as conn:
        conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = ?", (bob.account_id,))
    result = stack.verify()

    assert result.returncode != 0
    assert "balance differs from its ledger" in result.stdout
    assert bob.account_id in result.stdout
    assert "sum of balances differs from sum of deposits" in result.stdout
