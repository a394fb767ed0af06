"""Signed requests (RFC 9421, ``hmac-sha256``): a key with ``signing: required`` is
refused ``401 signature_invalid`` unless its request is signed, and a refused request
records nothing. Requests are signed by a third-party library, ``http-message-signatures``.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx2
import pytest
from fastapi.testclient import TestClient
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256

from shared.signatures import content_digest
from shared.store import Database
from shared.users import SIGNING_SECRET_PATTERN
from tests.api.support import (
    JSON,
    Caller,
    accepted,
    assert_problem,
    funded_account,
    new_key,
    open_account,
    recorded,
    sign_up,
    transfer_body,
)

KEYS = "/users/me/api-keys"
WITH_BODY = ("@method", "@target-uri", "content-digest")
BY_PATH = ("@method", "@path", "@query")


@dataclass(frozen=True)
class SigningKey:
    caller: Caller
    key_id: str
    secret: str


def _signing_key(client: TestClient, owner: Caller) -> SigningKey:
    response = client.post(KEYS, json={"signing": "required"}, headers=owner.auth)
    assert response.status_code == 201, response.text
    body: JSON = response.json()
    caller = Caller(owner.user_id, owner.name, owner.email, body["api_key"])
    return SigningKey(caller, body["id"], body["signing_secret"])


def _signed(
    client: TestClient,
    key: SigningKey,
    method: str,
    url: str,
    *,
    json: JSON | None = None,
    components: Sequence[str] = ("@method", "@target-uri"),
    key_id: str | None = None,
    secret: str | None = None,
    created: float | None = None,
    include_alg: bool = True,
    idempotency_key: str | None = None,
) -> httpx2.Request:
    """A request of ``key``, signed by ``http-message-signatures`` (``components``, and
    ``content-digest`` when there is a body)."""
    headers = dict(key.caller.auth)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    request = client.build_request(method, url, json=json, headers=headers)
    signer_key = key_id or key.key_id
    keys = MappingKeyResolver(
        public_keys={}, private_keys={signer_key: (secret or key.secret).encode()}
    )
    HTTPMessageSigner(signature_algorithm=HMAC_SHA256, key_resolver=keys).sign(
        request,
        key_id=signer_key,
        label="sig1",
        created=datetime.datetime.fromtimestamp(time.time() if created is None else created),
        include_alg=include_alg,
        covered_component_ids=components,
        body=request.content or None,
    )
    return request


def _transfer(
    client: TestClient,
    key: SigningKey,
    body: JSON,
    *,
    url: str = "/payments/transfer",
    components: Sequence[str] = ("@method", "@target-uri"),
    key_id: str | None = None,
    secret: str | None = None,
    created: float | None = None,
    include_alg: bool = True,
) -> httpx2.Request:
    return _signed(
        client,
        key,
        "POST",
        url,
        json=body,
        components=components,
        key_id=key_id,
        secret=secret,
        created=created,
        include_alg=include_alg,
        idempotency_key=new_key(),
    )


def _altered(client: TestClient, request: httpx2.Request, body: bytes) -> httpx2.Request:
    headers = {k: v for k, v in request.headers.items() if k != "content-length"}
    return client.build_request(request.method, request.url, headers=headers, content=body)


@pytest.fixture
def signing(client: TestClient, ada: Caller) -> SigningKey:
    return _signing_key(client, ada)


def test_a_signing_key_is_shown_once_with_its_secret_and_listed_as_signing(
    client: TestClient, ada: Caller
) -> None:
    response = client.post(KEYS, json={"signing": "required"}, headers=ada.auth)

    body = response.json()
    assert response.status_code == 201, body
    assert set(body) == {"id", "api_key", "created_at", "signing", "signing_secret"}
    assert body["signing"] == "required"
    assert re.fullmatch(SIGNING_SECRET_PATTERN, body["signing_secret"])
    plain = client.post(KEYS, json={"signing": "none"}, headers=ada.auth).json()
    assert "signing_secret" not in plain
    listed = {k["id"]: k for k in client.get(KEYS, headers=ada.auth).json()["data"]}
    assert listed[body["id"]]["signing"] == "required"
    assert listed[plain["id"]]["signing"] == "none"
    assert "signing_secret" not in listed[body["id"]]


@pytest.mark.parametrize(
    "body",
    [
        b'{"signing": true}',
        b'{"signing": "yes"}',
        b'{"signing": "optional"}',
        b'{"signing": null}',
        b'{"signing": "REQUIRED"}',
        b'{"signing": "required", "other": 1}',
        b"null",
        b"[]",
        b'"required"',
    ],
)
def test_a_body_that_is_not_a_signing_mode_of_none_or_required_is_refused_and_no_key_made(
    client: TestClient, db: Database, ada: Caller, body: bytes
) -> None:
    before = recorded(db)

    response = client.post(
        KEYS, content=body, headers={**ada.auth, "Content-Type": "application/json"}
    )

    assert_problem(response, 422, "validation_error")
    assert recorded(db) == before


def test_no_body_or_an_empty_object_make_a_key_without_signing(
    client: TestClient, ada: Caller
) -> None:
    for response in (
        client.post(KEYS, headers=ada.auth),
        client.post(KEYS, json={}, headers=ada.auth),
    ):
        assert response.status_code == 201, response.text
        assert response.json()["signing"] == "none"


def test_a_transfer_signed_by_a_third_party_library_is_accepted(
    client: TestClient, db: Database, ada: Caller, signing: SigningKey
) -> None:
    sender = funded_account(client, ada, 1000)
    receiver = open_account(client, ada)

    request = _transfer(client, signing, transfer_body(sender, receiver, 250))
    payment = accepted(client.send(request))

    assert payment["amount"] == 250
    assert "content-digest" in request.headers["signature-input"]
    assert recorded(db).payments == 1


def test_authority_scheme_path_and_query_may_be_signed_too(
    client: TestClient, ada: Caller, signing: SigningKey
) -> None:
    account = open_account(client, ada)
    components = ("@authority", "@scheme", *BY_PATH, '"@query-param";name="limit"')

    listed = client.send(
        _signed(client, signing, "GET", "/payments?limit=5", components=components)
    )
    read = client.send(
        _signed(client, signing, "GET", f"/accounts/{account}", components=("@method", "@path"))
    )

    assert listed.status_code == 200, listed.text
    assert read.status_code == 200, read.text
    assert read.json()["id"] == account


def test_a_signing_key_without_a_signature_is_refused_and_records_nothing(
    client: TestClient, db: Database, ada: Caller, signing: SigningKey
) -> None:
    sender = funded_account(client, ada, 1000)
    receiver = open_account(client, ada)
    before = recorded(db)

    unsigned = client.post(
        "/payments/transfer",
        json=transfer_body(sender, receiver, 100),
        headers=signing.caller.keyed(new_key()),
    )
    read = client.get("/accounts", headers=signing.caller.auth)
    created = client.post(KEYS, headers=signing.caller.auth)

    for response in (unsigned, read, created):
        assert_problem(response, 401, "signature_invalid")
    assert recorded(db) == before


def _refused(client: TestClient, db: Database, request: httpx2.Request, because: str = "") -> None:
    before = recorded(db)

    response = client.send(request)

    problem = assert_problem(response, 401, "signature_invalid")
    assert because in problem["detail"], problem
    assert recorded(db) == before


@pytest.fixture
def accounts(client: TestClient, ada: Caller) -> tuple[str, str]:
    return funded_account(client, ada, 1000), open_account(client, ada)


def test_a_signature_by_an_unknown_key_id_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    body = transfer_body(*accounts, 100)
    _refused(
        client,
        db,
        _transfer(client, signing, body, key_id="key_" + "0" * 16),
        "no signature by the key",
    )


def test_a_signature_by_another_of_the_users_keys_is_refused(
    client: TestClient, db: Database, ada: Caller, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    other = _signing_key(client, ada)
    body = transfer_body(*accounts, 100)

    request = _transfer(client, signing, body, key_id=other.key_id, secret=other.secret)

    _refused(client, db, request, "no signature by the key")


def test_a_signature_made_with_another_secret_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    body = transfer_body(*accounts, 100)
    _refused(
        client, db, _transfer(client, signing, body, secret="sks_" + "1" * 64), "does not verify"
    )


def test_a_body_altered_after_signing_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    request = _transfer(client, signing, transfer_body(*accounts, 100))

    _refused(
        client,
        db,
        _altered(client, request, request.content.replace(b"100", b"900")),
        "Content-Digest",
    )


def test_a_body_that_matches_no_digest_is_refused_even_with_the_digest_unsigned(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    # The library adds content-digest to what it covers whenever it is given a body;
    # signed without one, the digest is left out of the signature.
    request = _signed(
        client,
        signing,
        "POST",
        "/payments/transfer",
        json=transfer_body(*accounts, 100),
        idempotency_key=new_key(),
    )
    assert "content-digest" in request.headers["signature-input"]
    no_digest = _altered(client, request, request.content)
    del no_digest.headers["content-digest"]

    _refused(client, db, no_digest, "needs a Content-Digest")


@pytest.mark.parametrize("skew_s", [-301, 301])
def test_a_signature_created_more_than_300_s_from_now_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str], skew_s: int
) -> None:
    body = transfer_body(*accounts, 100)
    _refused(client, db, _transfer(client, signing, body, created=time.time() + skew_s), "from now")


def test_a_signature_created_within_300_s_is_accepted(
    client: TestClient, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    for skew_s in (-290, 290):
        request = _transfer(
            client, signing, transfer_body(*accounts, 100), created=time.time() + skew_s
        )
        accepted(client.send(request))


def test_a_captured_request_replayed_after_300_s_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    # Signed 301 s ago and accepted then; the same bytes arriving now are too old.
    captured = _transfer(client, signing, transfer_body(*accounts, 100), created=time.time() - 301)
    _refused(client, db, captured, "from now")


@pytest.mark.parametrize(
    "components",
    [
        ("@target-uri",),
        ("@method",),
        ("@method", "@query"),
        ("@method", "@path"),
        ("@method", "@authority"),
    ],
)
def test_a_signature_that_leaves_out_a_required_component_is_refused(
    client: TestClient, db: Database, signing: SigningKey, components: tuple[str, ...]
) -> None:
    _refused(
        client,
        db,
        _signed(client, signing, "GET", "/payments?limit=5", components=components),
        "must cover",
    )


def test_a_body_not_covered_by_the_signature_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    request = client.build_request(
        "POST",
        "/payments/transfer",
        json=transfer_body(*accounts, 100),
        headers=signing.caller.keyed(new_key()),
    )
    # Signed as if it had no body: content-digest is sent but not covered.
    bodiless = client.build_request("POST", "/payments/transfer", headers=request.headers)
    keys = MappingKeyResolver(
        public_keys={}, private_keys={signing.key_id: signing.secret.encode()}
    )
    HTTPMessageSigner(signature_algorithm=HMAC_SHA256, key_resolver=keys).sign(
        bodiless, key_id=signing.key_id, covered_component_ids=("@method", "@target-uri")
    )
    for name in ("signature-input", "signature"):
        request.headers[name] = bodiless.headers[name]
    request.headers["content-digest"] = content_digest(request.content)

    _refused(client, db, request, "must cover content-digest")


def test_a_signature_without_alg_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    body = transfer_body(*accounts, 100)
    _refused(client, db, _transfer(client, signing, body, include_alg=False), "alg")


def test_a_signed_authority_that_is_not_the_one_reached_is_refused(
    client: TestClient, db: Database, signing: SigningKey, accounts: tuple[str, str]
) -> None:
    components = ("@method", "@authority", "@path")
    signed = _transfer(client, signing, transfer_body(*accounts, 100), components=components)
    elsewhere = _transfer(
        client,
        signing,
        transfer_body(*accounts, 100),
        url="http://p2p.example.com/payments/transfer",
        components=components,
    )
    # Signed for p2p.example.com, it reaches this server under its own name.
    elsewhere.headers["host"] = "testserver"

    accepted(client.send(signed))
    _refused(client, db, elsewhere, "does not verify")


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [
        ("sig1=", "sig1=:AAAA:"),
        ('sig1=("@method" "@target-uri";created=1', "sig1=:AAAA:"),
        ('sig1=("@method" "@target-uri");created=1;keyid="{key}"', "sig1=AAAA"),
        ('sig1=("@method" "@target-uri");created=1;keyid="{key}"', "sig2=:AAAA:"),
        ('sig1=("@method" @target-uri);created=1;keyid="{key}"', "sig1=:AAAA:"),
        ('sig1=("@method" "@target-uri");created=1;keyid={key}', "sig1=:AAAA:"),
        ('sig1=("@METHOD" "@target-uri");created=now;keyid="{key}"', "sig1=:AAAA:"),
        ('sig1=("@method" "@target-uri");created=?1;keyid="{key}";alg="hmac-sha256"', ""),
        ('sig1=("@method" "@method" "@target-uri");keyid="{key}";alg="hmac-sha256"', "x"),
        ('sig1=("@status" "@target-uri");keyid="{key}";alg="hmac-sha256"', "sig1=:AAAA:"),
    ],
)
def test_malformed_signature_headers_are_refused(
    client: TestClient, db: Database, signing: SigningKey, signature_input: str, signature: str
) -> None:
    request = _signed(client, signing, "GET", "/accounts")
    request.headers["signature-input"] = signature_input.replace("{key}", signing.key_id)
    request.headers["signature"] = signature

    _refused(client, db, request)


def test_a_key_without_signing_is_unchanged_and_ignores_signature_headers(
    client: TestClient, ada: Caller, accounts: tuple[str, str]
) -> None:
    garbage = {"Signature-Input": "sig1=nonsense(", "Signature": "sig1=:AAAA:"}

    read = client.get("/accounts", headers={**ada.auth, **garbage})
    payment = accepted(
        client.post(
            "/payments/transfer",
            json=transfer_body(*accounts, 100),
            headers={**ada.keyed(new_key()), **garbage},
        )
    )

    assert read.status_code == 200, read.text
    assert payment["status"] == "pending"


def test_only_the_signing_key_is_asked_for_signatures(
    client: TestClient, signing: SigningKey
) -> None:
    bob = sign_up(client, "Bob")

    assert client.get("/accounts", headers=bob.auth).status_code == 200
    assert_problem(client.get("/accounts", headers=signing.caller.auth), 401, "signature_invalid")
