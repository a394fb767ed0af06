"""The HTTP edge's shapes: strict request bodies and the objects of API.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from shared.currencies import ISO_4217
from shared.records import AccountStatus, Direction, FailureCode, PaymentStatus

T = TypeVar("T")

INT64_MAX = 2**63 - 1


def _known_currency(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError(f"{code} is not an ISO 4217 currency code")
    return code


Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", examples=["USD"], description="ISO 4217 code."),
    AfterValidator(_known_currency),
]
Amount = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=INT64_MAX,
        description="Minor units (cents); a JSON integer up to P2P_MAX_AMOUNT.",
        examples=[1250],
    ),
]
Description = Annotated[str | None, Field(max_length=500)]


class _Body(BaseModel):
    """Request bodies: unknown fields and coerced types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: EmailStr


class AccountCreate(_Body):
    currency: Currency


class AccountUpdate(_Body):
    status: Literal["active", "frozen"]


class DepositCreate(_Body):
    amount: Amount
    description: Description = None


class TransferCreate(_Body):
    from_account_id: Annotated[str, Field(min_length=1, max_length=64)]
    to_account_id: Annotated[str, Field(min_length=1, max_length=64)]
    amount: Amount
    currency: Currency
    description: Description = None


REQUEST_BODIES: tuple[type[BaseModel], ...] = (
    UserCreate,
    AccountCreate,
    AccountUpdate,
    DepositCreate,
    TransferCreate,
)
"""Read by ``api.body``, which FastAPI does not see: the app documents them itself."""


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserPublic(_Out):
    id: str
    name: str
    email: str
    created_at: datetime


class UserCreated(UserPublic):
    api_key: str = Field(description="Shown once; only its hash is stored.")


class ApiKeyPublic(_Out):
    id: str = Field(description="`key_` + the 16 hex digits that follow `p2p_` in the key.")
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(_Out):
    id: str
    api_key: str = Field(description="Shown once; only its hash is stored.")
    created_at: datetime


class AccountPublic(_Out):
    id: str
    user_id: str
    currency: str
    balance: int
    pending_out: int = Field(description="Sum of the account's pending outgoing payments.")
    status: AccountStatus
    created_at: datetime
    updated_at: datetime


class DepositPublic(_Out):
    id: str
    account_id: str
    amount: int
    description: str | None
    balance_after: int
    created_at: datetime


class PaymentPublic(_Out):
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


class LedgerEntryPublic(_Out):
    id: str
    account_id: str
    direction: Direction
    amount: int
    balance_after: int
    payment_id: str | None
    deposit_id: str | None
    created_at: datetime


class ListPage(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


class ValidationItem(BaseModel):
    loc: list[str]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ValidationItem] | None = Field(
        default=None, description="Only on validation_error."
    )


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]
