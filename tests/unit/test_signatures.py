"""The signature base and the checks of ``shared.signatures``, without HTTP: RFC 9421's
own example, its derived components and field parameters, and the service's policy."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from http_sf.types import ParamsType

from shared.errors import SignatureInvalid
from shared.signatures import SignedRequest, content_digest, signature_base, verify_request

KEY_ID = "key_0123456789abcdef"
SECRET = "sks_" + "ab" * 32
NOW = 1_800_000_000
BODY = b'{"hello": "world"}'

# RFC 9421 appendix B.2: its test request and, B.1.5, the shared secret of B.2.5.
RFC_REQUEST = SignedRequest(
    method="POST",
    scheme="https",
    authority="example.com",
    path="/foo",
    query="param=Value&Pet=dog",
    headers=[
        ("host", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        ("content-length", "18"),
    ],
    body=BODY,
)
RFC_SHARED_SECRET = base64.b64decode(
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
)


def test_the_signature_base_of_rfc_9421_b_2_5_gives_its_published_signature() -> None:
    components: list[tuple[str, ParamsType]] = [
        ("date", {}),
        ("@authority", {}),
        ("content-type", {}),
    ]

    base = signature_base(
        RFC_REQUEST, components, {"created": 1618884473, "keyid": "test-shared-secret"}
    )

    assert base == (
        '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
        '"@authority": example.com\n'
        '"content-type": application/json\n'
        '"@signature-params": ("date" "@authority" "content-type")'
        ';created=1618884473;keyid="test-shared-secret"'
    )
    signature = hmac.new(RFC_SHARED_SECRET, base.encode(), hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="


def _value(request: SignedRequest, component: str, **params: str | bool) -> str:
    base = signature_base(request, [(component, dict(params))], {})
    return base.split("\n")[0].split(": ", 1)[1]


def test_derived_components_are_those_of_rfc_9421_section_2_2() -> None:
    request = SignedRequest(
        "POST",
        "HTTPS",
        "WWW.Example.com:443",
        "/path",
        "param=value&foo=bar&baz=bat%20man&qux=",
        headers=[],
    )

    assert _value(request, "@method") == "POST"
    assert _value(request, "@scheme") == "https"
    assert _value(request, "@authority") == "www.example.com"
    assert _value(request, "@target-uri") == (
        "https://www.example.com/path?param=value&foo=bar&baz=bat%20man&qux="
    )
    assert _value(request, "@request-target") == "/path?param=value&foo=bar&baz=bat%20man&qux="
    assert _value(request, "@path") == "/path"
    assert _value(request, "@query") == "?param=value&foo=bar&baz=bat%20man&qux="
    assert _value(request, "@query-param", name="baz") == "bat%20man"
    assert _value(request, "@query-param", name="qux") == ""


def test_an_authority_keeps_a_port_that_is_not_its_schemes_default() -> None:
    request = SignedRequest("GET", "http", "127.0.0.1:8000", "", "", headers=[])

    assert _value(request, "@authority") == "127.0.0.1:8000"
    assert _value(request, "@target-uri") == "http://127.0.0.1:8000/"
    assert _value(request, "@query") == "?"


def test_fields_are_trimmed_joined_and_serialised_as_their_parameters_say() -> None:
    digest = content_digest(BODY)
    request = SignedRequest(
        "GET",
        "https",
        "example.com",
        "/",
        "",
        headers=[
            ("x-list", "  a "),
            ("x-list", "b"),
            ("content-digest", f"sha-256={digest[8:]},   sha-512=:AAAA:"),
        ],
    )

    assert _value(request, "x-list") == "a, b"
    assert _value(request, "x-list", bs=True) == ":YQ==:, :Yg==:"
    assert _value(request, "content-digest", sf=True) == f"sha-256={digest[8:]}, sha-512=:AAAA:"
    assert _value(request, "content-digest", key="sha-512") == ":AAAA:"


@pytest.mark.parametrize(
    ("component", "params"),
    [
        ("x-absent", {}),
        ("x-list", {"tr": True}),
        ("x-list", {"req": True}),
        ("x-list", {"sf": True}),
        ("x-list", {"key": "b"}),
        ("@status", {}),
        ("@method", {"sf": True}),
        ("@query-param", {"name": "absent"}),
        ("@query-param", {"name": "twice"}),
    ],
)
def test_a_component_the_request_cannot_give_is_refused(component: str, params: ParamsType) -> None:
    request = SignedRequest(
        "GET", "https", "example.com", "/", "twice=1&twice=2", headers=[("x-list", "a")]
    )

    with pytest.raises(SignatureInvalid):
        signature_base(request, [(component, params)], {})


def _request(body: bytes = b"", *, signature: bool = True, **overrides: Any) -> SignedRequest:
    headers = [("host", "p2p.example.com"), ("content-digest", content_digest(body))]
    request = SignedRequest("POST", "https", "p2p.example.com", "/payments", "", headers, body)
    if not signature:
        return request
    return _sign(request, **overrides)


def _sign(
    request: SignedRequest,
    *,
    components: tuple[str, ...] = ("@method", "@target-uri", "content-digest"),
    created: object = NOW,
    alg: object = "hmac-sha256",
    key_id: str = KEY_ID,
    secret: str = SECRET,
    input_spacing: str = "",
    expires: int | None = None,
) -> SignedRequest:
    params: ParamsType = {"created": created, "keyid": key_id}  # type: ignore[dict-item]
    if alg is not None:
        params["alg"] = alg  # type: ignore[assignment]
    if expires is not None:
        params["expires"] = expires
    parsed: list[tuple[str, ParamsType]] = [(name, {}) for name in components]
    base = signature_base(request, parsed, params)
    mac = hmac.new(secret.encode(), base.encode(), hashlib.sha256).digest()
    signature_params = base.rsplit(": ", 1)[1]
    if input_spacing:
        signature_params = signature_params.replace("(", "(" + input_spacing).replace(
            '" "', '"' + input_spacing + '"'
        )
    headers = [
        *request.headers,
        ("signature-input", f"sig1={signature_params}"),
        ("signature", f"sig1=:{base64.b64encode(mac).decode()}:"),
    ]
    return SignedRequest(
        request.method,
        request.scheme,
        request.authority,
        request.path,
        request.query,
        headers,
        request.body,
    )


def _verify(request: SignedRequest, now: float = NOW) -> None:
    verify_request(request, key_id=KEY_ID, secret=SECRET, now=now)


def test_a_signed_request_verifies_also_with_other_spacing_in_its_signature_input() -> None:
    _verify(_request(BODY))
    _verify(_request(BODY, input_spacing="  "))
    _verify(_request(BODY, expires=NOW + 10))


@pytest.mark.parametrize("now", [NOW - 300, NOW + 300])
def test_created_may_be_300_s_from_now_either_way(now: int) -> None:
    _verify(_request(BODY), now=now)


@pytest.mark.parametrize(
    ("request_", "now", "because"),
    [
        (_request(BODY), NOW - 301, "from now"),
        (_request(BODY), NOW + 301, "from now"),
        (_request(BODY, created=True), NOW, "created"),
        (_request(BODY, created=str(NOW)), NOW, "created"),
        (_request(BODY, alg=None), NOW, "alg"),
        (_request(BODY, alg="hmac-sha512"), NOW, "alg"),
        (_request(BODY, key_id="key_fedcba9876543210"), NOW, "no signature by the key"),
        (_request(BODY, secret="sks_other"), NOW, "does not verify"),
        (_request(BODY, components=("@method", "@target-uri")), NOW, "content-digest"),
        (_request(BODY, components=("@target-uri", "content-digest")), NOW, "@method"),
        (_request(BODY, components=("@method", "content-digest")), NOW, "@target-uri"),
        (_request(signature=False), NOW, "Signature-Input"),
        (_request(BODY, expires=NOW - 1), NOW, "expired"),
    ],
)
def test_what_the_service_requires_of_a_signature_is_checked(
    request_: SignedRequest, now: int, because: str
) -> None:
    with pytest.raises(SignatureInvalid, match=because):
        _verify(request_, now)


def test_a_body_must_match_every_digest_it_comes_with() -> None:
    signed = _request(BODY)
    altered = SignedRequest(
        signed.method,
        signed.scheme,
        signed.authority,
        signed.path,
        signed.query,
        signed.headers,
        BODY.replace(b"world", b"earth"),
    )

    with pytest.raises(SignatureInvalid, match="does not match its Content-Digest"):
        _verify(altered)
