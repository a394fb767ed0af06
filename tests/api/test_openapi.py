"""The OpenAPI document tells the truth: every endpoint, problem answers, the amount cap."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from shared.settings import Settings
from tests.api.support import (
    JSON,
    Caller,
    assert_problem,
    funded_account,
    new_key,
    open_account,
    transfer,
    transfer_body,
)

# docs/api.md's endpoints, path parameters written as {}.
CONTRACT = {
    "/users": {"post"},
    "/accounts": {"get", "post"},
    "/accounts/{}": {"get", "patch"},
    "/accounts/{}/deposits": {"post"},
    "/accounts/{}/ledger": {"get"},
    "/payments/transfer": {"post"},
    "/payments/{}": {"get"},
    "/payments": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
}
PUBLIC = {"/users", "/healthz", "/readyz", "/metrics"}
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _document(client: TestClient) -> JSON:
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: JSON = response.json()
    return document


def _operations(document: JSON) -> Iterator[tuple[str, str, JSON]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def _resolve(document: JSON, schema: JSON) -> JSON:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def _request_schema(document: JSON, path: str, method: str) -> JSON:
    operation = document["paths"][path][method]
    content = operation["requestBody"]["content"]["application/json"]
    return _resolve(document, content["schema"])


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_lists_every_endpoint_of_the_contract(client: TestClient) -> None:
    document = _document(client)

    documented: dict[str, set[str]] = {}
    for path, method, _ in _operations(document):
        documented.setdefault(re.sub(r"\{[^}]+\}", "{}", path), set()).add(method)

    for path, methods in CONTRACT.items():
        assert methods <= documented.get(path, set()), path


def test_every_4xx_answer_is_documented_as_a_problem(client: TestClient) -> None:
    document = _document(client)
    problem = document["components"]["schemas"]["Problem"]

    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    seen = 0
    for path, method, operation in _operations(document):
        for status, answer in operation["responses"].items():
            if 400 <= int(status) < 500:
                seen += 1
                assert answer["content"] == PROBLEM_CONTENT, (method, path, status)
    assert seen


def test_authenticated_operations_say_so(client: TestClient) -> None:
    document = _document(client)

    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method, operation in _operations(document):
        if path in PUBLIC or not path.startswith(("/accounts", "/payments")):
            continue
        assert operation.get("security") == [{"bearer": []}], (method, path)
        assert "401" in operation["responses"], (method, path)


def test_every_reference_in_the_document_resolves(client: TestClient) -> None:
    document = _document(client)
    schemas = document["components"]["schemas"]

    for ref in _refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_the_amount_maximum_is_the_setting(client: TestClient, settings: Settings) -> None:
    document = _document(client)

    for path, method in (
        ("/payments/transfer", "post"),
        ("/accounts/{account_id}/deposits", "post"),
    ):
        amount = _request_schema(document, path, method)["properties"]["amount"]
        assert amount["maximum"] == settings.max_amount == 10**12, path
        assert amount["minimum"] == 1
        assert amount["type"] == "integer"


LOW_MAX = pytest.mark.parametrize("settings", [{"max_amount": 500}], indirect=True, ids=["max=500"])


@LOW_MAX
def test_a_lower_max_amount_is_documented(client: TestClient) -> None:
    document = _document(client)

    for path in ("/payments/transfer", "/accounts/{account_id}/deposits"):
        assert _request_schema(document, path, "post")["properties"]["amount"]["maximum"] == 500


@LOW_MAX
def test_a_lower_max_amount_refuses_a_larger_transfer(client: TestClient, ada: Caller) -> None:
    sender = funded_account(client, ada, 500)
    receiver = open_account(client, ada)

    refused = transfer(client, ada, transfer_body(sender, receiver, 501))
    taken = transfer(client, ada, transfer_body(sender, receiver, 500))

    body = assert_problem(refused, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "amount"]
    assert taken.status_code == 202, taken.text


@LOW_MAX
def test_a_lower_max_amount_refuses_a_larger_deposit(client: TestClient, ada: Caller) -> None:
    account_id = open_account(client, ada)

    def deposit(amount: int) -> httpx2.Response:
        return client.post(
            f"/accounts/{account_id}/deposits",
            json={"amount": amount},
            headers=ada.keyed(new_key()),
        )

    body = assert_problem(deposit(501), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "amount"]
    assert deposit(500).status_code == 201


def test_a_body_that_is_not_json_gets_a_documented_answer(client: TestClient, ada: Caller) -> None:
    """Found by schemathesis: bytes that are not UTF-8 answered an undocumented 400."""
    document = _document(client)
    account = open_account(client, ada)
    checked = 0
    for path, method, operation in _operations(document):
        if "requestBody" not in operation:
            continue
        response = client.request(
            method,
            path.replace("{account_id}", account),
            content=b"\xff\xfe{",
            headers={**ada.keyed(new_key()), "Content-Type": "application/json"},
        )
        assert_problem(response, 400, "bad_request")
        assert "400" in operation["responses"], (method, path)
        checked += 1
    assert checked >= 5


def test_the_idempotency_key_is_documented_as_required_with_its_shape(client: TestClient) -> None:
    """Found by schemathesis: the key was documented optional, and a missing one is a 400."""
    document = _document(client)
    keyed = set()
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "Idempotency-Key":
                keyed.add((method, path))
                assert parameter["in"] == "header"
                assert parameter["required"] is True
                schema = parameter["schema"]
                assert (schema["minLength"], schema["maxLength"]) == (1, 255)
                pattern = re.compile(schema["pattern"])
                assert pattern.fullmatch("rent-2026-11")
                assert pattern.fullmatch("a b")
                assert not pattern.fullmatch(" a")
                assert not pattern.fullmatch("é")
                assert "400" in operation["responses"], (method, path)
    assert keyed == {
        ("post", "/payments/transfer"),
        ("post", "/accounts/{account_id}/deposits"),
        ("post", "/payments/{payment_id}/capture"),
        ("post", "/payments/{payment_id}/void"),
        ("post", "/payments/batch"),
        ("post", "/payments/{payment_id}/refunds"),
    }
