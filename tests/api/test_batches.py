"""POST /payments/batch, GET /batches/{id} and its payments: every answer and problem."""

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

BATCH_FIELDS = {"id", "atomic", "status", "created_at", "payments"}
BATCH_READ_FIELDS = {"id", "atomic", "status", "counts", "created_at", "settled_at"}


def submit(
    client: TestClient, caller: Caller, body: JSON, *, key: str | None = None
) -> httpx2.Response:
    return client.post("/payments/batch", json=body, headers=caller.keyed(key or new_key()))


def accepted_batch(response: httpx2.Response) -> JSON:
    assert response.status_code == 202, response.text
    body: JSON = response.json()
    return body


def batch_of(*items: JSON, atomic: bool = False) -> JSON:
    return {"atomic": atomic, "transfers": list(items)}


def batches_and_payments(db: Database) -> tuple[int, int]:
    with db.read() as conn:
        batches = conn.execute("SELECT count(*) FROM batches").fetchone()[0]
        payments = conn.execute("SELECT count(*) FROM payments").fetchone()[0]
    return batches, payments


def test_a_batch_is_accepted_with_every_payment_in_order(client: TestClient, ada: Caller) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    amounts = [100, 200, 300]
    response = submit(client, ada, batch_of(*[transfer_body(sender, receiver, a) for a in amounts]))
    body = accepted_batch(response)
    assert body.keys() == BATCH_FIELDS
    assert body["id"].startswith("bat_")
    assert (body["atomic"], body["status"]) == (False, "pending")
    assert response.headers["Location"] == f"/batches/{body['id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert [p["amount"] for p in body["payments"]] == amounts
    for payment in body["payments"]:
        assert (payment["status"], payment["batch_id"]) == ("pending", body["id"])
        assert get_json(client, ada, f"/payments/{payment['id']}")["batch_id"] == body["id"]
    read = get_json(client, ada, f"/batches/{body['id']}")
    assert read.keys() == BATCH_READ_FIELDS
    assert read["status"] == "pending"
    assert read["settled_at"] is None
    assert read["counts"] == {
        "pending": 3,
        "completed": 0,
        "failed": 0,
        "authorized": 0,
        "voided": 0,
        "expired": 0,
    }
    pending_out = get_json(client, ada, f"/accounts/{sender}")["pending_out"]
    assert pending_out == sum(amounts)


def test_a_settled_independent_batch_counts_each_outcome(
    settling_client: TestClient, settle: Settle
) -> None:
    ada = sign_up(settling_client, "Ada")
    sender = funded_account(settling_client, ada, 500)
    receiver = open_account(settling_client, ada)
    items = [transfer_body(sender, receiver, a) for a in (300, 300, 200)]
    body = accepted_batch(submit(settling_client, ada, batch_of(*items)))
    settle()
    read = get_json(settling_client, ada, f"/batches/{body['id']}")
    assert read["status"] == "settled"
    assert read["settled_at"] is not None
    assert read["counts"]["completed"] == 2
    assert read["counts"]["failed"] == 1
    page = get_json(settling_client, ada, f"/batches/{body['id']}/payments")
    assert [(p["status"], p["failure_code"]) for p in page["data"]] == [
        ("completed", None),
        ("failed", "insufficient_funds"),
        ("completed", None),
    ]
    assert get_json(settling_client, ada, f"/accounts/{receiver}")["balance"] == 500


