"""The errors the payment core raises on purpose: a flat tree, one class per condition.

Each carries a stable snake_case ``code``; the API maps classes to HTTP statuses in one
place (``api/problems.py``).
"""

from __future__ import annotations

from typing import ClassVar


class P2PError(Exception):
    """Base of every error the payment core raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(P2PError):
    """The resource does not exist, or belongs to somebody else."""

    code = "not_found"


class EmailTaken(P2PError):
    """Another user signed up with this email (compared case-insensitively)."""

    code = "email_taken"


class SameAccount(P2PError):
    """A transfer names one account as both sender and receiver."""

    code = "same_account"


class CurrencyMismatch(P2PError):
    """A transfer's currency differs from the sender's or the receiver's account."""

    code = "currency_mismatch"


class AccountFrozen(P2PError):
    """The account is frozen: no money may move in or out."""

    code = "account_frozen"


class BalanceLimitExceeded(P2PError):
    """The balance would exceed the largest one the ledger can hold (2^63 - 1)."""

    code = "balance_limit_exceeded"


class IdempotencyKeyReused(P2PError):
    """The Idempotency-Key was used before with a different request body."""

    code = "idempotency_key_reused"


class InvalidCursor(P2PError):
    """A list cursor was not one this service handed out."""

    code = "invalid_cursor"


class TooManyApiKeys(P2PError):
    """The user holds as many live API keys as one may (``P2P_MAX_API_KEYS``)."""

    code = "too_many_api_keys"


class LastApiKey(P2PError):
    """Revoking this key would leave the user without a live one, locked out for good."""

    code = "last_api_key"


class SignatureInvalid(P2PError):
    """A request made with a key that has ``signing: required`` is not signed as RFC 9421
    and the service require: missing, malformed, by another key, not verifying, too old or
    too new, not covering what it must, or its body not matching its ``Content-Digest``."""

    code = "signature_invalid"


class WebhookUrlNotAllowed(P2PError):
    """A webhook endpoint's URL may not be called: not ``https`` (unless allowed), with
    credentials, or its host resolves to an address the service must not reach (SSRF)."""

    code = "webhook_url_not_allowed"


class TooManyWebhookEndpoints(P2PError):
    """The user has as many webhook endpoints as one may (``P2P_MAX_WEBHOOK_ENDPOINTS``)."""

    code = "too_many_webhook_endpoints"


class WebhookEndpointDisabled(P2PError):
    """The endpoint is disabled: nothing is delivered to it until it is enabled again."""

    code = "webhook_endpoint_disabled"


class PaymentNotAuthorized(P2PError):
    """A capture or a void of a payment that is not ``authorized`` (still pending, or
    ended already: completed, failed, voided or expired)."""

    code = "payment_not_authorized"


class CaptureExceedsAuthorization(P2PError):
    """A capture of more than the authorization reserved."""

    code = "capture_exceeds_authorization"


class BatchItemRefused(P2PError):
    """An item of a batch is refused as the same transfer alone would be; the whole batch
    is refused with that item's problem, and nothing of it is recorded."""

    code = "batch_item_refused"

    def __init__(self, index: int, refusal: P2PError) -> None:
        super().__init__(f"transfers[{index}]: {refusal.detail}")
        self.index = index
        self.refusal = refusal


class PaymentNotRefundable(P2PError):
    """A refund of a payment that is not ``completed``, or of a payment that is itself a
    refund."""

    code = "payment_not_refundable"


class RefundExceedsPayment(P2PError):
    """Guards G9: a payment's refunds that are not failed never add up to more than it
    moved (nothing left to refund, or an amount above what is left)."""

    code = "refund_exceeds_payment"
