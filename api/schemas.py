"""The HTTP edge's shapes: strict request bodies and the objects of docs/api.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
)

from shared.batches import MAX_ITEMS as MAX_BATCH_ITEMS
from shared.currencies import ISO_4217
from shared.enums import DeliveryStatus, EventType, WebhookEndpointStatus
from shared.payments import Transfer
from shared.records import (
    AccountStatus,
    Batch,
    BatchStatus,
    CaptureMode,
    Direction,
    FailureCode,
    Payment,
    PaymentStatus,
    Signing,
)
from shared.refunds import Refund

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
MIN_HOLD_SECONDS, MAX_HOLD_SECONDS = 60, 2_592_000
HoldSeconds = Annotated[
    int,
    Field(
        strict=True,
        ge=MIN_HOLD_SECONDS,
        le=MAX_HOLD_SECONDS,
        description="With `capture: manual`: how long the authorization holds, 60 s to 30"
        " days; default `P2P_HOLD_SECONDS` (7 days).",
    ),
]

# RFC 5321, 4.5.3.1: a local part of at most 64 octets, a path of at most 256 octets,
# which leaves 254 for the address between its angle brackets.
MAX_EMAIL_LOCAL_PART = 64
MAX_EMAIL_LENGTH = 254


def _email_not_too_long(value: object) -> object:
    """On the text as sent, before it is parsed: a display name does not get it past."""
    if isinstance(value, str) and len(value.encode()) > MAX_EMAIL_LENGTH:
        raise ValueError(f"an email address is at most {MAX_EMAIL_LENGTH} octets")
    return value


def _local_part_not_too_long(email: str) -> str:
    if len(email.rpartition("@")[0].encode()) > MAX_EMAIL_LOCAL_PART:
        raise ValueError(
            f"the part of an email address before the @ is at most {MAX_EMAIL_LOCAL_PART} octets"
        )
    return email


Email = Annotated[
    EmailStr,
    BeforeValidator(_email_not_too_long),
    AfterValidator(_local_part_not_too_long),
    Field(
        description="An email address: at most 254 octets, 64 before the @ (RFC 5321).",
        json_schema_extra={"maxLength": MAX_EMAIL_LENGTH},
    ),
]


class _Body(BaseModel):
    """Request bodies: unknown fields and coerced types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: Email


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
    capture: Literal["automatic", "manual"] = Field(
        default="automatic",
        description="`automatic`: the money moves when the worker settles it; `manual`: the"
        " worker authorizes it (holds the amount), then the receiver's owner captures or"
        " voids it.",
    )
    hold_seconds: HoldSeconds | None = None

    @field_validator("hold_seconds")
    @classmethod
    def _hold_only_with_manual_capture(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("capture") != CaptureMode.MANUAL:
            raise ValueError('hold_seconds is only for "capture": "manual"')
        return value

    def to_transfer(self, default_hold_seconds: int) -> Transfer:
        """The transfer it asks for, a manual one holding ``default_hold_seconds``
        unless it says."""
        capture = CaptureMode(self.capture)
        manual = capture is CaptureMode.MANUAL
        return Transfer(
            from_account_id=self.from_account_id,
            to_account_id=self.to_account_id,
            amount=self.amount,
            currency=self.currency,
            description=self.description,
            capture=capture,
            hold_seconds=(self.hold_seconds or default_hold_seconds) if manual else None,
        )


class BatchCreate(_Body):
    atomic: bool = Field(
        default=False,
        description="`true`: every payment completes (or is authorized), or none does;"
        " `false`: each has the outcome it would have had submitted alone, in order.",
    )
    transfers: list[TransferCreate] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        description="1 to 1,000 transfer bodies, as `POST /payments/transfer` takes them.",
    )


class CaptureCreate(_Body):
    amount: Annotated[
        int | None,
        Field(
            strict=True,
            ge=1,
            le=INT64_MAX,
            description="Minor units to move, 1 … the authorized amount; default: all of it.",
        ),
    ] = None


def _known_event_types(names: list[str]) -> list[str]:
    known = set(EventType)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}: known are {', '.join(EventType)}")
    return names


EndpointUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        description="`https://` (or `http://` with `P2P_WEBHOOK_ALLOW_HTTP`), without"
        " credentials; its host must resolve to public addresses only.",
        examples=["https://example.com/webhooks/p2p"],
    ),
]
EventTypes = Annotated[
    list[str],
    Field(
        min_length=1,
        max_length=50,
        description=f"The event types to deliver: {', '.join(EventType)}. Omitted or"
        " `null`: every type, those added later too.",
        examples=[["payment.completed", "payment.failed"]],
    ),
    AfterValidator(_known_event_types),
]


class WebhookEndpointCreate(_Body):
    url: EndpointUrl
    event_types: EventTypes | None = None
    description: Description = None


class WebhookEndpointUpdate(_Body):
    url: EndpointUrl | None = Field(None, description="A new URL, checked as when created.")
    event_types: EventTypes | None = None
    status: Literal["enabled", "disabled"] | None = Field(
        None, description="`disabled`: nothing is delivered until it is `enabled` again."
    )


