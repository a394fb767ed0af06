"""``verify_webhook`` against the Standard Webhooks reference library: what its signer
makes verifies here, and what is tampered with does not, here or there."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import standardwebhooks

from p2p_client import Event, WebhookVerificationFailed, verify_webhook

# Real time, so that the reference library (which reads the clock) judges by signature.
NOW = int(time.time())
EVENT_ID = "evt_01a231b6419ffeadf09f96fc0a6cee35"
EVENT: dict[str, object] = {
    "id": EVENT_ID,
    "type": "payment.completed",
    "created_at": "2026-12-01T13:05:57.685015Z",
    "data": {"object": {"id": "pay_1", "status": "completed", "amount": 2500}},
}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def signed(secret: str, body: bytes, *, at: int = NOW, msg_id: str = EVENT_ID) -> dict[str, str]:
    """The headers the reference library's signer gives ``body``."""
    signature = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(at, tz=UTC), body.decode()
    )
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def verify(body: bytes, headers: dict[str, str], secret: str) -> Event:
    return verify_webhook(body, headers, secret, clock=lambda: NOW)


BODY = json.dumps(EVENT).encode()


def test_what_the_reference_library_signs_verifies_and_yields_the_event() -> None:
    secret = new_secret()

    event = verify_webhook(BODY, signed(secret, BODY), secret, clock=lambda: NOW)

    assert (event.id, event.type) == (EVENT_ID, "payment.completed")
    assert event.object["status"] == "completed"


def test_header_names_are_read_in_any_case_and_raw_secret_bytes_work_too() -> None:
    secret = new_secret()
    headers = {name.title(): value for name, value in signed(secret, BODY).items()}
    raw = base64.b64decode(secret.removeprefix("whsec_"))

    assert verify_webhook(BODY, headers, raw, clock=lambda: NOW).id == EVENT_ID


def test_one_matching_signature_among_several_is_enough_as_while_secrets_overlap() -> None:
    old, new = new_secret(), new_secret()
    by_old = signed(old, BODY)["webhook-signature"]
    by_new = signed(new, BODY)["webhook-signature"]
    headers = {**signed(new, BODY), "webhook-signature": f"v1a,AAAA {by_old} {by_new}"}

    assert verify(BODY, headers, new).id == EVENT_ID
    assert verify(BODY, headers, old).id == EVENT_ID
    with pytest.raises(WebhookVerificationFailed):
        verify(BODY, headers, new_secret())


Tamper = Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b, h: (b.replace(b"2500", b"9500"), h), id="body"),
        pytest.param(lambda b, h: (b, {**h, "webhook-id": "evt_other"}), id="id"),
        pytest.param(
            lambda b, h: (b, {**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}),
            id="timestamp",
        ),
        pytest.param(
            lambda b, h: (b, {**h, "webhook-signature": h["webhook-signature"][:-4] + "AAA="}),
            id="signature",
        ),
        pytest.param(lambda b, h: (b + b" ", h), id="whitespace"),
    ],
)
def test_a_tampered_webhook_is_refused_here_as_by_the_reference_library(tamper: Tamper) -> None:
    # The reference library reads the clock: signed now, not when the module was imported
    # (a long suite may run this test more than its five minutes later).
    now = int(time.time())
    secret = new_secret()
    assert standardwebhooks.Webhook(secret).verify(BODY, signed(secret, BODY, at=now)) == EVENT
    body, headers = tamper(BODY, signed(secret, BODY, at=now))

    with pytest.raises(WebhookVerificationFailed):
        verify_webhook(body, headers, secret, clock=lambda: now)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, {**headers})


def test_another_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationFailed, match="no signature"):
        verify(BODY, signed(new_secret(), BODY), new_secret())


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_more_than_five_minutes_away_is_refused(offset: int) -> None:
    secret = new_secret()
    headers = signed(secret, BODY, at=NOW + offset)

    with pytest.raises(WebhookVerificationFailed, match="timestamp"):
        verify(BODY, headers, secret)


@pytest.mark.parametrize("offset", [-300, 300])
def test_a_timestamp_within_five_minutes_is_accepted(offset: int) -> None:
    secret = new_secret()

    assert verify(BODY, signed(secret, BODY, at=NOW + offset), secret).id == EVENT_ID


@pytest.mark.parametrize("timestamp", ["-1", "1.5", "²", "9" * 5000, "now"])
def test_a_timestamp_that_is_no_unix_time_is_refused(timestamp: str) -> None:
    secret = new_secret()
    headers = {**signed(secret, BODY), "webhook-timestamp": timestamp}

    with pytest.raises(WebhookVerificationFailed, match="timestamp"):
        verify(BODY, headers, secret)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    secret = new_secret()
    headers = signed(secret, BODY)
    del headers[missing]

    with pytest.raises(WebhookVerificationFailed, match="missing"):
        verify(BODY, headers, secret)


@pytest.mark.parametrize("signature", ["", "v1", "v1,", "v1,***", "v2,abc", "garbage"])
def test_malformed_signatures_are_refused_not_crashed_on(signature: str) -> None:
    secret = new_secret()
    headers = {**signed(secret, BODY), "webhook-signature": signature}

    with pytest.raises(WebhookVerificationFailed):
        verify(BODY, headers, secret)


def test_a_signed_payload_that_is_no_event_is_refused() -> None:
    secret = new_secret()
    body = b'{"hello": "world"}'

    with pytest.raises(WebhookVerificationFailed, match="not an event"):
        verify(body, signed(secret, body), secret)
