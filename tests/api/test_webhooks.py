"""Webhook endpoints through the API: the secret shown once, management, the cap, another
user's endpoints, and every bad input refused without recording anything. URLs are
checked with the defaults here (https only, public addresses only)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.store import Database
from tests.api.support import Caller, assert_problem, get_json, sign_up

JSON = dict[str, Any]
# A public address, so that saving needs no lookup.
PUBLIC_URL = "https://93.184.215.14/hooks"


def create(client: TestClient, caller: Caller, **body: Any) -> JSON:
    response = client.post(
        "/webhook-endpoints", json={"url": PUBLIC_URL, **body}, headers=caller.auth
    )
    assert response.status_code == 201, response.text
    created: JSON = response.json()
    return created


def endpoint_rows(db: Database) -> int:
    count: int = db.connection().execute("SELECT count(*) FROM webhook_endpoints").fetchone()[0]
    return count


def test_a_new_endpoint_shows_its_secret_once(client: TestClient, ada: Caller) -> None:
    response = client.post(
        "/webhook-endpoints",
        json={"url": PUBLIC_URL, "event_types": ["payment.completed"], "description": "books"},
        headers=ada.auth,
    )

    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    created = response.json()
    assert created["id"].startswith("whe_")
    assert created["url"] == PUBLIC_URL
    assert created["event_types"] == ["payment.completed"]
    assert created["description"] == "books"
    assert created["status"] == "enabled"
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"), validate=True)) >= 24
    shown = get_json(client, ada, f"/webhook-endpoints/{created['id']}")
    assert "secret" not in shown
    assert shown == {key: value for key, value in created.items() if key != "secret"}
    listed = get_json(client, ada, "/webhook-endpoints")
    assert listed == {"data": [shown], "has_more": False, "next_cursor": None}


def test_an_endpoint_without_types_takes_every_type(client: TestClient, ada: Caller) -> None:
    assert create(client, ada)["event_types"] is None


def test_endpoints_are_listed_newest_first_by_pages(client: TestClient, ada: Caller) -> None:
    ids = [create(client, ada)["id"] for _ in range(3)]

    first = get_json(client, ada, "/webhook-endpoints", limit=2)
    second = get_json(client, ada, "/webhook-endpoints", limit=2, cursor=first["next_cursor"])

    assert [e["id"] for e in first["data"] + second["data"]] == ids[::-1]
    assert first["has_more"] is True
    assert second["has_more"] is False


def test_patch_changes_the_url_the_types_and_the_status(client: TestClient, ada: Caller) -> None:
    endpoint = create(client, ada, event_types=["payment.completed"])
    path = f"/webhook-endpoints/{endpoint['id']}"

    changed = client.patch(
        path,
        json={"url": "https://93.184.215.15/other", "status": "disabled"},
        headers=ada.auth,
    ).json()
    every = client.patch(path, json={"event_types": None}, headers=ada.auth).json()
    some = client.patch(
        path, json={"event_types": ["deposit.created", "payment.failed"]}, headers=ada.auth
    ).json()
    unchanged = client.patch(path, json={}, headers=ada.auth).json()

    assert changed["url"] == "https://93.184.215.15/other"
    assert changed["status"] == "disabled"
    assert changed["event_types"] == ["payment.completed"]
    assert every["event_types"] is None
    assert some["event_types"] == ["deposit.created", "payment.failed"]
    assert unchanged == some


def test_a_deleted_endpoint_is_gone(client: TestClient, ada: Caller, db: Database) -> None:
    endpoint = create(client, ada)

    response = client.delete(f"/webhook-endpoints/{endpoint['id']}", headers=ada.auth)

    assert response.status_code == 204
    assert_problem(client.get(f"/webhook-endpoints/{endpoint['id']}", headers=ada.auth), 404)
    assert endpoint_rows(db) == 0


def test_rotating_gives_a_new_secret_shown_once(client: TestClient, ada: Caller) -> None:
    endpoint = create(client, ada)

    response = client.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=ada.auth)

    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    secret = response.json()["secret"]
    assert secret.startswith("whsec_")
    assert secret != endpoint["secret"]


@pytest.mark.parametrize("settings", [{"max_webhook_endpoints": 3}], indirect=True)
def test_one_endpoint_past_the_cap_is_refused(
    client: TestClient, ada: Caller, db: Database
) -> None:
    for _ in range(3):
        create(client, ada)

    response = client.post("/webhook-endpoints", json={"url": PUBLIC_URL}, headers=ada.auth)

    assert_problem(response, 409, "too_many_webhook_endpoints")
    assert endpoint_rows(db) == 3
    create(client, sign_up(client, "Bob"))  # the cap is per user


def test_another_users_endpoint_is_not_found_by_any_route(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    endpoint_id = create(client, ada)["id"]
    path = f"/webhook-endpoints/{endpoint_id}"

    answers = [
        client.get(path, headers=bob.auth),
        client.patch(path, json={"status": "disabled"}, headers=bob.auth),
        client.delete(path, headers=bob.auth),
        client.post(f"{path}/rotate-secret", headers=bob.auth),
        client.get(f"{path}/deliveries", headers=bob.auth),
        client.post(f"{path}/deliveries/whd_0/retry", headers=bob.auth),
    ]

    for answer in answers:
        assert_problem(answer, 404, "not_found")
    assert get_json(client, bob, "/webhook-endpoints")["data"] == []
    assert get_json(client, ada, path)["status"] == "enabled"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://127.8.9.10/hooks",
        "https://10.1.2.3/hooks",
        "https://172.16.0.1/hooks",
        "https://192.168.1.1/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://[fe80::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://224.0.0.1/hooks",
        "https://0.0.0.0/hooks",
        "https://240.0.0.1/hooks",
        "https://100.64.0.1/hooks",
        "https://localhost/hooks",
        "https://2130706433/hooks",
        "http://93.184.215.14/hooks",
        "ftp://93.184.215.14/hooks",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://user:password@93.184.215.14/hooks",
        "https://user@93.184.215.14/hooks",
        "https:///hooks",
        "https://93.184.215.14:0/hooks",
        "https://93.184.215.14:99999/hooks",
        "https://93.184.215.14/a b",
        "https://93.184.215.14/hooks#part",
        "https://name-that-does-not-resolve.invalid/hooks",
        "hooks",
    ],
)
def test_a_url_webhooks_may_not_call_is_refused_and_nothing_is_recorded(
    client: TestClient, ada: Caller, db: Database, url: str
) -> None:
    response = client.post("/webhook-endpoints", json={"url": url}, headers=ada.auth)

    assert_problem(response, 422, "webhook_url_not_allowed")
    assert endpoint_rows(db) == 0


def test_patching_to_a_url_that_may_not_be_called_changes_nothing(
    client: TestClient, ada: Caller
) -> None:
    endpoint = create(client, ada)
    path = f"/webhook-endpoints/{endpoint['id']}"

    response = client.patch(
        path, json={"url": "https://10.0.0.1/x", "status": "disabled"}, headers=ada.auth
    )

    assert_problem(response, 422, "webhook_url_not_allowed")
    shown = get_json(client, ada, path)
    assert (shown["url"], shown["status"]) == (PUBLIC_URL, "enabled")


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://93.184.215.14/" + "a" * 10_000},
        {"url": ""},
        {"url": None},
        {"url": 42},
        {},
        {"url": PUBLIC_URL, "event_types": ["payment.exploded"]},
        {"url": PUBLIC_URL, "event_types": []},
        {"url": PUBLIC_URL, "event_types": "payment.completed"},
        {"url": PUBLIC_URL, "secret": "whsec_mine"},
        {"url": PUBLIC_URL, "status": "disabled"},
        {"url": PUBLIC_URL, "description": "x" * 501},
    ],
)
def test_a_malformed_endpoint_is_refused_and_nothing_is_recorded(
    client: TestClient, ada: Caller, db: Database, body: JSON
) -> None:
    response = client.post("/webhook-endpoints", json=body, headers=ada.auth)

    assert_problem(response, 422, "validation_error")
    assert endpoint_rows(db) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"status": "paused"},
        {"event_types": ["nope"]},
        {"url": "https://93.184.215.14/" + "a" * 10_000},
        {"secret": "whsec_mine"},
    ],
)
def test_a_malformed_patch_is_refused_and_changes_nothing(
    client: TestClient, ada: Caller, body: JSON
) -> None:
    endpoint = create(client, ada)
    path = f"/webhook-endpoints/{endpoint['id']}"

    assert_problem(client.patch(path, json=body, headers=ada.auth), 422, "validation_error")
    shown = get_json(client, ada, path)
    assert shown == {key: value for key, value in endpoint.items() if key != "secret"}


def test_endpoints_need_an_api_key(client: TestClient) -> None:
    assert_problem(client.get("/webhook-endpoints"), 401, "unauthorized")
    assert_problem(client.post("/webhook-endpoints", json={"url": PUBLIC_URL}), 401)
