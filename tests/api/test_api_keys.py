"""API keys a user can rotate: create a second, revoke the first; a revoked key is
refused at once, also by another API process on the same database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shared.settings import Settings
from shared.store import Database
from shared.store.opening import open_store
from shared.users import KEY_PATTERN
from tests.api.support import (
    JSON,
    Caller,
    assert_problem,
    get_json,
    idle_queue,
    make_settings,
    serve,
    sign_up,
)

KEYS = "/users/me/api-keys"


def _new_key(client: TestClient, caller: Caller) -> tuple[Caller, JSON]:
    response = client.post(KEYS, headers=caller.auth)
    assert response.status_code == 201, response.text
    body: JSON = response.json()
    return Caller(caller.user_id, caller.name, caller.email, body["api_key"]), body


def _key_id(caller: Caller) -> str:
    return f"key_{caller.api_key[4:20]}"


def _keys(client: TestClient, caller: Caller) -> list[JSON]:
    data: list[JSON] = get_json(client, caller, KEYS)["data"]
    return data


def _works(client: TestClient, caller: Caller) -> bool:
    status = client.get("/accounts", headers=caller.auth).status_code
    assert status in (200, 401)
    return status == 200


def test_a_new_key_is_shown_once_with_its_id_and_works_beside_the_first(
    client: TestClient, ada: Caller
) -> None:
    second, body = _new_key(client, ada)

    assert set(body) == {"id", "api_key", "created_at", "signing"}
    assert body["signing"] == "none"
    assert re.fullmatch(KEY_PATTERN, second.api_key)
    assert body["id"] == _key_id(second)
    assert second.api_key != ada.api_key
    assert _works(client, second)
    assert _works(client, ada)


def test_the_list_shows_the_callers_keys_newest_first_never_a_secret(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    second, _ = _new_key(client, ada)

    keys = _keys(client, ada)

    assert [k["id"] for k in keys] == [_key_id(second), _key_id(ada)]
    for key in keys:
        assert set(key) == {"id", "created_at", "revoked_at", "signing"}
        assert key["revoked_at"] is None
    assert [k["id"] for k in _keys(client, bob)] == [_key_id(bob)]


def test_the_list_is_paginated_like_every_list(client: TestClient, ada: Caller) -> None:
    for _ in range(3):
        _new_key(client, ada)

    first = get_json(client, ada, KEYS, limit=2)
    rest = get_json(client, ada, KEYS, limit=2, cursor=first["next_cursor"])

    assert first["has_more"] is True
    assert rest["has_more"] is False
    assert len({k["id"] for k in first["data"] + rest["data"]}) == 4


def test_rotation_revokes_the_first_key_which_is_refused_at_once(
    client: TestClient, ada: Caller
) -> None:
    second, _ = _new_key(client, ada)
    assert _works(client, ada)

    revoked = client.delete(f"{KEYS}/{_key_id(ada)}", headers=second.auth)

    assert revoked.status_code == 204
    assert revoked.content == b""
    refused = client.get("/accounts", headers=ada.auth)
    assert_problem(refused, 401, "unauthorized")
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert _works(client, second)
    listed = {k["id"]: k["revoked_at"] for k in _keys(client, second)}
    assert listed[_key_id(second)] is None
    assert listed[_key_id(ada)] is not None


def test_a_key_may_revoke_itself_while_another_is_live(client: TestClient, ada: Caller) -> None:
    second, _ = _new_key(client, ada)

    assert client.delete(f"{KEYS}/{_key_id(ada)}", headers=ada.auth).status_code == 204

    assert not _works(client, ada)
    assert _works(client, second)


def test_the_last_live_key_cannot_be_revoked(client: TestClient, ada: Caller) -> None:
    second, _ = _new_key(client, ada)
    client.delete(f"{KEYS}/{_key_id(ada)}", headers=second.auth)

    refused = client.delete(f"{KEYS}/{_key_id(second)}", headers=second.auth)

    assert_problem(refused, 409, "last_api_key")
    assert _works(client, second)


def test_revoking_a_revoked_key_again_is_a_no_op(client: TestClient, ada: Caller) -> None:
    second, _ = _new_key(client, ada)
    client.delete(f"{KEYS}/{_key_id(ada)}", headers=second.auth)
    revoked_at = {k["id"]: k["revoked_at"] for k in _keys(client, second)}[_key_id(ada)]

    again = client.delete(f"{KEYS}/{_key_id(ada)}", headers=second.auth)

    assert again.status_code == 204
    assert {k["id"]: k["revoked_at"] for k in _keys(client, second)}[_key_id(ada)] == revoked_at


@pytest.mark.parametrize("key_id", ["key_0000000000000000", "nonsense", "key_" + "f" * 200])
def test_an_unknown_key_is_not_found(client: TestClient, ada: Caller, key_id: str) -> None:
    _new_key(client, ada)

    assert_problem(client.delete(f"{KEYS}/{key_id}", headers=ada.auth), 404, "not_found")


def test_another_users_key_is_not_found_and_stays_live(
    client: TestClient, ada: Caller, bob: Caller, db: Database
) -> None:
    _new_key(client, bob)
    _new_key(client, ada)

    answer = client.delete(f"{KEYS}/{_key_id(bob)}", headers=ada.auth)

    problem = assert_problem(answer, 404, "not_found")
    assert bob.user_id not in problem["detail"]
    assert _works(client, bob)
    with db.read() as conn:
        assert (
            conn.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL").fetchone()[0]
            == 0
        )


def test_the_key_routes_need_a_key(client: TestClient, ada: Caller) -> None:
    for method, path in (("POST", KEYS), ("GET", KEYS), ("DELETE", f"{KEYS}/{_key_id(ada)}")):
        assert_problem(client.request(method, path), 401, "unauthorized")
    assert _works(client, ada)


def test_the_key_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert set(paths[KEYS]) == {"get", "post"}
    assert set(paths[KEYS]["post"]["responses"]) >= {"201", "401"}
    revoke = paths[KEYS + "/{key_id}"]["delete"]
    assert set(revoke["responses"]) >= {"204", "401", "404", "409"}
    assert "content" not in revoke["responses"]["204"]
    for operation in (paths[KEYS]["get"], paths[KEYS]["post"], revoke):
        assert operation["security"] == [{"bearer": []}]


@contextmanager
def _api(settings: Settings, db: Database) -> Iterator[TestClient]:
    with idle_queue(settings, db) as queue, serve(settings, db, queue) as client:
        yield client


def test_a_key_revoked_through_one_api_process_is_refused_by_another_at_once(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    first_db, second_db = open_store(settings), open_store(settings)
    first_db.migrate()
    with _api(settings, first_db) as first, _api(settings, second_db) as second:
        ada = sign_up(first, "Ada")
        spare, _ = _new_key(first, ada)
        assert _works(second, ada)  # the second process has seen the key work

        assert first.delete(f"{KEYS}/{_key_id(ada)}", headers=spare.auth).status_code == 204

        assert_problem(second.get("/accounts", headers=ada.auth), 401, "unauthorized")
        assert _works(second, spare)
    first_db.close()
    second_db.close()


@pytest.mark.parametrize("settings", [{"max_api_keys": 3}], indirect=True)
def test_a_key_past_the_cap_is_refused_until_one_is_revoked(
    client: TestClient, db: Database, ada: Caller
) -> None:
    spare, _ = _new_key(client, ada)
    _new_key(client, ada)
    keys_before = _key_rows(db)

    refused = client.post(KEYS, headers=ada.auth)

    assert_problem(refused, 409, "too_many_api_keys")
    assert "api_key" not in refused.json()
    assert _key_rows(db) == keys_before
    assert client.delete(f"{KEYS}/{_key_id(spare)}", headers=ada.auth).status_code == 204
    _new_key(client, ada)


def _key_rows(db: Database) -> int:
    count: int = db.connection().execute("SELECT count(*) FROM api_keys").fetchone()[0]
    return count
