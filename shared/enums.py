"""The closed sets of values a row can hold: statuses, failure codes, directions.

Their one source: the records read them, the engine writes them, and ``shared.schema``
renders the database's ``CHECK`` lists from them. Imports nothing, so the schema can.
"""

from __future__ import annotations

import enum


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    AUTHORIZED = "authorized"
    """Judged and reserved (``held`` on the sender), waiting for a capture or a void."""
    VOIDED = "voided"
    EXPIRED = "expired"


class FailureCode(enum.StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_NOT_FOUND = "account_not_found"
    BALANCE_LIMIT_EXCEEDED = "balance_limit_exceeded"
    LINKED_PAYMENT_FAILED = "linked_payment_failed"
    REFUND_EXCEEDS_PAYMENT = "refund_exceeds_payment"


class CaptureMode(enum.StrEnum):
    """When a payment's money moves: when the worker judges it, or when it is captured."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"


class PaymentActionKind(enum.StrEnum):
    """What the owner of an authorization's receiving account did to it."""

    CAPTURE = "capture"
    VOID = "void"


class Direction(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class EventType(enum.StrEnum):
    """What an event says happened; the contract names every one (docs/api.md)."""

    PAYMENT_CREATED = "payment.created"
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_COMPLETED = "payment.completed"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_VOIDED = "payment.voided"
    PAYMENT_EXPIRED = "payment.expired"
    DEPOSIT_CREATED = "deposit.created"
    ACCOUNT_UPDATED = "account.updated"
