"""Every request is read one way: a body as UTF-8 JSON with each key once, bounded before
any field is judged; an ``Idempotency-Key`` once, without the whitespace around it."""

from __future__ import annotations

import codecs
import json
import uuid
from collections.abc import Callable

import httpx2
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.body import MAX_MEMBERS
from api.problems import MAX_ERRORS
from api.routes import accounts, health, payments, users
from shared.store import Database
from tests.api.support import (
    Caller,
    app_of,
    assert_problem,
    funded_account,
    new_key,
    open_account,
    recorded,
    transfer_body,
)

MIB = 1024 * 1024
ROUTE_MODULES = (accounts, health, payments, users)
KINDS = ["transfer", "deposit"]


def _target(client: TestClient, caller: Caller, kind: str) -> tuple[str, dict[str, object]]:
    """A path and a good body for it."""
    if kind == "transfer":
        sender = funded_account(client, caller, 1_000)
        return "/payments/transfer", transfer_body(sender, open_account(client, caller), 100)
    return f"/accounts/{open_account(client, caller)}/deposits", {"amount": 100}


def _post(
    client: TestClient, path: str, content: bytes, headers: list[tuple[bytes, bytes]]
) -> httpx2.Response:
    return client.post(
        path, content=content, headers=[(b"Content-Type", b"application/json"), *headers]
    )


def _auth(caller: Caller) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", caller.auth["Authorization"].encode())]


def _unknown_fields(size: int) -> bytes:
    """A JSON object of unknown fields, ``"f0":0,"f1":0,…``, of about ``size`` bytes."""
    fields: list[bytes] = []
    total = 2
    while total < size - 16:
        field = b'"f%d":0' % len(fields)
        fields.append(field)
        total += len(field) + 1
    return b"{" + b",".join(fields) + b"}"


def test_a_mebibyte_of_unknown_fields_gets_a_short_answer(client: TestClient, db: Database) -> None:
    """#16 row 1: 96,000 unknown fields were answered with 6.25 MB naming every one."""
    content = _unknown_fields(MIB - 64)
    assert content.count(b":") > 90_000
    before = recorded(db)

    response = _post(client, "/users", content, [])

    body = assert_problem(response, 422, "validation_error")
    assert len(response.content) < 1024
    assert body["errors"] == [
        {"loc": ["body"], "msg": f"An object may have at most {MAX_MEMBERS} members"}
    ]
    assert recorded(db) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_money_body_of_many_fields_is_refused_before_its_fields_are_judged(
    client: TestClient, db: Database, ada: Caller, kind: str
) -> None:
    path, _ = _target(client, ada, kind)
    headers = [*_auth(ada), (b"Idempotency-Key", new_key().encode())]
    before = recorded(db)

    response = _post(client, path, _unknown_fields(MIB - 64), headers)

    body = assert_problem(response, 422, "validation_error")
    assert len(response.content) < 1024
    assert len(body["errors"]) == 1
    assert recorded(db) == before


def test_a_validation_problem_lists_at_most_its_bound_of_errors(
    client: TestClient, db: Database
) -> None:
    fields = {f"unknown_{number}": number for number in range(MAX_MEMBERS)}
    before = recorded(db)

    response = client.post("/users", json=fields)

    body = assert_problem(response, 422, "validation_error")
    assert len(body["errors"]) == MAX_ERRORS
    assert body["detail"].endswith(f"(and {MAX_MEMBERS + 2 - MAX_ERRORS} more errors)")
    assert recorded(db) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_given_twice_in_a_money_body_is_refused(
    client: TestClient, db: Database, ada: Caller, kind: str
) -> None:
    """#16 row 11: ``{"amount":1,"amount":1000000}`` moved 1,000,000."""
    path, body = _target(client, ada, kind)
    good = json.dumps(body).encode()
    content = good[:-1] + b', "amount": 1000000}'
    assert json.loads(content)["amount"] == 1_000_000
    before = recorded(db)

    response = _post(client, path, content, [*_auth(ada), (b"Idempotency-Key", new_key().encode())])

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == [{"loc": ["body", "amount"], "msg": "Key given more than once"}]
    assert recorded(db) == before


def test_a_key_given_twice_in_any_body_is_refused(client: TestClient, db: Database) -> None:
    before = recorded(db)

    response = _post(
        client, "/users", b'{"name": "Ada", "name": "Eve", "email": "ada@example.com"}', []
    )

    assert_problem(response, 422, "validation_error")
    assert recorded(db) == before


