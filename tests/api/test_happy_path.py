"""Sign up, open and fund accounts, transfer, settle, read it all back."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import httpx2
import pytest
from fastapi.testclient import TestClient

from shared.store import Database
from tests.api.support import (
    Caller,
    Settle,
    accepted,
    app_of,
    assert_problem,
    deposit,
    funded_account,
    get_json,
    new_key,
    open_account,
    recorded,
    sign_up,
    transfer,
    transfer_body,
)
from worker.runtime import WorkerRuntime

PAYMENT_FIELDS = {
    "id",
    "from_account_id",
    "to_account_id",
    "amount",
    "currency",
    "description",
    "status",
    "failure_code",
    "failure_detail",
    "created_at",
    "completed_at",
}
LEDGER_ENTRY_FIELDS = {
    "id",
    "account_id",
    "direction",
    "amount",
    "balance_after",
    "payment_id",
    "deposit_id",
    "created_at",
}
DEPOSIT_FIELDS = {"id", "account_id", "amount", "description", "balance_after", "created_at"}


def _is_utc(text: str) -> bool:
    """RFC 3339 in UTC, as docs/api.md says times are."""
    moment = datetime.fromisoformat(text)
    return text.endswith("Z") and moment.utcoffset() == timedelta(0)


def test_sign_up_answers_the_user_and_an_api_key_shown_once(
    client: TestClient, db: Database
) -> None:
    response = client.post("/users", json={"name": "Ada", "email": "ada@example.com"})

    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == {"id", "name", "email", "created_at", "api_key"}
    assert user["name"] == "Ada"
    assert user["email"] == "ada@example.com"
    assert user["api_key"].startswith("p2p_")
    assert user["created_at"].endswith("Z")
    ada = Caller(user["id"], "Ada", "ada@example.com", user["api_key"])
    account_id = funded_account(client, ada, 500)
    other = open_account(client, ada)
    payment = accepted(transfer(client, ada, transfer_body(account_id, other, 100)))
    for path in (
        "/accounts",
        f"/accounts/{account_id}",
        f"/accounts/{account_id}/ledger",
        "/payments",
        f"/payments/{payment['id']}",
    ):
        assert ada.api_key not in client.get(path, headers=ada.auth).text, path
    with db.read() as conn:
        stored = [tuple(row) for row in conn.execute("SELECT * FROM api_keys")]
    assert stored
    assert all(ada.api_key not in str(value) for row in stored for value in row)


@pytest.mark.parametrize("again", ["ADA@example.com", "ada@EXAMPLE.COM", "Ada@Example.Com"])
def test_an_email_is_taken_whatever_its_case(client: TestClient, db: Database, again: str) -> None:
    sign_up(client, "Ada", "ada@example.com")
    before = recorded(db)

    response = client.post("/users", json={"name": "Imposter", "email": again})

    assert_problem(response, 409, "email_taken")
    assert recorded(db) == before


def test_an_opened_account_is_the_callers_and_empty(client: TestClient, ada: Caller) -> None:
    response = client.post("/accounts", json={"currency": "EUR"}, headers=ada.auth)

    assert response.status_code == 201, response.text
    account = response.json()
    assert set(account) == {
        "id",
        "user_id",
        "currency",
        "balance",
        "pending_out",
        "status",
        "created_at",
        "updated_at",
    }
    assert account["user_id"] == ada.user_id
    assert account["currency"] == "EUR"
    assert account["balance"] == 0
    assert account["pending_out"] == 0
    assert account["status"] == "active"
    assert _is_utc(account["created_at"])
    assert _is_utc(account["updated_at"])
    assert get_json(client, ada, f"/accounts/{account['id']}") == account


def test_a_deposit_credits_the_account_at_once(client: TestClient, ada: Caller) -> None:
    account_id = open_account(client, ada)

    first = client.post(
        f"/accounts/{account_id}/deposits",
        json={"amount": 1250, "description": "salary"},
        headers=ada.keyed(new_key()),
    )
    second = deposit(client, ada, account_id, 750)

    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    made = first.json()
    assert made["account_id"] == account_id
    assert made["amount"] == 1250
    assert made["description"] == "salary"
    assert made["balance_after"] == 1250
    assert set(made) == DEPOSIT_FIELDS
    assert _is_utc(made["created_at"])
    assert second["balance_after"] == 2000
    assert get_json(client, ada, f"/accounts/{account_id}")["balance"] == 2000
    entries = get_json(client, ada, f"/accounts/{account_id}/ledger")["data"]
    assert [(e["direction"], e["amount"], e["balance_after"]) for e in entries] == [
        ("credit", 750, 2000),
        ("credit", 1250, 1250),
    ]
    assert [e["deposit_id"] for e in entries] == [second["id"], made["id"]]
    assert all(e["payment_id"] is None for e in entries)


def test_an_accepted_transfer_settles_and_moves_the_money(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    client = settling_client
    sender = funded_account(client, ada, 10_000)
    receiver = open_account(client, bob)

    response = transfer(client, ada, transfer_body(sender, receiver, 2_500, description="rent"))

    assert response.status_code == 202, response.text
    submitted = response.json()
    assert response.headers["Location"] == f"/payments/{submitted['id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert submitted["status"] == "pending"
    assert submitted["failure_code"] is None
    assert submitted["completed_at"] is None
    assert submitted["amount"] == 2_500
    assert submitted["currency"] == "EUR"
    assert submitted["description"] == "rent"
    assert set(submitted) == PAYMENT_FIELDS
    assert _is_utc(submitted["created_at"])

    settle()

    payment = get_json(client, ada, response.headers["Location"])
    assert payment["id"] == submitted["id"]
    assert payment["status"] == "completed"
    assert payment["failure_code"] is None
    assert payment["failure_detail"] is None
    assert _is_utc(payment["completed_at"])
    assert payment["completed_at"] >= payment["created_at"]
    assert get_json(client, ada, f"/accounts/{sender}")["balance"] == 7_500
    assert get_json(client, bob, f"/accounts/{receiver}")["balance"] == 2_500
    [debit, seed] = get_json(client, ada, f"/accounts/{sender}/ledger")["data"]
    assert (debit["direction"], debit["amount"], debit["balance_after"]) == ("debit", 2_500, 7_500)
    assert debit["payment_id"] == payment["id"]
    assert set(debit) == LEDGER_ENTRY_FIELDS
    assert _is_utc(debit["created_at"])
    assert debit["deposit_id"] is None
    assert (seed["direction"], seed["balance_after"]) == ("credit", 10_000)
    [credit] = get_json(client, bob, f"/accounts/{receiver}/ledger")["data"]
    assert (credit["direction"], credit["amount"], credit["balance_after"]) == (
        "credit",
        2_500,
        2_500,
    )
    assert credit["payment_id"] == payment["id"]
    for caller in (ada, bob):
        [listed] = get_json(client, caller, "/payments")["data"]
        assert listed == payment


def test_refused_payments_fail_with_a_code_and_leave_no_entries(
    settling_client: TestClient, settle: Settle, db: Database, ada: Caller, bob: Caller
) -> None:
    client = settling_client
    poor = funded_account(client, ada, 100)
    rich = funded_account(client, ada, 1_000)
    frozen_sender = funded_account(client, ada, 1_000)
    frozen_receiver = open_account(client, bob)
    receiver = open_account(client, bob)
    for account_id, owner in ((frozen_sender, ada), (frozen_receiver, bob)):
        frozen = client.patch(
            f"/accounts/{account_id}", json={"status": "frozen"}, headers=owner.auth
        )
        assert frozen.status_code == 200, frozen.text
    entries_before = recorded(db).ledger_entries

    outcomes = {
        code: accepted(transfer(client, ada, transfer_body(sender, to, 500)))["id"]
        for code, sender, to in (
            ("insufficient_funds", poor, receiver),
            ("account_frozen", frozen_sender, receiver),
            ("account_frozen_receiver", rich, frozen_receiver),
        )
    }
    settle()

    for expected, payment_id in outcomes.items():
        payment = get_json(client, ada, f"/payments/{payment_id}")
        assert payment["status"] == "failed", payment
        assert payment["failure_code"] == expected.removesuffix("_receiver")
        assert payment["failure_detail"]
        assert payment["completed_at"] is not None
    assert recorded(db).ledger_entries == entries_before
    for account_id, owner, balance in (
        (poor, ada, 100),
        (rich, ada, 1_000),
        (frozen_sender, ada, 1_000),
        (frozen_receiver, bob, 0),
        (receiver, bob, 0),
    ):
        account = get_json(client, owner, f"/accounts/{account_id}")
        assert (account["balance"], account["pending_out"]) == (balance, 0)


def test_pending_out_counts_outgoing_payments_until_they_settle(
    client: TestClient, runtime: WorkerRuntime, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, bob)
    ids = [
        accepted(transfer(client, ada, transfer_body(sender, receiver, amount)))["id"]
        for amount in (300, 200)
    ]

    pending = get_json(client, ada, f"/accounts/{sender}")
    assert (pending["balance"], pending["pending_out"]) == (1_000, 500)
    assert get_json(client, bob, f"/accounts/{receiver}")["pending_out"] == 0
    listed = get_json(client, ada, "/accounts")["data"]
    assert [a["pending_out"] for a in listed if a["id"] == sender] == [500]

    for payment_id in ids:
        runtime.actor.send(payment_id)
    runtime.join()

    settled = get_json(client, ada, f"/accounts/{sender}")
    assert (settled["balance"], settled["pending_out"]) == (500, 0)


def test_a_long_poll_answers_the_final_status_as_soon_as_it_is_settled(
    client: TestClient, runtime: WorkerRuntime, ada: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    payment_id = accepted(transfer(client, ada, transfer_body(sender, receiver, 400)))["id"]
    waiter = app_of(client).state.services.waiter
    wait_settled = waiter.wait_settled
    polling = threading.Event()

    async def noticed_wait_settled(awaited: str, seconds: float) -> None:
        polling.set()
        await wait_settled(awaited, seconds)

    monkeypatch.setattr(waiter, "wait_settled", noticed_wait_settled)
    answers: list[httpx2.Response] = []

    def long_poll() -> None:
        answers.append(client.get(f"/payments/{payment_id}", params={"wait": 5}, headers=ada.auth))

    poller = threading.Thread(target=long_poll)
    started = time.monotonic()
    poller.start()
    try:
        assert polling.wait(timeout=5), "the long-poll never waited"
        assert poller.is_alive()
        runtime.actor.send(payment_id)
        runtime.join()
    finally:
        poller.join(timeout=10)

    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert time.monotonic() - started < 5


def test_a_long_poll_answers_pending_when_its_time_is_up(client: TestClient, ada: Caller) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    payment_id = accepted(transfer(client, ada, transfer_body(sender, receiver, 400)))["id"]

    payment = get_json(client, ada, f"/payments/{payment_id}", wait=0.2)

    assert payment["status"] == "pending"


def test_freezing_is_a_status_that_can_be_undone(client: TestClient, ada: Caller) -> None:
    account_id = open_account(client, ada)

    states: list[str] = []
    for status in ("frozen", "frozen", "active"):
        response = client.patch(
            f"/accounts/{account_id}", json={"status": status}, headers=ada.auth
        )
        assert response.status_code == 200, response.text
        states.append(response.json()["status"])

    assert states == ["frozen", "frozen", "active"]
    assert deposit(client, ada, account_id, 10)["balance_after"] == 10


def test_a_deposit_to_a_frozen_account_is_refused_and_records_nothing(
    client: TestClient, db: Database, ada: Caller
) -> None:
    account_id = funded_account(client, ada, 100)
    client.patch(f"/accounts/{account_id}", json={"status": "frozen"}, headers=ada.auth)
    before = recorded(db)
    key = new_key()

    refused = client.post(
        f"/accounts/{account_id}/deposits", json={"amount": 50}, headers=ada.keyed(key)
    )

    assert_problem(refused, 409, "account_frozen")
    assert recorded(db) == before
    client.patch(f"/accounts/{account_id}", json={"status": "active"}, headers=ada.auth)
    retried = client.post(
        f"/accounts/{account_id}/deposits", json={"amount": 50}, headers=ada.keyed(key)
    )
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json()["balance_after"] == 150