def test_an_atomic_batch_with_one_failure_moves_nothing(
    settling_client: TestClient, settle: Settle
) -> None:
    ada = sign_up(settling_client, "Ada")
    sender = funded_account(settling_client, ada, 500)
    receiver = open_account(settling_client, ada)
    items = [transfer_body(sender, receiver, a) for a in (300, 300, 200)]
    body = accepted_batch(submit(settling_client, ada, batch_of(*items, atomic=True)))
    assert body["atomic"] is True
    settle()
    page = get_json(settling_client, ada, f"/batches/{body['id']}/payments")
    assert [(p["status"], p["failure_code"]) for p in page["data"]] == [
        ("failed", "linked_payment_failed"),
        ("failed", "insufficient_funds"),
        ("failed", "linked_payment_failed"),
    ]
    read = get_json(settling_client, ada, f"/batches/{body['id']}")
    assert (read["status"], read["counts"]["failed"]) == ("settled", 3)
    account = get_json(settling_client, ada, f"/accounts/{sender}")
    assert (account["balance"], account["pending_out"]) == (500, 0)
    assert get_json(settling_client, ada, f"/accounts/{receiver}")["balance"] == 0


def test_an_atomic_batch_that_fits_completes_whole(
    settling_client: TestClient, settle: Settle
) -> None:
    ada = sign_up(settling_client, "Ada")
    bob = sign_up(settling_client, "Bob")
    sender = funded_account(settling_client, ada, 500)
    receiver = open_account(settling_client, bob)
    items = [transfer_body(sender, receiver, a) for a in (300, 200)]
    body = accepted_batch(submit(settling_client, ada, batch_of(*items, atomic=True)))
    settle()
    read = get_json(settling_client, ada, f"/batches/{body['id']}")
    assert (read["status"], read["counts"]["completed"]) == ("settled", 2)
    assert get_json(settling_client, bob, f"/accounts/{receiver}")["balance"] == 500
    # The receiver's owner reads the payments, not the batch.
    payment = body["payments"][0]["id"]
    assert get_json(settling_client, bob, f"/payments/{payment}")["batch_id"] == body["id"]
    assert_problem(settling_client.get(f"/batches/{body['id']}", headers=bob.auth), 404)


def test_a_replay_answers_the_same_batch(client: TestClient, ada: Caller, db: Database) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    body = batch_of(transfer_body(sender, receiver, 10), transfer_body(sender, receiver, 20))
    first = accepted_batch(submit(client, ada, body, key="batch-1"))
    again = submit(client, ada, body, key="batch-1")
    assert accepted_batch(again) == first
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/batches/{first['id']}"
    assert batches_and_payments(db) == (1, 2)