Encode = Callable[[str], bytes]
ENCODINGS = [
    pytest.param(lambda text: codecs.BOM_UTF8 + text.encode(), id="utf8_bom"),
    pytest.param(lambda text: text.encode("utf-16"), id="utf16_bom"),
    pytest.param(lambda text: text.encode("utf-16-le"), id="utf16le"),
    pytest.param(lambda text: text.encode("utf-16-be"), id="utf16be"),
    pytest.param(lambda text: text.encode("utf-32"), id="utf32_bom"),
    pytest.param(lambda text: text.encode("utf-32-le"), id="utf32le"),
]


@pytest.mark.parametrize("encode", ENCODINGS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_money_body_that_is_not_plain_utf8_is_refused(
    client: TestClient, db: Database, ada: Caller, kind: str, encode: Encode
) -> None:
    """#16 row 11: UTF-16 bodies and a UTF-8 byte order mark were accepted."""
    path, body = _target(client, ada, kind)
    before = recorded(db)

    response = _post(
        client,
        path,
        encode(json.dumps(body)),
        [*_auth(ada), (b"Idempotency-Key", new_key().encode())],
    )

    assert_problem(response, 400, "bad_request")
    assert recorded(db) == before


@pytest.mark.parametrize("encode", ENCODINGS)
def test_a_sign_up_that_is_not_plain_utf8_is_refused(
    client: TestClient, db: Database, encode: Encode
) -> None:
    before = recorded(db)

    response = _post(client, "/users", encode('{"name": "Ada", "email": "a@example.com"}'), [])

    assert_problem(response, 400, "bad_request")
    assert recorded(db) == before


def test_no_route_leaves_its_body_to_fastapi(client: TestClient) -> None:
    """FastAPI's own reader takes UTF-16 and duplicate keys: every body goes through
    ``api.body`` instead, and the document still describes it."""
    document = client.get("/openapi.json").json()
    read_by_us = 0
    routes = [route for module in ROUTE_MODULES for route in module.router.routes]
    assert len(routes) > 10
    for route in [*app_of(client).routes, *routes]:
        if isinstance(route, APIRoute):
            assert route.dependant.body_params == [], route.path
            if route.openapi_extra and "requestBody" in route.openapi_extra:
                read_by_us += 1
                for method in route.methods or ():
                    assert "requestBody" in document["paths"][route.path][method.lower()]
    assert read_by_us == 6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "padded",
    [b"%s ", b" %s", b"%s\t", b"\t%s", b"  %s \t "],
    ids=["trailing_space", "leading_space", "trailing_tab", "leading_tab", "both"],
)
def test_whitespace_around_a_key_is_not_part_of_it(
    client: TestClient, db: Database, ada: Caller, kind: str, padded: bytes
) -> None:
    """#16 row 4: ``zz`` and ``zz `` made two payments; a trailing tab was a 400."""
    path, body = _target(client, ada, kind)
    key = f"zz-{uuid.uuid4().hex}".encode()
    content = json.dumps(body).encode()
    first = _post(client, path, content, [*_auth(ada), (b"Idempotency-Key", key)])
    assert first.status_code in (201, 202), first.text
    after_first = recorded(db)

    again = _post(client, path, content, [*_auth(ada), (b"Idempotency-Key", padded % key)])

    assert again.status_code == first.status_code, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert recorded(db) == after_first


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "values", [(b"k1", b"k2"), (b"k1", b"k1"), (b"k1", b"")], ids=["two", "same", "empty"]
)
def test_a_repeated_key_header_is_refused(
    client: TestClient, db: Database, ada: Caller, kind: str, values: tuple[bytes, bytes]
) -> None:
    """#16 row 5: of two ``Idempotency-Key`` lines the first silently won."""
    path, body = _target(client, ada, kind)
    suffix = uuid.uuid4().hex.encode()
    lines = [(b"Idempotency-Key", value + suffix if value else value) for value in values]
    before = recorded(db)

    response = _post(client, path, json.dumps(body).encode(), [*_auth(ada), *lines])

    problem = assert_problem(response, 400, "idempotency_key_invalid")
    assert "more than once" in problem["detail"]
    assert recorded(db) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_comma_is_one_of_the_keys_characters(
    client: TestClient, db: Database, ada: Caller, kind: str
) -> None:
    """The contract allows any printable ASCII in a key, so ``k1, k2`` is one key, not
    a list: it neither replays ``k1`` nor is replayed by it."""
    path, body = _target(client, ada, kind)
    k1 = f"k1-{uuid.uuid4().hex}"
    content = json.dumps(body).encode()

    listed = _post(client, path, content, [*_auth(ada), (b"Idempotency-Key", f"{k1}, k2".encode())])
    alone = _post(client, path, content, [*_auth(ada), (b"Idempotency-Key", k1.encode())])

    assert listed.status_code == alone.status_code, (listed.text, alone.text)
    assert listed.status_code in (201, 202)
    assert "Idempotent-Replayed" not in alone.headers
    assert listed.json()["id"] != alone.json()["id"]
