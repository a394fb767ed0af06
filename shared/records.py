"""What the core hands out: plain, frozen dataclasses read from rows, and (from
``shared.enums``) the values their fields take."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from shared.clock import from_text
from shared.enums import AccountStatus as AccountStatus
from shared.enums import CaptureMode as CaptureMode
from shared.enums import Direction as Direction
from shared.enums import FailureCode as FailureCode
from shared.enums import PaymentStatus as PaymentStatus
from shared.store import Row

T = TypeVar("T")


class Signing(enum.StrEnum):
    """Whether a key's requests must be signed (RFC 9421, ``shared.signatures``): read
    from whether the key has a signing secret, so no column holds it."""

    NONE = "none"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    email: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> User:
        return cls(row["id"], row["name"], row["email"], from_text(row["created_at"]))


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What may be shown of a key: never the key itself, nor its hash."""

    id: str
    created_at: datetime
    revoked_at: datetime | None
    signing: Signing

    @classmethod
    def from_row(cls, row: Row) -> ApiKey:
        revoked_at = row["revoked_at"]
        return cls(
            row["id"],
            from_text(row["created_at"]),
            from_text(revoked_at) if revoked_at else None,
            Signing.NONE if row["signing_secret"] is None else Signing.REQUIRED,
        )


@dataclass(frozen=True, slots=True)
class AccountState:
    """What deciding about money needs of an account: no aggregates, one row read."""

    id: str
    user_id: str
    currency: str
    balance: int
    pending_out: int
    status: AccountStatus
    held: int

    @classmethod
    def from_row(cls, row: Row) -> AccountState:
        return cls(
            row["id"],
            row["user_id"],
            row["currency"],
            row["balance"],
            row["pending_out"],
            AccountStatus(row["status"]),
            row["held"],
        )


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    user_id: str
    currency: str
    balance: int
    pending_out: int
    status: AccountStatus
    created_at: datetime
    updated_at: datetime
    held: int = 0
    """The sum of the account's authorized payments: reserved, not yet moved."""

    @property
    def available(self) -> int:
        """What the account can spend: ``balance - held``, never negative."""
        return self.balance - self.held

    @classmethod
    def from_row(cls, row: Row) -> Account:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            currency=row["currency"],
            balance=row["balance"],
            pending_out=row["pending_out"],
            status=AccountStatus(row["status"]),
            created_at=from_text(row["created_at"]),
            updated_at=from_text(row["updated_at"]),
            held=row["held"],
        )


@dataclass(frozen=True, slots=True)
class Deposit:
    id: str
    account_id: str
    amount: int
    description: str | None
    balance_after: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Deposit:
        return cls(
            id=row["id"],
            account_id=row["account_id"],
            amount=row["amount"],
            description=row["description"],
            balance_after=row["balance_after"],
            created_at=from_text(row["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    description: str | None
    status: PaymentStatus
    failure_code: FailureCode | None
    failure_detail: str | None
    created_at: datetime
    completed_at: datetime | None
    """When it reached a final status; ``None`` while pending or authorized."""
    capture: CaptureMode = CaptureMode.AUTOMATIC
    hold_seconds: int | None = None
    """How long an authorization holds (manual capture only)."""
    expires_at: datetime | None = None
    """When an authorization not captured or voided expires; set once authorized."""
    captured_amount: int | None = None
    """What a capture moved, 1 … amount; set once a manual payment is captured."""
    refund_of: str | None = None
    """The payment this one refunds."""
    refunded_amount: int = 0
    """The sum of this payment's completed refunds."""
    batch_id: str | None = None

    @property
    def moved(self) -> int:
        """What a completed payment moved: the captured amount, else the amount."""
        return self.amount if self.captured_amount is None else self.captured_amount

    @classmethod
    def from_row(cls, row: Row) -> Payment:
        return cls(
            id=row["id"],
            from_account_id=row["from_account_id"],
            to_account_id=row["to_account_id"],
            amount=row["amount"],
            currency=row["currency"],
            description=row["description"],
            status=PaymentStatus(row["status"]),
            failure_code=FailureCode(row["failure_code"]) if row["failure_code"] else None,
            failure_detail=row["failure_detail"],
            created_at=from_text(row["created_at"]),
            completed_at=from_text(row["completed_at"]) if row["completed_at"] else None,
            capture=CaptureMode(row["capture"]),
            hold_seconds=row["hold_seconds"],
            expires_at=from_text(row["expires_at"]) if row["expires_at"] else None,
            captured_amount=row["captured_amount"],
            refund_of=row["refund_of"],
            refunded_amount=row["refunded_amount"],
            batch_id=row["batch_id"],
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: str
    account_id: str
    direction: Direction
    amount: int
    balance_after: int
    payment_id: str | None
    deposit_id: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> LedgerEntry:
        return cls(
            id=row["id"],
            account_id=row["account_id"],
            direction=Direction(row["direction"]),
            amount=row["amount"],
            balance_after=row["balance_after"],
            payment_id=row["payment_id"],
            deposit_id=row["deposit_id"],
            created_at=from_text(row["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a newest-first list; ``next_cursor`` continues it."""

    data: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None
