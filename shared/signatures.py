"""Signed requests: RFC 9421 HTTP Message Signatures, ``hmac-sha256``, verified.

A request made with a key that has ``signing: required`` carries ``Signature-Input`` and
``Signature``; ``verify_request`` rebuilds the signature base from the request as it
arrived (RFC 9421 section 2.5) and checks the HMAC, the ``Content-Digest`` of the body
(RFC 9530) and what the service requires a signature to cover. Structured fields are
parsed and serialised by ``http_sf`` (RFC 8941 / 9651), so a signature that lists its
parameters with other spacing still verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import http_sf
from http_sf.innerlist import ser_innerlist
from http_sf.item import ser_item
from http_sf.retrofit import retrofit as structured_fields
from http_sf.types import BareItemType, InnerListType, ItemType, ParamsType

from shared.errors import SignatureInvalid

ALGORITHM = "hmac-sha256"
MAX_SKEW_S = 300
"""How far ``created`` may be from the server's clock, either way."""

_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# Fields the ``sf`` parameter may name besides those ``http_sf`` knows the type of.
_DICTIONARY_FIELDS = frozenset(
    {"content-digest", "repr-digest", "want-content-digest", "signature", "signature-input"}
)
_FIELD_PARAMETERS = frozenset({"sf", "key", "bs"})


@dataclass(frozen=True)
class SignedRequest:
    """A request as it arrived, in the terms RFC 9421 derives components from."""

    method: str
    scheme: str
    authority: str
    """The ``Host`` the request was sent to, port included as sent."""
    path: str
    """Percent-encoded, as sent."""
    query: str
    """As sent, without the ``?``; empty when there is none."""
    headers: Sequence[tuple[str, str]]
    """Every field line, its name lowercase, in the order received."""
    body: bytes = b""
    _lines: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lines: dict[str, list[str]] = {}
        for name, value in self.headers:
            lines.setdefault(name, []).append(value)
        object.__setattr__(self, "_lines", lines)

    def field_lines(self, name: str) -> list[str] | None:
        return self._lines.get(name)

    def field_value(self, name: str) -> str | None:
        """The field's lines trimmed and joined with ``, `` (RFC 9421 section 2.1)."""
        lines = self._lines.get(name)
        return None if lines is None else ", ".join(line.strip() for line in lines)


def verify_request(request: SignedRequest, *, key_id: str, secret: str, now: float) -> None:
    """Accept the request if a signature by ``key_id`` verifies and covers enough.

    Raises:
        SignatureInvalid: no signature by this key, a malformed one, a wrong HMAC, a body
            that does not match its ``Content-Digest``, ``created`` more than
            ``MAX_SKEW_S`` from ``now``, or a required component left uncovered.
    """
    inputs = _dictionary(request, "signature-input")
    signatures = _dictionary(request, "signature")
    labels = [label for label, member in inputs.items() if _key_id_of(member) == key_id]
    if not labels:
        raise SignatureInvalid(f"no signature by the key {key_id} in Signature-Input")
    _check_digest(request)
    failure: SignatureInvalid | None = None
    for label in labels:
        try:
            _verify_one(request, label, inputs[label], signatures.get(label), secret, now)
            return
        except SignatureInvalid as error:
            failure = failure or error
    assert failure is not None
    raise failure


def _verify_one(
    request: SignedRequest,
    label: str,
    signature_input: object,
    signature: object,
    secret: str,
    now: float,
) -> None:
    components, params = _inner_list(label, signature_input)
    _check_params(label, params, now)
    _check_coverage(request, label, [name for name, _ in components])
    if not (isinstance(signature, tuple) and isinstance(signature[0], bytes)):
        raise SignatureInvalid(f"Signature has no byte sequence labelled {label}")
    base = signature_base(request, components, params)
    expected = hmac.new(secret.encode(), base.encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature[0]):
        raise SignatureInvalid(f"the signature {label} does not verify")


