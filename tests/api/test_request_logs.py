"""X-Request-ID on every answer, one access line per request with its fields, no secret logged."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from shared import payments
from tests.api.support import (
    Caller,
    Settle,
    accepted,
    deposit,
    funded_account,
    new_key,
    open_account,
    sign_up,
    transfer,
    transfer_body,
)
from tests.log_capture import Captured, Line, capture_logs

GENERATED = re.compile(r"[0-9a-f]{32}")
FAKE_KEY = "p2p_" + "ab" * 32


def _wrong(api_key: str) -> str:
    """The key with its last hex digit changed: well-formed, and refused."""
    return api_key[:-1] + ("1" if api_key.endswith("0") else "0")


def _access_lines(captured: Captured) -> list[Line]:
    return [line for line in captured.lines() if line["logger"] == "p2p.access"]


def test_a_sane_request_id_from_the_client_is_echoed(client: TestClient, ada: Caller) -> None:
    response = client.get("/accounts", headers={**ada.auth, "X-Request-ID": "trace-7.a:b_c-d"})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "trace-7.a:b_c-d"


def test_a_request_without_an_id_gets_a_fresh_one(client: TestClient, ada: Caller) -> None:
    first = client.get("/accounts", headers=ada.auth).headers["X-Request-ID"]
    second = client.get("/accounts", headers=ada.auth).headers["X-Request-ID"]

    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    "given", ["", "has space", 'quote"d', "line\\break", "x" * 129, "{json}", "a,b"]
)
def test_a_request_id_that_is_not_sane_is_replaced(
    client: TestClient, ada: Caller, given: str
) -> None:
    response = client.get("/accounts", headers={**ada.auth, "X-Request-ID": given})

    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_the_longest_sane_request_id_is_kept(client: TestClient, ada: Caller) -> None:
    given = "x" * 128
    response = client.get("/accounts", headers={**ada.auth, "X-Request-ID": given})

    assert response.headers["X-Request-ID"] == given


def test_answers_made_by_middleware_carry_the_request_id_too(
    client: TestClient, ada: Caller
) -> None:
    rid = {"X-Request-ID": "rid-1"}
    answers = {
        "no key": client.get("/accounts", headers=rid),
        "bad key": client.get("/accounts", headers={**rid, "Authorization": f"Bearer {FAKE_KEY}"}),
        "too large": client.post(
            "/accounts",
            content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
            headers={**rid, **ada.auth, "Content-Type": "application/json"},
        ),
        "not json": client.post("/accounts", content=b"currency=EUR", headers={**rid, **ada.auth}),
        "no route": client.get("/nowhere", headers={**rid, **ada.auth}),
    }

    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "no key": 401,
        "bad key": 401,
        "too large": 413,
        "not json": 415,
        "no route": 404,
    }
    for response in answers.values():
        assert response.headers["X-Request-ID"] == "rid-1"
        assert response.headers.get_list("X-Request-ID") == ["rid-1"]


def test_a_server_error_carries_the_request_id_and_its_lines_too(
    client: TestClient, ada: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(payments, "get_payment", broken)
    with capture_logs() as captured:
        response = client.get("/payments/pay_x", headers={**ada.auth, "X-Request-ID": "rid-500"})

    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "rid-500"
    crash = [line for line in captured.lines() if "exception" in line]
    assert crash
    assert all(line["request_id"] == "rid-500" for line in crash)
    [access] = _access_lines(captured)
    assert (access["status"], access["request_id"]) == (500, "rid-500")


def test_one_access_line_per_request_with_route_status_duration_and_ids(
    client: TestClient, ada: Caller
) -> None:
    account_id = open_account(client, ada)
    with capture_logs() as captured:
        response = client.get(
            f"/accounts/{account_id}", headers={**ada.auth, "X-Request-ID": "rid-get"}
        )
        client.get("/accounts", headers={"X-Request-ID": "rid-401"})

    assert response.status_code == 200
    ok, refused = _access_lines(captured)
    assert ok["message"] == "request"
    assert ok["level"] == "info"
    assert ok["method"] == "GET"
    assert ok["route"] == "/accounts/{account_id}"
    assert ok["path"] == f"/accounts/{account_id}"
    assert ok["status"] == 200
    assert isinstance(ok["duration_ms"], float)
    assert ok["duration_ms"] >= 0
    assert ok["request_id"] == "rid-get"
    assert ok["user_id"] == ada.user_id
    assert (refused["status"], refused["request_id"]) == (401, "rid-401")
    assert refused["route"] is None
    assert "user_id" not in refused


def test_the_lines_of_a_submit_carry_its_request_user_and_payment_ids(
    settling_client: TestClient, settle: Settle
) -> None:
    client = settling_client
    ada, bob = sign_up(client, "Ada"), sign_up(client, "Bob")
    sender = funded_account(client, ada, 10_000)
    receiver = open_account(client, bob)
    body = transfer_body(sender, receiver, 2_500)
    key = new_key()

    with capture_logs() as captured:
        response = client.post(
            "/payments/transfer",
            json=body,
            headers={**ada.keyed(key), "X-Request-ID": "rid-submit"},
        )
        payment = accepted(response)
        replay = client.post(
            "/payments/transfer",
            json=body,
            headers={**ada.keyed(key), "X-Request-ID": "rid-replay"},
        )
        settle()

    submit, again = _access_lines(captured)
    assert submit["route"] == "/payments/transfer"
    assert submit["status"] == 202
    assert submit["request_id"] == "rid-submit"
    assert submit["user_id"] == ada.user_id
    assert submit["payment_id"] == payment["id"]
    assert "idempotent_replayed" not in submit
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert again["request_id"] == "rid-replay"
    assert again["payment_id"] == payment["id"]
    assert again["idempotent_replayed"] == "true"
    [settled] = captured.with_message("payment settled")
    assert settled["payment_id"] == payment["id"]
    assert settled["status"] == "completed"
    assert "request_id" not in settled


def test_reading_a_payment_and_making_a_deposit_log_their_ids(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    sender = funded_account(client, ada, 100)
    payment = accepted(transfer(client, ada, transfer_body(sender, open_account(client, bob), 1)))

    with capture_logs() as captured:
        client.get(f"/payments/{payment['id']}", headers=ada.auth)
        made = deposit(client, ada, sender, 5)
        client.get("/payments/pay_nobody_has", headers=ada.auth)

    read, deposited, missing = _access_lines(captured)
    assert (read["route"], read["payment_id"]) == ("/payments/{payment_id}", payment["id"])
    assert (deposited["status"], deposited["deposit_id"]) == (201, made["id"])
    assert missing["status"] == 404
    assert "payment_id" not in missing


def test_nothing_is_logged_below_the_level(client: TestClient, ada: Caller) -> None:
    with capture_logs(logging.WARNING) as captured:
        client.get("/accounts", headers=ada.auth)
        client.get("/accounts")

    assert captured.text() == ""


def test_no_api_key_or_authorization_value_ever_reaches_a_log_line(
    settling_client: TestClient, settle: Settle
) -> None:
    client = settling_client
    with capture_logs(logging.DEBUG) as captured:
        ada, bob = sign_up(client, "Ada"), sign_up(client, "Bob")
        sender = funded_account(client, ada, 1_000)
        receiver = open_account(client, bob)
        payment = accepted(transfer(client, ada, transfer_body(sender, receiver, 10)))
        settle()
        assert client.get(f"/payments/{payment['id']}", headers=ada.auth).status_code == 200
        for authorization in (
            f"Bearer {FAKE_KEY}",
            f"Bearer {_wrong(ada.api_key)}",
            f"Basic {ada.api_key}",
            "Bearer not-a-key-at-all",
        ):
            refused = client.get("/accounts", headers={"Authorization": authorization})
            assert refused.status_code == 401

    secrets = [ada.api_key, bob.api_key, FAKE_KEY, _wrong(ada.api_key), "not-a-key-at-all"]
    assert _access_lines(captured), "the requests were logged"
    for text in (captured.text(), captured.raw_text()):
        for secret in secrets:
            assert secret not in text
        assert "Bearer" not in text
        assert "Basic" not in text