def test_a_key_reused_with_another_body_is_refused(
    client: TestClient, ada: Caller, db: Database
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    accepted_batch(submit(client, ada, batch_of(transfer_body(sender, receiver, 10)), key="k"))
    for other in (
        batch_of(transfer_body(sender, receiver, 11)),
        batch_of(transfer_body(sender, receiver, 10), atomic=True),
        batch_of(transfer_body(sender, receiver, 10), transfer_body(sender, receiver, 10)),
    ):
        assert_problem(submit(client, ada, other, key="k"), 422, "idempotency_key_reused")
    assert batches_and_payments(db) == (1, 1)


def test_a_batch_key_is_the_callers_own(client: TestClient, ada: Caller, bob: Caller) -> None:
    """Scoped to the caller: another user's same key is another batch; a transfer's same
    key is another payment."""
    ada_sender, ada_receiver = funded_account(client, ada, 1_000), open_account(client, ada)
    bob_sender, bob_receiver = funded_account(client, bob, 1_000), open_account(client, bob)
    item = transfer_body(ada_sender, ada_receiver, 10)
    ours = accepted_batch(submit(client, ada, batch_of(item), key="same"))
    theirs = accepted_batch(
        submit(client, bob, batch_of(transfer_body(bob_sender, bob_receiver, 10)), key="same")
    )
    assert ours["id"] != theirs["id"]
    alone = transfer(client, ada, item, key="same")
    assert alone.status_code == 202, alone.text
    assert "Idempotent-Replayed" not in alone.headers
    assert alone.json()["id"] != ours["payments"][0]["id"]
    assert alone.json()["batch_id"] is None


def _items(sender: str, receiver: str, count: int) -> list[JSON]:
    return [transfer_body(sender, receiver, 1) for _ in range(count)]


BAD_BATCHES: list[tuple[str, Any, list[Any]]] = [
    ("no transfers", {"atomic": False, "transfers": []}, ["body", "transfers"]),
    ("1,001 transfers", "1001", ["body", "transfers"]),
    ("transfers missing", {"atomic": True}, ["body", "transfers"]),
    ("atomic not a bool", "atomic-text", ["body", "atomic"]),
    ("atomic a number", "atomic-number", ["body", "atomic"]),
    ("an unknown field in an item", "unknown-item-field", ["body", "transfers", 1, "fee"]),
    ("an unknown field in the batch", "unknown-field", ["body", "priority"]),
    ("an item's amount 0", "zero", ["body", "transfers", 2, "amount"]),
    ("an item's amount a string", "string", ["body", "transfers", 0, "amount"]),
    ("an item's amount over P2P_MAX_AMOUNT", "over-max", ["body", "transfers", 1, "amount"]),
    ("an item not an object", "not-object", ["body", "transfers", 1]),
]


@pytest.mark.parametrize(("case", "shape", "loc"), BAD_BATCHES, ids=[c[0] for c in BAD_BATCHES])
def test_a_bad_batch_is_refused_and_records_nothing(
    client: TestClient, ada: Caller, db: Database, case: str, shape: Any, loc: list[Any]
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    items = _items(sender, receiver, 3)
    body: Any = shape
    if shape == "1001":
        body = {"transfers": _items(sender, receiver, 1_001)}
    elif shape == "atomic-text":
        body = {"atomic": "true", "transfers": items}
    elif shape == "atomic-number":
        body = {"atomic": 1, "transfers": items}
    elif shape == "unknown-item-field":
        items[1]["fee"] = 1
        body = {"transfers": items}
    elif shape == "unknown-field":
        body = {"transfers": items, "priority": "high"}
    elif shape == "zero":
        items[2]["amount"] = 0
        body = {"transfers": items}
    elif shape == "string":
        items[0]["amount"] = "1"
        body = {"transfers": items}
    elif shape == "over-max":
        items[1]["amount"] = 10**12 + 1
        body = {"transfers": items}
    elif shape == "not-object":
        body = {"transfers": [items[0], 5, items[2]]}
    before, counted = recorded(db), batches_and_payments(db)
    problem = assert_problem(submit(client, ada, body), 422, "validation_error")
    assert loc in [item["loc"] for item in problem["errors"]], problem
    assert (recorded(db), batches_and_payments(db)) == (before, counted)


def test_a_refused_item_refuses_the_batch_naming_the_item(
    client: TestClient, ada: Caller, bob: Caller, db: Database
) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    dollars = open_account(client, ada, "USD")
    strangers = funded_account(client, bob, 1_000)
    good = transfer_body(sender, receiver, 1)
    cases = [
        (transfer_body(sender, sender, 1), 422, "same_account"),
        (transfer_body(sender, dollars, 1), 422, "currency_mismatch"),
        (transfer_body(strangers, receiver, 1), 404, "not_found"),
        (transfer_body(sender, "acc_nobody", 1), 404, "not_found"),
    ]
    before, counted = recorded(db), batches_and_payments(db)
    for bad, status, code in cases:
        problem = assert_problem(submit(client, ada, batch_of(good, good, bad, good)), status, code)
        assert problem["errors"] == [
            {"loc": ["body", "transfers", 2], "msg": problem["errors"][0]["msg"]}
        ]
        assert problem["detail"].startswith("transfers[2]: ")
    assert (recorded(db), batches_and_payments(db)) == (before, counted)


@pytest.mark.parametrize("settings", [{"max_amount": 2**62}], indirect=True)
def test_items_are_judged_as_if_submitted_one_after_the_other(
    client: TestClient, ada: Caller, db: Database
) -> None:
    """The sender's pending total grows item by item: the item that passes 2^63 - 1 is
    refused, as the same transfer submitted after the others would be."""
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    half = 2**62
    items = [transfer_body(sender, receiver, half), transfer_body(sender, receiver, half)]
    problem = assert_problem(
        client.post(
            "/payments/batch",
            json=batch_of(*items),
            headers=ada.keyed(new_key()),
        ),
        422,
        "balance_limit_exceeded",
    )
    assert problem["errors"][0]["loc"] == ["body", "transfers", 1]
    assert batches_and_payments(db) == (0, 0)


def test_a_batch_needs_an_idempotency_key(client: TestClient, ada: Caller, db: Database) -> None:
    sender = funded_account(client, ada, 1_000)
    body = batch_of(transfer_body(sender, open_account(client, ada), 1))
    response = client.post("/payments/batch", json=body, headers=ada.auth)
    assert_problem(response, 400, "idempotency_key_missing")
    assert batches_and_payments(db) == (0, 0)


def test_only_the_submitter_sees_a_batch(client: TestClient, ada: Caller, bob: Caller) -> None:
    sender = funded_account(client, ada, 1_000)
    body = accepted_batch(
        submit(client, ada, batch_of(*_items(sender, open_account(client, ada), 2)))
    )
    for path in (f"/batches/{body['id']}", f"/batches/{body['id']}/payments"):
        assert_problem(client.get(path, headers=bob.auth), 404, "not_found")
        assert_problem(client.get(path), 401, "unauthorized")
    assert_problem(client.get("/batches/bat_nothing", headers=ada.auth), 404, "not_found")


def test_a_batch_pages_its_payments_in_order(client: TestClient, ada: Caller) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    items = [transfer_body(sender, receiver, amount) for amount in range(1, 8)]
    body = accepted_batch(submit(client, ada, batch_of(*items)))
    path = f"/batches/{body['id']}/payments"
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = get_json(client, ada, path, **params)
        seen += [p["amount"] for p in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == list(range(1, 8))


def test_a_cursor_of_another_list_is_refused(client: TestClient, ada: Caller) -> None:
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    first = accepted_batch(submit(client, ada, batch_of(*_items(sender, receiver, 3))))
    second = accepted_batch(submit(client, ada, batch_of(*_items(sender, receiver, 3))))
    page = get_json(client, ada, f"/batches/{first['id']}/payments", limit=1)
    for cursor in (page["next_cursor"], "not-a-cursor"):
        response = client.get(
            f"/batches/{second['id']}/payments", params={"cursor": cursor}, headers=ada.auth
        )
        assert_problem(response, 422, "invalid_cursor")


def test_a_batch_of_manual_captures_is_authorized(
    settling_client: TestClient, settle: Settle
) -> None:
    ada = sign_up(settling_client, "Ada")
    sender = funded_account(settling_client, ada, 500)
    receiver = open_account(settling_client, ada)
    items = [transfer_body(sender, receiver, 100) | {"capture": "manual"} for _ in range(2)]
    body = accepted_batch(submit(settling_client, ada, batch_of(*items, atomic=True)))
    settle()
    read = get_json(settling_client, ada, f"/batches/{body['id']}")
    assert (read["status"], read["counts"]["authorized"]) == ("settled", 2)
    account = get_json(settling_client, ada, f"/accounts/{sender}")
    assert (account["held"], account["available"]) == (200, 300)


def test_a_deposit_does_not_count_as_a_batch(client: TestClient, ada: Caller, db: Database) -> None:
    """A batch is transfers only: a deposit body as an item is refused."""
    sender = funded_account(client, ada, 1_000)
    deposit(client, ada, sender, 5)
    problem = assert_problem(
        submit(client, ada, {"transfers": [{"amount": 5}]}), 422, "validation_error"
    )
    assert ["body", "transfers", 0, "from_account_id"] in [e["loc"] for e in problem["errors"]]
    assert batches_and_payments(db) == (0, 0)