def signature_base(
    request: SignedRequest, components: Sequence[tuple[str, ParamsType]], params: ParamsType
) -> str:
    """The signature base of RFC 9421 section 2.5: one line per covered component, then
    ``@signature-params``, the inner list serialised again.

    Raises:
        SignatureInvalid: a component listed twice, unknown, absent from the request, or
            whose value cannot be part of a signature base.
    """
    lines: list[str] = []
    seen: set[tuple[str, frozenset[tuple[str, object]]]] = set()
    for name, component_params in components:
        identity = (name, frozenset(component_params.items()))
        if identity in seen:
            raise SignatureInvalid(f"the component {name!r} is listed twice")
        seen.add(identity)
        value = _component_value(request, name, component_params)
        if not value.isascii() or "\n" in value or "\r" in value:
            raise SignatureInvalid(f"the component {name!r} is not printable ASCII")
        lines.append(f"{ser_item((name, component_params))}: {value}")
    items: list[ItemType] = [(name, p) for name, p in components]
    lines.append(f'"@signature-params": {ser_innerlist((items, params))}')
    return "\n".join(lines)


def content_digest(body: bytes) -> str:
    """The ``Content-Digest`` of ``body`` (RFC 9530): ``sha-256=:<base64>:``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def _dictionary(request: SignedRequest, name: str) -> Mapping[str, object]:
    value = request.field_value(name)
    if value is None:
        raise SignatureInvalid(f"a key with signing: required needs a {name.title()} header")
    parsed = _parse(value, "dictionary", name)
    assert isinstance(parsed, dict)
    return cast(Mapping[str, object], parsed)


def _parse(value: str, kind: str, name: str) -> object:
    try:
        return http_sf.parse(value.encode("latin-1"), tltype=kind, on_duplicate_key=_duplicate)
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError) as error:
        raise SignatureInvalid(f"the {name} header is not a structured {kind}") from error


def _duplicate(key: str, context: str) -> None:
    raise ValueError(f"{key} appears twice in a {context}")


def _key_id_of(member: object) -> object:
    if isinstance(member, tuple) and isinstance(member[1], dict):
        return member[1].get("keyid")
    return None


def _inner_list(label: str, member: object) -> tuple[list[tuple[str, ParamsType]], ParamsType]:
    if not (isinstance(member, tuple) and isinstance(member[0], list)):
        raise SignatureInvalid(f"Signature-Input {label} is not an inner list")
    inner = cast(InnerListType, member)
    assert isinstance(inner, tuple)
    components: list[tuple[str, ParamsType]] = []
    for item in inner[0]:
        assert isinstance(item, tuple)
        name, params = item
        if not isinstance(name, str) or name != name.lower() or not name:
            raise SignatureInvalid(f"Signature-Input {label} lists a component that is no name")
        components.append((name, params))
    return components, inner[1]


def _check_params(label: str, params: ParamsType, now: float) -> None:
    if params.get("alg") != ALGORITHM:
        raise SignatureInvalid(f'the signature {label} must say alg="{ALGORITHM}"')
    created = params.get("created")
    if not _is_integer(created):
        raise SignatureInvalid(f"the signature {label} has no created time")
    assert isinstance(created, int)
    if abs(now - created) > MAX_SKEW_S:
        raise SignatureInvalid(
            f"the signature {label} was created {int(now - created)} s from now:"
            f" at most {MAX_SKEW_S} s either way"
        )
    expires = params.get("expires")
    if expires is not None and (not _is_integer(expires) or now > cast(int, expires)):
        raise SignatureInvalid(f"the signature {label} has expired")


def _is_integer(value: BareItemType | None) -> bool:
    # bool is an int in Python, but a Boolean in a structured field.
    return type(value) is int


def _check_coverage(request: SignedRequest, label: str, names: Sequence[str]) -> None:
    missing = [] if "@method" in names else ["@method"]
    if "@target-uri" not in names:
        if "@path" not in names:
            missing.append("@target-uri (or @path)")
        elif request.query and "@query" not in names:
            missing.append("@query")
    if request.body and "content-digest" not in names:
        missing.append("content-digest")
    if missing:
        raise SignatureInvalid(f"the signature {label} must cover {', '.join(missing)}")


def _check_digest(request: SignedRequest) -> None:
    """A ``Content-Digest``, when sent, must match the body; a body must have one."""
    value = request.field_value("content-digest")
    if value is None:
        if request.body:
            raise SignatureInvalid("a request with a body needs a Content-Digest header")
        return
    digests = _parse(value, "dictionary", "content-digest")
    assert isinstance(digests, dict)
    if "sha-256" not in digests:
        raise SignatureInvalid("Content-Digest needs a sha-256 digest")
    for algorithm, member in digests.items():
        digest = _DIGESTS.get(algorithm)
        if digest is None:
            continue
        if not (isinstance(member, tuple) and isinstance(member[0], bytes)):
            raise SignatureInvalid(f"Content-Digest {algorithm} is not a byte sequence")
        if not hmac.compare_digest(member[0], digest(request.body).digest()):
            raise SignatureInvalid(f"the body does not match its Content-Digest {algorithm}")


def _component_value(request: SignedRequest, name: str, params: ParamsType) -> str:
    if name.startswith("@"):
        return _derived(request, name, params)
    return _field(request, name, params)


def _derived(request: SignedRequest, name: str, params: ParamsType) -> str:
    if name == "@query-param":
        if set(params) != {"name"} or not isinstance(params["name"], str):
            raise SignatureInvalid('@query-param needs one parameter: name="..."')
        return _query_param(request, params["name"])
    if params:
        raise SignatureInvalid(f"the component {name} takes no parameters")
    path = request.path or "/"
    query = f"?{request.query}" if request.query else ""
    if name == "@method":
        return request.method
    if name == "@scheme":
        return request.scheme.lower()
    if name == "@authority":
        return _authority(request)
    if name == "@target-uri":
        return f"{request.scheme.lower()}://{_authority(request)}{path}{query}"
    if name == "@request-target":
        return f"{path}{query}"
    if name == "@path":
        return path
    if name == "@query":
        return f"?{request.query}"
    raise SignatureInvalid(f"the component {name} is not one a request has")


def _authority(request: SignedRequest) -> str:
    """The ``Host`` normalised (RFC 9110 section 4.2.3): lowercase, no default port."""
    host, colon, port = request.authority.lower().rpartition(":")
    if not colon or "]" in port:  # no port, or the end of an IPv6 address
        return request.authority.lower()
    if port.lstrip("0") == _DEFAULT_PORTS.get(request.scheme.lower()):
        return host
    return f"{host}:{port}"


def _query_param(request: SignedRequest, name: str) -> str:
    """RFC 9421 section 2.2.8: the decoded value, encoded again with ``%20`` for spaces."""
    values = urllib.parse.parse_qs(request.query, keep_blank_values=True).get(
        urllib.parse.unquote(name)
    )
    if values is None:
        raise SignatureInvalid(f"the query has no parameter {name!r}")
    if len(values) != 1:
        raise SignatureInvalid(f"the query parameter {name!r} has several values")
    return urllib.parse.quote(values[0], safe="*").replace("~", "%7E")


def _field(request: SignedRequest, name: str, params: ParamsType) -> str:
    value = request.field_value(name)
    if value is None:
        raise SignatureInvalid(f"the signed header {name!r} is not in the request")
    unknown = set(params) - _FIELD_PARAMETERS
    if unknown:
        raise SignatureInvalid(f"{name!r}: the parameters {sorted(unknown)} are not supported")
    if any(params.get(flag, True) is not True for flag in ("sf", "bs")):
        raise SignatureInvalid(f"{name!r}: sf and bs are flags")
    if "bs" in params:
        if len(params) != 1:
            raise SignatureInvalid(f"{name!r}: bs cannot be combined with other parameters")
        lines = request.field_lines(name) or []
        try:
            return http_sf.ser([line.strip().encode("latin-1") for line in lines])
        except UnicodeEncodeError as error:
            raise SignatureInvalid(f"{name!r} is not Latin-1") from error
    if "key" in params:
        key = params["key"]
        member = _parse(value, "dictionary", name)
        assert isinstance(member, dict)
        if not isinstance(key, str) or key not in member:
            raise SignatureInvalid(f"{name!r} has no member {key!r}")
        return http_sf.ser([member[key]])
    if "sf" in params:
        kind = "dictionary" if name in _DICTIONARY_FIELDS else structured_fields.get(name)
        if kind is None:
            raise SignatureInvalid(f"{name!r} is no structured field this service knows")
        return http_sf.ser(cast(http_sf.StructuredType, _parse(value, kind, name)))
    return value
