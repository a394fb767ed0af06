"""Verify a webhook the service sent, per the Standard Webhooks specification.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; ``webhook-signature``
holds one or more space-separated ``v1,<base64 HMAC-SHA256>`` (several while a secret is
rotated); the key is the ``whsec_`` secret's base64-decoded bytes. A timestamp more than
five minutes from now is refused, so a captured webhook cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping

from p2p_client import models
from p2p_client.errors import UnexpectedAnswer, WebhookVerificationFailed

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every secret has, not a secret)
TOLERANCE_S = 5 * 60


def verify_webhook(
    payload: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    clock: Callable[[], float] = time.time,
) -> models.Event:
    """The event ``payload`` holds, once its signature has verified.

    ``payload`` is the request body exactly as received (not re-serialized JSON);
    ``headers`` the request's (any case); ``secret`` the endpoint's ``whsec_…`` secret,
    or its decoded bytes.

    Raises ``WebhookVerificationFailed``: a header is missing or malformed, the timestamp
    is outside ``tolerance_s``, or no signature matches.
    """
    fields = {name.lower(): value for name, value in headers.items()}
    msg_id = fields.get("webhook-id")
    timestamp = fields.get("webhook-timestamp")
    signatures = fields.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationFailed(
            "webhook-id, webhook-timestamp or webhook-signature missing"
        )
    # isdigit() alone takes "²"; a bound on the length keeps int() from refusing it too.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 20):
        raise WebhookVerificationFailed(f"webhook-timestamp is not a Unix time: {timestamp!r}")
    if abs(clock() - int(timestamp)) > tolerance_s:
        raise WebhookVerificationFailed("webhook-timestamp is too far from now")
    signed = b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), payload)
    expected = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    if not any(_matches(candidate, expected) for candidate in signatures.split(" ")):
        raise WebhookVerificationFailed("no signature matches the secret")
    try:
        return models.event(json.loads(payload))
    except (ValueError, UnexpectedAnswer) as error:
        raise WebhookVerificationFailed(f"the signed payload is not an event: {error}") from None


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _matches(candidate: str, expected: bytes) -> bool:
    version, _, encoded = candidate.partition(",")
    if version != "v1":
        return False  # another scheme (v1a: asymmetric) is not ours to check
    try:
        given = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return False
    return hmac.compare_digest(given, expected)
