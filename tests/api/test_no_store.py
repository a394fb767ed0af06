"""No cache may keep an answer: API keys are shown once, and balances change."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.support import Caller, open_account


def test_a_sign_up_answer_holding_the_api_key_is_no_store(client: TestClient) -> None:
    response = client.post("/users", json={"name": "Ada", "email": "ada@example.com"})

    assert response.status_code == 201, response.text
    assert "api_key" in response.json()
    assert response.headers["Cache-Control"] == "no-store"


def test_a_new_api_key_answer_is_no_store(client: TestClient, ada: Caller) -> None:
    response = client.post("/users/me/api-keys", headers=ada.auth)

    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"


def test_every_kind_of_answer_is_no_store(client: TestClient, ada: Caller) -> None:
    account_id = open_account(client, ada)
    answers = [
        client.get("/accounts", headers=ada.auth),
        client.get(f"/accounts/{account_id}", headers=ada.auth),
        client.get("/users/me/api-keys", headers=ada.auth),
        client.get("/payments", headers=ada.auth),
        client.get("/accounts"),  # 401
        client.get("/accounts/acc_nobody", headers=ada.auth),  # 404
        client.post("/users", json={"name": "Ada"}),  # 422
        client.get("/healthz"),
    ]

    assert [a.headers.get("Cache-Control") for a in answers] == ["no-store"] * len(answers)
