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


class FailureCode(enum.StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_NOT_FOUND = "account_not_found"
    BALANCE_LIMIT_EXCEEDED = "balance_limit_exceeded"


class Direction(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"
