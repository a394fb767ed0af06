"""Two-phase payments over HTTP: a manual transfer is authorized by the worker, then
captured or voided by the receiver's owner, answered at once; every refusal is a
problem that records nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

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

DAY = 24 * 3600


def _state(db: Database) -> tuple[tuple[object, ...], ...]:
    """Everything a capture or void could write: accounts' money, payments' outcomes,
    entries and kept answers."""
    conn = db.connection()
    return (
        tuple(
            tuple(r) for r in conn.execute("SELECT id, balance, held FROM accounts ORDER BY seq")
        ),
        tuple(
            tuple(r)
            for r in conn.execute(
                "SELECT id, status, captured_amount, completed_at FROM payments ORDER BY seq"
            )
        ),
        tuple(conn.execute("SELECT count(*) FROM ledger_entries").fetchone()),
        tuple(conn.execute("SELECT count(*) FROM payment_actions").fetchone()),
    )


def _manual(
    client: TestClient, sender: Caller, from_id: str, to_id: str, amount: int, **extra: Any
) -> JSON:
    return accepted(
        transfer(
            client, sender, {**transfer_body(from_id, to_id, amount), "capture": "manual", **extra}
        )
    )


class Hold:
    """An authorized payment from Ada (1,000 EUR funded) to Bob, and its accounts."""

    def __init__(self, client: TestClient, settle: Settle, ada: Caller, bob: Caller) -> None:
        self.client, self.ada, self.bob = client, ada, bob
        self.sender = funded_account(client, ada, 1000)
        self.receiver = open_account(client, bob)
        self.payment = _manual(client, ada, self.sender, self.receiver, 400)
        settle()
        self.id: str = self.payment["id"]

    def capture(
        self, body: JSON | None = None, *, caller: Caller | None = None, key: str | None = None
    ) -> Any:
        headers = (caller or self.bob).keyed(key or new_key())
        if body is None:
            return self.client.post(f"/payments/{self.id}/capture", headers=headers)
        return self.client.post(f"/payments/{self.id}/capture", json=body, headers=headers)

    def void(self, *, caller: Caller | None = None, key: str | None = None) -> Any:
        headers = (caller or self.bob).keyed(key or new_key())
        return self.client.post(f"/payments/{self.id}/void", headers=headers)

    def account(self, caller: Caller, account_id: str) -> JSON:
        return get_json(self.client, caller, f"/accounts/{account_id}")


@pytest.fixture
def hold(settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller) -> Hold:
    return Hold(settling_client, settle, ada, bob)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


# Authorizing.


def test_a_manual_transfer_is_authorized_and_holds_its_amount(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    client = settling_client
    sender = funded_account(client, ada, 1000)
    receiver = open_account(client, bob)

    submitted = _manual(client, ada, sender, receiver, 400, hold_seconds=600)

    assert (submitted["status"], submitted["capture"], submitted["expires_at"]) == (
        "pending",
        "manual",
        None,
    )
    settle()
    payment = get_json(client, ada, f"/payments/{submitted['id']}")
    assert (payment["status"], payment["completed_at"], payment["captured_amount"]) == (
        "authorized",
        None,
        None,
    )
    expires = _utc(payment["expires_at"]) - _utc(payment["created_at"])
    assert timedelta(seconds=600) <= expires < timedelta(seconds=660)
    account = get_json(client, ada, f"/accounts/{sender}")
    assert (account["balance"], account["held"], account["available"]) == (1000, 400, 600)
    assert account["pending_out"] == 0
    assert get_json(client, bob, f"/accounts/{receiver}")["balance"] == 0
    assert get_json(client, ada, f"/accounts/{sender}/ledger")["data"][0]["payment_id"] is None


def test_a_manual_transfer_holds_seven_days_unless_it_says(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(settling_client, ada, 1000)
    receiver = open_account(settling_client, bob)
    submitted = _manual(settling_client, ada, sender, receiver, 10)

    settle()

    payment = get_json(settling_client, ada, f"/payments/{submitted['id']}")
    held_for = _utc(payment["expires_at"]) - _utc(payment["created_at"])
    assert timedelta(days=7) <= held_for < timedelta(days=7, minutes=1)


def test_held_money_is_not_available_to_a_transfer(hold: Hold, settle: Settle, ada: Caller) -> None:
    response = transfer(hold.client, ada, transfer_body(hold.sender, hold.receiver, 601))
    payment = accepted(response)

    settle()

    failed = get_json(hold.client, ada, f"/payments/{payment['id']}")
    assert (failed["status"], failed["failure_code"]) == ("failed", "insufficient_funds")


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"hold_seconds": 600}, id="hold_seconds with automatic capture"),
        pytest.param({"capture": "automatic", "hold_seconds": 600}, id="said automatic"),
        pytest.param({"capture": "manual", "hold_seconds": 59}, id="59 seconds"),
        pytest.param({"capture": "manual", "hold_seconds": 2_592_001}, id="over 30 days"),
        pytest.param({"capture": "manual", "hold_seconds": 600.5}, id="a float"),
        pytest.param({"capture": "manual", "hold_seconds": "600"}, id="a string"),
        pytest.param({"capture": "later"}, id="an unknown capture"),
        pytest.param({"capture": None}, id="a null capture"),
    ],
)
def test_a_transfer_with_a_bad_capture_or_hold_is_refused_and_records_nothing(
    client: TestClient, db: Database, ada: Caller, bob: Caller, extra: JSON
) -> None:
    sender = funded_account(client, ada, 1000)
    receiver = open_account(client, bob)
    before = _state(db)

    response = transfer(client, ada, {**transfer_body(sender, receiver, 10), **extra})

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"][:2] == [
        "body",
        next(iter(extra)) if len(extra) == 1 else "hold_seconds",
    ]
    assert _state(db) == before


def test_the_longest_and_shortest_holds_are_accepted(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(client, ada, 1000)
    receiver = open_account(client, bob)

    for seconds in (60, 2_592_000):
        payment = _manual(client, ada, sender, receiver, 10, hold_seconds=seconds)
        assert payment["capture"] == "manual"


# Capturing.


def test_a_capture_moves_the_money_and_answers_the_completed_payment(
    hold: Hold, ada: Caller, bob: Caller
) -> None:
    response = hold.capture()

    assert response.status_code == 200, response.text
    assert "Idempotent-Replayed" not in response.headers
    payment = response.json()
    assert (payment["id"], payment["status"], payment["captured_amount"]) == (
        hold.id,
        "completed",
        400,
    )
    assert payment["completed_at"] is not None
    assert get_json(hold.client, ada, f"/payments/{hold.id}") == payment
    sender = hold.account(ada, hold.sender)
    assert (sender["balance"], sender["held"], sender["available"]) == (600, 0, 600)
    assert hold.account(bob, hold.receiver)["balance"] == 400
    [credit] = get_json(hold.client, bob, f"/accounts/{hold.receiver}/ledger")["data"]
    assert (credit["payment_id"], credit["amount"], credit["direction"]) == (hold.id, 400, "credit")


@pytest.mark.parametrize("body", [{"amount": 150}, {"amount": 400}, {}, {"amount": None}])
def test_a_capture_of_part_or_all_releases_the_whole_hold(
    hold: Hold, ada: Caller, body: JSON
) -> None:
    response = hold.capture(body)

    assert response.status_code == 200, response.text
    captured = body.get("amount") or 400
    assert response.json()["captured_amount"] == captured
    sender = hold.account(ada, hold.sender)
    assert (sender["balance"], sender["held"]) == (1000 - captured, 0)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"amount": 0}, id="zero"),
        pytest.param({"amount": -5}, id="negative"),
        pytest.param({"amount": 1.5}, id="a float"),
        pytest.param({"amount": 100.0}, id="a whole float"),
        pytest.param({"amount": "100"}, id="a string"),
        pytest.param({"amount": 2**63}, id="beyond 64 bits"),
        pytest.param({"amount": 100, "currency": "EUR"}, id="an unknown field"),
        pytest.param([100], id="not an object"),
    ],
)
def test_a_capture_with_a_bad_amount_is_refused_and_records_nothing(
    hold: Hold, db: Database, body: Any
) -> None:
    before = _state(db)

    response = hold.client.post(
        f"/payments/{hold.id}/capture", json=body, headers=hold.bob.keyed(new_key())
    )

    assert_problem(response, 422, "validation_error")
    assert _state(db) == before


def test_a_capture_above_the_authorization_is_refused_and_records_nothing(
    hold: Hold, db: Database
) -> None:
    before = _state(db)

    assert_problem(hold.capture({"amount": 401}), 422, "capture_exceeds_authorization")

    assert _state(db) == before


def test_the_senders_owner_or_a_stranger_cannot_capture_or_void(
    hold: Hold, db: Database, ada: Caller
) -> None:
    stranger = sign_up(hold.client, "Eve")
    before = _state(db)

    for caller in (ada, stranger):
        assert_problem(hold.capture(caller=caller), 404, "not_found")
        assert_problem(hold.void(caller=caller), 404, "not_found")
    for action in ("capture", "void"):
        response = hold.client.post(f"/payments/pay_nope/{action}", headers=hold.bob.keyed("k"))
        assert_problem(response, 404, "not_found")

    assert _state(db) == before


def test_a_capture_or_void_needs_an_idempotency_key(hold: Hold, db: Database) -> None:
    before = _state(db)

    for action in ("capture", "void"):
        response = hold.client.post(f"/payments/{hold.id}/{action}", headers=hold.bob.auth)
        assert_problem(response, 400, "idempotency_key_missing")

    assert _state(db) == before


def test_a_capture_without_an_api_key_is_unauthorized(hold: Hold) -> None:
    response = hold.client.post(f"/payments/{hold.id}/capture", headers={"Idempotency-Key": "k"})

    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize("state", ["pending", "failed", "completed", "voided", "captured"])
def test_a_payment_that_is_not_authorized_answers_409(
    settling_client: TestClient,
    client: TestClient,
    settle: Settle,
    db: Database,
    ada: Caller,
    bob: Caller,
    state: str,
) -> None:
    idle_client = client
    client = settling_client
    sender = funded_account(client, ada, 1000)
    receiver = open_account(client, bob)
    if state == "pending":  # through the API whose queue nobody reads (no sweep either)
        payment = _manual(idle_client, ada, sender, receiver, 100)
    elif state == "failed":
        payment = _manual(client, ada, sender, receiver, 5000)
        settle()
        assert get_json(client, ada, f"/payments/{payment['id']}")["status"] == "failed"
    elif state == "completed":
        payment = accepted(transfer(client, ada, transfer_body(sender, receiver, 100)))
        settle()
    else:
        payment = _manual(client, ada, sender, receiver, 100)
        settle()
        action = "capture" if state == "captured" else "void"
        done = client.post(f"/payments/{payment['id']}/{action}", headers=bob.keyed(new_key()))
        assert done.status_code == 200, done.text
    before = _state(db)

    for action in ("capture", "void"):
        response = client.post(f"/payments/{payment['id']}/{action}", headers=bob.keyed(new_key()))
        assert_problem(response, 409, "payment_not_authorized")
    if state == "pending":
        assert get_json(client, ada, f"/payments/{payment['id']}")["status"] == "pending"

    assert _state(db) == before


@pytest.mark.parametrize("frozen", ["sender", "receiver"])
def test_a_capture_while_an_account_is_frozen_answers_409_and_the_hold_stays(
    hold: Hold, db: Database, ada: Caller, bob: Caller, frozen: str
) -> None:
    owner, account = (ada, hold.sender) if frozen == "sender" else (bob, hold.receiver)
    freeze = hold.client.patch(
        f"/accounts/{account}", json={"status": "frozen"}, headers=owner.auth
    )
    assert freeze.status_code == 200, freeze.text
    before = _state(db)

    assert_problem(hold.capture(key="capture-1"), 409, "account_frozen")

    assert _state(db) == before
    assert hold.account(ada, hold.sender)["held"] == 400
    hold.client.patch(f"/accounts/{account}", json={"status": "active"}, headers=owner.auth)
    assert hold.capture(key="capture-1").status_code == 200


# Voiding.


def test_a_void_releases_the_hold_and_answers_the_voided_payment(
    hold: Hold, ada: Caller, bob: Caller
) -> None:
    response = hold.void()

    assert response.status_code == 200, response.text
    payment = response.json()
    assert (payment["status"], payment["captured_amount"]) == ("voided", None)
    assert payment["completed_at"] is not None
    sender = hold.account(ada, hold.sender)
    assert (sender["balance"], sender["held"], sender["available"]) == (1000, 0, 1000)
    assert hold.account(bob, hold.receiver)["balance"] == 0


# Replays.


@pytest.mark.parametrize("action", ["capture", "void"])
def test_a_replay_answers_the_first_answer_with_idempotent_replayed(
    hold: Hold, db: Database, action: str
) -> None:
    first = hold.capture({"amount": 100}, key="k") if action == "capture" else hold.void(key="k")
    assert first.status_code == 200, first.text
    after = _state(db)

    again = hold.capture({"amount": 100}, key="k") if action == "capture" else hold.void(key="k")

    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _state(db) == after


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"amount": 100}, {"amount": 200}, id="another amount"),
        pytest.param({"amount": 400}, {}, id="the full amount said, then left out"),
        pytest.param({"amount": 100}, None, id="a capture, then a void"),
    ],
)
def test_a_key_reused_with_another_request_is_refused(
    hold: Hold, db: Database, first: JSON, second: JSON | None
) -> None:
    assert hold.capture(first, key="k").status_code == 200
    after = _state(db)

    again = hold.void(key="k") if second is None else hold.capture(second, key="k")

    assert_problem(again, 422, "idempotency_key_reused")
    assert _state(db) == after


def test_the_routes_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for action in ("capture", "void"):
        operation = paths[f"/payments/{{payment_id}}/{action}"]["post"]
        assert {"200", "404", "409", "422"} <= set(operation["responses"])
    transfer_schema = client.get("/openapi.json").json()["components"]["schemas"]["TransferCreate"]
    assert {"capture", "hold_seconds"} <= set(transfer_schema["properties"])