class RefundCreate(_Body):
    amount: Annotated[
        int | None,
        Field(
            strict=True,
            ge=1,
            le=INT64_MAX,
            description="Minor units to give back, 1 … what is left to refund; default: all"
            " that is left.",
        ),
    ] = None
    description: Description = None

    def to_refund(self) -> Refund:
        return Refund(amount=self.amount, description=self.description)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserPublic(_Out):
    id: str
    name: str
    email: str
    created_at: datetime


class UserCreated(UserPublic):
    api_key: str = Field(description="Shown once; only its hash is stored.")


_SIGNING = (
    "`required`: every request made with the key must be signed (RFC 9421, `hmac-sha256`),"
    " or it is refused `401 signature_invalid`."
)


class ApiKeyCreate(_Body):
    signing: Literal["none", "required"] = Field("none", description=_SIGNING)


class ApiKeyPublic(_Out):
    id: str = Field(description="`key_` + the 16 hex digits that follow `p2p_` in the key.")
    created_at: datetime
    revoked_at: datetime | None
    signing: Signing = Field(description=_SIGNING)


class ApiKeyCreated(_Out):
    id: str
    api_key: str = Field(description="Shown once; only its hash is stored.")
    created_at: datetime
    signing: Signing = Field(description=_SIGNING)
    signing_secret: str | None = Field(
        None,
        description="Only for `signing: required`, shown once: the HMAC key of the signatures"
        " is its UTF-8 bytes.",
    )


class AccountPublic(_Out):
    id: str
    user_id: str
    currency: str
    balance: int
    pending_out: int = Field(description="Sum of the account's pending outgoing payments.")
    held: int = Field(description="Sum of the account's authorized payments: reserved.")
    available: int = Field(description="`balance - held`: what the account can spend.")
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
    completed_at: datetime | None = Field(
        description="When it reached a final status; `null` while pending or authorized."
    )
    capture: CaptureMode = Field(
        description="`automatic`: moved when settled; `manual`: authorized, then captured."
    )
    captured_amount: int | None = Field(description="What the capture moved (manual only).")
    expires_at: datetime | None = Field(
        description="When an uncaptured authorization expires (manual only)."
    )
    refund_of: str | None = Field(description="The payment this one refunds.")
    refunded_amount: int = Field(description="The sum of this payment's completed refunds.")
    batch_id: str | None = Field(description="The batch it was submitted in.")


class BatchCounts(BaseModel):
    """A batch's payments by status."""

    pending: int
    completed: int
    failed: int
    authorized: int
    voided: int
    expired: int


class BatchPublic(BaseModel):
    id: str
    atomic: bool
    status: BatchStatus = Field(description="`settled` once none of its payments is pending.")
    counts: BatchCounts
    created_at: datetime
    settled_at: datetime | None = Field(
        description="When the last of its payments stopped being pending."
    )

    @classmethod
    def of(cls, batch: Batch) -> BatchPublic:
        return cls(
            id=batch.id,
            atomic=batch.atomic,
            status=batch.status,
            counts=BatchCounts(**{status.value: n for status, n in batch.counts.items()}),
            created_at=batch.created_at,
            settled_at=batch.settled_at,
        )


class BatchAccepted(BaseModel):
    id: str
    atomic: bool
    status: BatchStatus
    created_at: datetime
    payments: list[PaymentPublic] = Field(description="Every payment, in the batch's order.")

    @classmethod
    def of(cls, batch: Batch, payments: list[Payment]) -> BatchAccepted:
        return cls(
            id=batch.id,
            atomic=batch.atomic,
            status=batch.status,
            created_at=batch.created_at,
            payments=[PaymentPublic.model_validate(payment) for payment in payments],
        )


class LedgerEntryPublic(_Out):
    id: str
    account_id: str
    direction: Direction
    amount: int
    balance_after: int
    payment_id: str | None
    deposit_id: str | None
    created_at: datetime


class EventData(BaseModel):
    object: dict[str, Any] = Field(
        description="The payment, deposit or account as the caller reads it at that moment."
    )


class EventPublic(BaseModel):
    id: str
    type: EventType
    created_at: datetime
    data: EventData


class ListPage(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


class ValidationItem(BaseModel):
    loc: list[str | int] = Field(
        description="Where: `body`, then field names and list indexes, as"
        ' `["body", "transfers", 7, "amount"]`.'
    )
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ValidationItem] | None = Field(
        default=None,
        description="On validation_error; and on a batch's refused item, naming it.",
    )


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


class WebhookEndpointPublic(_Out):
    id: str
    url: str
    description: str | None
    event_types: list[EventType] | None = Field(description="`null`: every type.")
    status: WebhookEndpointStatus
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointPublic):
    secret: str = Field(
        description="Shown once: `whsec_` + base64; the HMAC key of the signatures is the"
        " decoded bytes."
    )


class WebhookSecret(BaseModel):
    secret: str = Field(description="The new secret, shown once.")


class WebhookDeliveryPublic(_Out):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None = Field(
        description="Why the last attempt failed, with at most 1 KiB of the answer."
    )
    created_at: datetime


REQUEST_BODIES: tuple[type[BaseModel], ...] = (
    UserCreate,
    ApiKeyCreate,
    AccountCreate,
    AccountUpdate,
    DepositCreate,
    TransferCreate,
    BatchCreate,
    CaptureCreate,
    RefundCreate,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
)
"""Read by ``api.body, which FastAPI does not see: the app documents them itself."""
