"""Lists: newest first, keyset-paginated with ``next_cursor``, filtered, the caller's own."""

from __future__ import annotations

import base64
from typing import Any

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


def _walk(client: TestClient, caller: Caller, path: str, limit: int, **params: Any) -> list[JSON]:
    """Every page of a list, checking the paging fields on the way."""
    pages: list[JSON] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit} | ({} if cursor is None else {"cursor": cursor})
        page = get_json(client, caller, path, **query)
        pages.append(page)
        assert len(page["data"]) <= limit
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return pages
        assert len(page["data"]) == limit
        assert isinstance(page["next_cursor"], str)
        assert page["next_cursor"]
        cursor = page["next_cursor"]


def _ids(pages: list[JSON]) -> list[str]:
    return [item["id"] for page in pages for item in page["data"]]


def test_payments_page_through_newest_first(client: TestClient, ada: Caller) -> None:
    sender = funded_account(client, ada, 10_000)
    receiver = open_account(client, ada)
    made = [
        accepted(transfer(client, ada, transfer_body(sender, receiver, 100 + n)))["id"]
        for n in range(7)
    ]

    pages = _walk(client, ada, "/payments", limit=3)

    assert [len(page["data"]) for page in pages] == [3, 3, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert _ids(pages) == made[::-1]


def test_a_page_is_as_long_as_asked(client: TestClient, ada: Caller) -> None:
    sender = funded_account(client, ada, 10_000)
    receiver = open_account(client, ada)
    for n in range(3):
        accepted(transfer(client, ada, transfer_body(sender, receiver, 100 + n)))

    exact = get_json(client, ada, "/payments", limit=3)
    wide = get_json(client, ada, "/payments", limit=100)

    assert (len(exact["data"]), exact["has_more"], exact["next_cursor"]) == (3, False, None)
    assert wide["data"] == exact["data"]


def test_accounts_page_through_newest_first(client: TestClient, ada: Caller, bob: Caller) -> None:
    made = [open_account(client, ada, currency) for currency in ("EUR", "USD", "GBP", "JPY", "CHF")]
    open_account(client, bob)

    pages = _walk(client, ada, "/accounts", limit=2)

    assert [len(page["data"]) for page in pages] == [2, 2, 1]
    assert _ids(pages) == made[::-1]
    assert {a["user_id"] for page in pages for a in page["data"]} == {ada.user_id}


def test_the_ledger_pages_through_newest_first(client: TestClient, ada: Caller) -> None:
    account_id = open_account(client, ada)
    made = [deposit(client, ada, account_id, amount)["id"] for amount in (1, 2, 3, 4, 5)]

    pages = _walk(client, ada, f"/accounts/{account_id}/ledger", limit=2)

    entries = [entry for page in pages for entry in page["data"]]
    assert [len(page["data"]) for page in pages] == [2, 2, 1]
    assert [e["deposit_id"] for e in entries] == made[::-1]
    assert [e["balance_after"] for e in entries] == [15, 10, 6, 3, 1]


def test_a_list_is_50_long_unless_asked(client: TestClient, ada: Caller) -> None:
    account_id = open_account(client, ada)
    for _ in range(51):
        deposit(client, ada, account_id, 1)

    page = get_json(client, ada, f"/accounts/{account_id}/ledger")

    assert len(page["data"]) == 50
    assert page["has_more"] is True
    rest = get_json(client, ada, f"/accounts/{account_id}/ledger", cursor=page["next_cursor"])
    assert [e["balance_after"] for e in rest["data"]] == [1]


def test_payments_filter_by_status_and_by_account(
    client: TestClient,
    settling_client: TestClient,
    settle: Settle,
    ada: Caller,
    bob: Caller,
) -> None:
    rich = funded_account(client, ada, 1_000)
    poor = funded_account(client, ada, 10)
    bobs = open_account(client, bob)
    completed = accepted(transfer(settling_client, ada, transfer_body(rich, bobs, 500)))["id"]
    failed = accepted(transfer(settling_client, ada, transfer_body(poor, bobs, 500)))["id"]
    settle()
    # Through the API whose queue nobody consumes: this one stays pending.
    returned = accepted(transfer(client, bob, transfer_body(bobs, poor, 100)))["id"]

    def listed(caller: Caller, **params: str) -> list[str]:
        return _ids(_walk(client, caller, "/payments", limit=1, **params))

    assert listed(ada) == [returned, failed, completed]
    assert listed(ada, status="completed") == [completed]
    assert listed(ada, status="failed") == [failed]
    assert listed(ada, status="pending") == [returned]
    assert listed(ada, account_id=rich) == [completed]
    assert listed(ada, account_id=poor) == [returned, failed]
    assert listed(ada, account_id=poor, status="pending") == [returned]
    assert listed(bob, account_id=bobs) == [returned, failed, completed]
    assert listed(bob, status="failed") == [failed]


@pytest.mark.parametrize("settings", [{"max_amount": 2**62}], indirect=True, ids=["max=2^62"])
def test_a_transfer_that_would_overflow_pending_out_is_refused_and_reads_still_answer(
    client: TestClient, ada: Caller
) -> None:
    sender = open_account(client, ada)
    receiver = open_account(client, ada)
    accepted(transfer(client, ada, transfer_body(sender, receiver, 2**62)))
    accepted(transfer(client, ada, transfer_body(sender, receiver, 2**62 - 1)))

    refused = transfer(client, ada, transfer_body(sender, receiver, 1))
    one = client.get(f"/accounts/{sender}", headers=ada.auth)
    every = client.get("/accounts", headers=ada.auth)

    assert_problem(refused, 422, "balance_limit_exceeded")
    assert one.status_code == 200, one.text
    assert one.json()["pending_out"] == 2**63 - 1
    assert every.status_code == 200, every.text
    assert {a["id"]: a["pending_out"] for a in every.json()["data"]}[sender] == 2**63 - 1


def test_a_cursor_tells_nothing_of_other_users_and_serves_only_its_caller(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    """A cursor used to decode to the service-wide sequence number of its row: anyone
    could watch how many payments everybody made. Now it names the page's last row."""
    mine = [open_account(client, ada) for _ in range(2)]
    for _ in range(5):
        open_account(client, bob)
    mine.append(open_account(client, ada))

    page = get_json(client, ada, "/accounts", limit=1)
    cursor = page["next_cursor"]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    bobs_view = client.get("/accounts", params={"cursor": cursor}, headers=bob.auth)

    assert page["data"][0]["id"] == mine[-1]
    assert mine[-1] in decoded
    assert len(decoded.replace(mine[-1], "")) <= 3  # a version tag, no number
    assert_problem(bobs_view, 422, "invalid_cursor")
    assert _ids(_walk(client, ada, "/accounts", limit=1)) == mine[::-1]
