"""Signed requests (RFC 9421, ``hmac-sha256``), checked by a third-party verifier:
``http-message-signatures`` must accept what the client signs, and refuse it altered."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence

import httpx
import pytest
from http_message_signatures import HTTPMessageVerifier, InvalidSignature, MappingKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256
from http_message_signatures.structures import VerifyResult

from p2p_client import Client, content_digest
from tests.client.support import ACCOUNT, API_KEY, PAYMENT, FakeServer, FakeTime, problem

KEY_ID = "key_" + "ab" * 8  # the id of API_KEY
SECRET = "sks_0123456789abcdef0123456789abcdef"
MAX_AGE = datetime.timedelta(seconds=300)
SIGNED_BODY = ("@method", "@target-uri", "content-digest")


def verifier(secret: str = SECRET, key_id: str = KEY_ID) -> HTTPMessageVerifier:
    keys = MappingKeyResolver(public_keys={key_id: secret.encode()}, private_keys={})
    return HTTPMessageVerifier(signature_algorithm=HMAC_SHA256, key_resolver=keys)


def verified(
    request: httpx.Request,
    required: Sequence[str] = SIGNED_BODY,
    *,
    body: bytes | None = None,
    secret: str = SECRET,
) -> VerifyResult:
    (result,) = verifier(secret).verify(
        request,
        body=request.content if body is None else body,
        require_components=required,
        max_age=MAX_AGE,
    )
    return result


def created(result: VerifyResult) -> int:
    value = result.parameters["created"]
    assert isinstance(value, int)
    return value


def signing_client(server: FakeServer, **options: object) -> Client:
    return Client(
        "http://p2p.test/",
        API_KEY,
        signing_secret=SECRET,
        transport=httpx.MockTransport(server),
        **options,  # type: ignore[arg-type]
    )


def test_a_signed_transfer_verifies_with_a_third_party_library() -> None:
    server = FakeServer(httpx.Response(202, json=PAYMENT))
    before = int(time.time())

    signing_client(server).transfer("acc_a", "acc_b", 2500, "EUR", idempotency_key="k-1")

    (request,) = server.requests
    result = verified(request)
    assert result.parameters["keyid"] == KEY_ID
    assert result.parameters["alg"] == "hmac-sha256"
    assert before <= created(result) <= int(time.time())
    assert request.headers["content-digest"] == content_digest(request.content)
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def test_a_request_without_a_body_signs_its_target_and_no_digest() -> None:
    server = FakeServer(httpx.Response(200, json=ACCOUNT))

    signing_client(server).get_account("acc_a")

    (request,) = server.requests
    assert "content-digest" not in request.headers
    result = verified(request, ("@method", "@target-uri"))
    assert list(result.covered_components) == ['"@method"', '"@target-uri"', '"@signature-params"']


def test_path_and_query_may_be_signed_instead_of_the_target_uri() -> None:
    server = FakeServer(
        httpx.Response(200, json={"data": [], "has_more": False, "next_cursor": None}),
        httpx.Response(200, json=ACCOUNT),
    )
    client = signing_client(server, sign_target="path")

    client.list_payments(account_id="acc_a", status="completed")
    client.get_account("acc_a")

    with_query, without = server.requests
    covered = verified(with_query, ("@method", "@path", "@query")).covered_components
    assert covered['"@path"'] == "/payments"
    assert covered['"@query"'] == "?account_id=acc_a&status=completed"
    assert list(verified(without, ("@method", "@path")).covered_components) == [
        '"@method"',
        '"@path"',
        '"@signature-params"',
    ]


def test_an_altered_body_target_or_secret_does_not_verify() -> None:
    server = FakeServer(httpx.Response(202, json=PAYMENT))
    signing_client(server).transfer("acc_a", "acc_b", 2500, "EUR")
    (request,) = server.requests

    with pytest.raises(InvalidSignature):
        verified(request, body=request.content.replace(b"2500", b"9500"))
    with pytest.raises(InvalidSignature):
        verified(request, secret="another secret")
    moved = httpx.Request(
        request.method, "http://p2p.test/accounts", headers=request.headers, content=request.content
    )
    with pytest.raises(InvalidSignature):
        verified(moved)


def test_every_retry_is_signed_anew_with_its_own_created_time() -> None:
    server = FakeServer(
        problem(503, "not_ready", **{"Retry-After": "2"}), httpx.Response(202, json=PAYMENT)
    )
    fake = FakeTime(wall=time.time() - 10)
    client = signing_client(server, sleep=fake.sleep, clock=fake.clock, wall_clock=fake.wall_clock)

    client.transfer("acc_a", "acc_b", 2500, "EUR")

    first, second = (created(verified(request)) for request in server.requests)
    assert second - first == 2


def test_the_key_id_is_the_api_keys_own_unless_given() -> None:
    server = FakeServer(httpx.Response(200, json=ACCOUNT))

    signing_client(server, signing_key_id="key_other").get_account("acc_a")

    (request,) = server.requests
    (result,) = verifier(key_id="key_other").verify(request, max_age=MAX_AGE)
    assert result.parameters["keyid"] == "key_other"
    with pytest.raises(ValueError, match="signing_secret"):
        Client("http://p2p.test", API_KEY, signing_key_id="key_other")
