"""G6: nobody acts for another. No key, no answer; another user's things are 404."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

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
    recorded,
    sign_up,
    transfer,
    transfer_body,
)


@dataclass(frozen=True)
class Holdings:
    """What Ada owns: two funded accounts and a payment between them."""

    ada: Caller
    account: str
    other_account: str
    payment: str


@pytest.fixture
def holdings(client: TestClient, ada: Caller) -> Holdings:
    account = funded_account(client, ada, 1_000)
    other_account = open_account(client, ada)
    payment = accepted(transfer(client, ada, transfer_body(account, other_account, 100)))["id"]
    return Holdings(ada, account, other_account, payment)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body: JSON | None = None

    def url(self, held: Holdings) -> str:
        return self.path.format(account=held.account, payment=held.payment)

    def json(self, held: Holdings) -> JSON | None:
        if self.body is None:
            return None
        return {
            name: value.format(account=held.account, other=held.other_account)
            if isinstance(value, str)
            else value
            for name, value in self.body.items()
        }


AUTHENTICATED = [
    Endpoint("POST", "/accounts", {"currency": "EUR"}),
    Endpoint("GET", "/accounts"),
    Endpoint("GET", "/accounts/{account}"),
    Endpoint("PATCH", "/accounts/{account}", {"status": "frozen"}),
    Endpoint("POST", "/accounts/{account}/deposits", {"amount": 100}),
    Endpoint("GET", "/accounts/{account}/ledger"),
    Endpoint(
        "POST",
        "/payments/transfer",
        {
            "from_account_id": "{account}",
            "to_account_id": "{other}",
            "amount": 5,
            "currency": "EUR",
        },
    ),
    Endpoint("GET", "/payments"),
    Endpoint("GET", "/payments/{payment}"),
]
WITH_BODY = [e for e in AUTHENTICATED if e.body is not None]


def _ids(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"


def _wrong_secret(key: str) -> str:
    return key[:-1] + ("0" if key[-1] != "0" else "1")


def _authorization(kind: str, api_key: str) -> str | None:
    """The Authorization header of each way to get it wrong; ``None`` sends none."""
    match kind:
        case "none":
            return None
        case "empty":
            return ""
        case "bearer_alone":
            return "Bearer"
        case "bearer_blank":
            return "Bearer    "
        case "garbage":
            return "Bearer not-a-key"
        case "unknown_key":
            return "Bearer p2p_" + "0" * 64
        case "wrong_secret":
            return f"Bearer {_wrong_secret(api_key)}"
        case "uppercase_key":
            return f"Bearer {api_key.upper()}"
        case "basic_scheme":
            return f"Basic {api_key}"
        case "no_scheme":
            return api_key
        case "latin1":
            return "Bearer p2p_\u00e9\u00e9"
    raise AssertionError(kind)


CREDENTIALS = [
    "none",
    "empty",
    "bearer_alone",
    "bearer_blank",
    "garbage",
    "unknown_key",
    "wrong_secret",
    "uppercase_key",
    "basic_scheme",
    "no_scheme",
    "latin1",
]


def _headers(kind: str, api_key: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"Idempotency-Key", new_key().encode())]
    authorization = _authorization(kind, api_key)
    if authorization is not None:
        headers.append((b"Authorization", authorization.encode("latin-1")))
    return headers


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("endpoint", AUTHENTICATED, ids=_ids)
def test_an_endpoint_without_a_valid_key_answers_401(
    client: TestClient, db: Database, holdings: Holdings, endpoint: Endpoint, credential: str
) -> None:
    before = recorded(db)

    response = client.request(
        endpoint.method,
        endpoint.url(holdings),
        json=endpoint.json(holdings),
        headers=_headers(credential, holdings.ada.api_key),
    )

    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert holdings.account not in body["detail"]
    assert recorded(db) == before


@pytest.mark.parametrize("content", [b"{", b'{"amount": ', b"\xff\xfe", b"[]"])
@pytest.mark.parametrize("credential", ["none", "wrong_secret"])
@pytest.mark.parametrize("endpoint", WITH_BODY, ids=_ids)
def test_authentication_comes_before_the_body_is_judged(
    client: TestClient,
    db: Database,
    holdings: Holdings,
    endpoint: Endpoint,
    credential: str,
    content: bytes,
) -> None:
    before = recorded(db)

    response = client.request(
        endpoint.method,
        endpoint.url(holdings),
        content=content,
        headers=[
            *_headers(credential, holdings.ada.api_key),
            (b"Content-Type", b"application/json"),
        ],
    )

    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert recorded(db) == before


def test_an_unknown_route_without_a_key_answers_401(client: TestClient) -> None:
    response = client.get("/no/such/route")

    assert_problem(response, 401, "unauthorized")


# What another user may try on Ada's account, and the answer a missing account gets.
AGAINST_ACCOUNT = [
    Endpoint("GET", "/accounts/{account}"),
    Endpoint("PATCH", "/accounts/{account}", {"status": "frozen"}),
    Endpoint("POST", "/accounts/{account}/deposits", {"amount": 100}),
    Endpoint("GET", "/accounts/{account}/ledger"),
    Endpoint("GET", "/payments?account_id={account}"),
    Endpoint(
        "POST",
        "/payments/transfer",
        {
            "from_account_id": "{account}",
            "to_account_id": "{other}",
            "amount": 5,
            "currency": "EUR",
        },
    ),
]


def _without(text: str, account_id: str) -> str:
    return text.replace(account_id, "<account>")


@pytest.mark.parametrize("endpoint", AGAINST_ACCOUNT, ids=_ids)
def test_another_users_account_answers_404_like_a_missing_one(
    client: TestClient, db: Database, holdings: Holdings, bob: Caller, endpoint: Endpoint
) -> None:
    bobs_account = open_account(client, bob)
    missing = "acc_" + secrets.token_hex(16)
    before = recorded(db)

    def attempt(account_id: str) -> str:
        held = Holdings(holdings.ada, account_id, bobs_account, holdings.payment)
        response = client.request(
            endpoint.method,
            endpoint.url(held),
            json=endpoint.json(held),
            headers=bob.keyed(new_key()),
        )
        assert_problem(response, 404, "not_found")
        return _without(response.text, account_id)

    answer = attempt(holdings.account)

    assert answer == attempt(missing)
    for secret in (holdings.ada.user_id, holdings.ada.email, holdings.other_account, "1000"):
        assert secret not in answer
    assert recorded(db) == before
    account = get_json(client, holdings.ada, f"/accounts/{holdings.account}")
    assert (account["status"], account["balance"]) == ("active", 1_000)


@pytest.mark.parametrize("wait", [None, 5])
def test_another_users_payment_answers_404(
    client: TestClient, holdings: Holdings, bob: Caller, wait: int | None
) -> None:
    params = {} if wait is None else {"wait": wait}

    response = client.get(f"/payments/{holdings.payment}", params=params, headers=bob.auth)
    missing = client.get(f"/payments/pay_{secrets.token_hex(16)}", params=params, headers=bob.auth)

    body = assert_problem(response, 404, "not_found")
    assert_problem(missing, 404, "not_found")
    assert re.sub(r"pay_\w+", "<id>", response.text) == re.sub(r"pay_\w+", "<id>", missing.text)
    assert holdings.account not in response.text
    assert body["detail"]


def test_the_receivers_owner_sees_a_payment_sent_to_them(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    carol = sign_up(client, "Carol")
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, bob)
    payment = accepted(transfer(client, ada, transfer_body(sender, receiver, 250)))

    seen = get_json(client, bob, f"/payments/{payment['id']}")
    listed = get_json(client, bob, "/payments")["data"]
    by_account = get_json(client, bob, "/payments", account_id=receiver)["data"]

    assert seen == payment
    assert listed == by_account == [payment]
    assert_problem(client.get(f"/payments/{payment['id']}", headers=carol.auth), 404, "not_found")
    assert get_json(client, carol, "/payments")["data"] == []
    assert_problem(
        client.get("/payments", params={"account_id": sender}, headers=bob.auth), 404, "not_found"
    )


def test_lists_show_only_the_callers_own(
    client: TestClient, holdings: Holdings, bob: Caller
) -> None:
    bobs_account = open_account(client, bob)

    accounts = get_json(client, bob, "/accounts")["data"]
    payments = get_json(client, bob, "/payments")["data"]

    assert [a["id"] for a in accounts] == [bobs_account]
    assert payments == []


def test_a_currency_mismatch_does_not_reveal_another_users_currency(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(client, ada, 1_000)
    bobs_account = open_account(client, bob, "CHF")

    response = transfer(client, ada, transfer_body(sender, bobs_account, 100))

    assert_problem(response, 422, "currency_mismatch")
    assert "CHF" not in response.text


def test_a_failed_payment_does_not_show_the_senders_balance_to_the_receiver(
    settling_client: TestClient, settle: Settle, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(settling_client, ada, 4_242)
    receiver = open_account(settling_client, bob)
    payment_id = accepted(transfer(settling_client, ada, transfer_body(sender, receiver, 9_999)))[
        "id"
    ]

    settle()

    seen = get_json(settling_client, bob, f"/payments/{payment_id}")

    assert seen["status"] == "failed"
    assert seen["failure_code"] == "insufficient_funds"
    assert "4242" not in str(seen)
