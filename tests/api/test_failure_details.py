"""A failure's detail is told in full to the owner of the account it is about; the other
party of the payment reads a detail that says no more than its ``failure_code``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.support import (
    JSON,
    Caller,
    Settle,
    accepted,
    assert_problem,
    deposit,
    funded_account,
    get_json,
    open_account,
    transfer,
    transfer_body,
)


def _freeze(client: TestClient, owner: Caller, account_id: str) -> None:
    response = client.patch(
        f"/accounts/{account_id}", json={"status": "frozen"}, headers=owner.auth
    )
    assert response.status_code == 200, response.text


def _failed(client: TestClient, settle: Settle, payer: Caller, body: JSON) -> str:
    payment_id: str = accepted(transfer(client, payer, body))["id"]
    settle()
    return payment_id


def _seen(client: TestClient, caller: Caller, payment_id: str) -> JSON:
    """The payment as the caller reads it, alone and in its list (which must agree)."""
    payment = get_json(client, caller, f"/payments/{payment_id}")
    listed = [p for p in get_json(client, caller, "/payments")["data"] if p["id"] == payment_id]
    assert listed == [payment]
    assert payment["status"] == "failed"
    return payment


def test_a_frozen_receiver_is_named_to_its_owner_only(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    client = settling_client
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, bob)
    _freeze(client, bob, receiver)

    payment_id = _failed(client, settle, ada, transfer_body(sender, receiver, 500))
    to_sender, to_receiver = _seen(client, ada, payment_id), _seen(client, bob, payment_id)

    assert to_sender["failure_code"] == to_receiver["failure_code"] == "account_frozen"
    assert to_receiver["failure_detail"] == f"account {receiver} is frozen"
    assert to_sender["failure_detail"] == "the receiving account is frozen"


def test_a_frozen_sender_is_named_to_its_owner_only(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    client = settling_client
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, bob)
    _freeze(client, ada, sender)

    payment_id = _failed(client, settle, ada, transfer_body(sender, receiver, 500))

    assert _seen(client, ada, payment_id)["failure_detail"] == f"account {sender} is frozen"
    assert _seen(client, bob, payment_id)["failure_detail"] == "the sending account is frozen"


def test_the_senders_lack_of_funds_is_told_in_full_to_the_sender_only(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    client = settling_client
    sender = funded_account(client, ada, 100)
    receiver = open_account(client, bob)

    payment_id = _failed(client, settle, ada, transfer_body(sender, receiver, 999))
    to_sender, to_receiver = _seen(client, ada, payment_id), _seen(client, bob, payment_id)

    assert to_sender["failure_code"] == to_receiver["failure_code"] == "insufficient_funds"
    assert to_sender["failure_detail"] == f"account {sender} lacks the funds for 999"
    assert sender not in to_receiver["failure_detail"]
    assert "999" not in to_receiver["failure_detail"]


@pytest.mark.parametrize("settings", [{"max_amount": 2**62}], indirect=True)
def test_a_full_receiver_is_named_to_its_owner_only(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    client = settling_client
    sender = funded_account(client, ada, 1_000)
    receiver = funded_account(client, bob, 2**62)
    deposit(client, bob, receiver, 2**62 - 1)

    payment_id = _failed(client, settle, ada, transfer_body(sender, receiver, 1))
    to_sender, to_receiver = _seen(client, ada, payment_id), _seen(client, bob, payment_id)

    assert to_sender["failure_code"] == "balance_limit_exceeded"
    assert to_receiver["failure_detail"] == f"account {receiver} cannot hold more"
    assert receiver not in to_sender["failure_detail"]


def test_a_user_on_both_sides_reads_the_whole_detail(
    settling_client: TestClient, settle: Settle, ada: Caller
) -> None:
    client = settling_client
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, ada)
    _freeze(client, ada, receiver)

    payment_id = _failed(client, settle, ada, transfer_body(sender, receiver, 500))

    assert _seen(client, ada, payment_id)["failure_detail"] == f"account {receiver} is frozen"


def test_a_currency_mismatch_names_no_currency_of_another_users_account(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(client, ada, 1_000, "EUR")
    theirs = open_account(client, bob, "USD")
    mine = open_account(client, ada, "USD")

    to_theirs = transfer(client, ada, transfer_body(sender, theirs, 5, "EUR"))
    to_mine = transfer(client, ada, transfer_body(sender, mine, 5, "EUR"))

    detail = assert_problem(to_theirs, 422, "currency_mismatch")["detail"]
    assert theirs not in detail
    assert "USD" not in detail
    assert assert_problem(to_mine, 422, "currency_mismatch")["detail"] == (
        f"account {mine} holds USD, not EUR"
    )
