"""The objects the service answers with, read from JSON into typed, frozen dataclasses.

Fields the service adds later are ignored, and fields of newer features (holds, refunds,
batches) are ``None`` on a service without them, so this client keeps working as the
service grows. A field of the wrong type is ``UnexpectedAnswer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from p2p_client.errors import UnexpectedAnswer

JSON = dict[str, Any]
T = TypeVar("T")

PENDING = "pending"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    created_at: datetime


@dataclass(frozen=True)
class NewUser:
    """A signed-up user and its first API key, shown this once."""

    user: User
    api_key: str


@dataclass(frozen=True)
class ApiKey:
    id: str
    created_at: datetime
    revoked_at: datetime | None
    signing: str | None


@dataclass(frozen=True)
class NewApiKey:
    """A new API key, and for a signing key its signing secret: each shown this once."""

    key: ApiKey
    api_key: str
    signing_secret: str | None


@dataclass(frozen=True)
class Account:
    id: str
    user_id: str
    currency: str
    balance: int
    pending_out: int
    status: str
    created_at: datetime
    updated_at: datetime
    held: int | None
    available: int | None


@dataclass(frozen=True)
class Deposit:
    id: str
    account_id: str
    amount: int
    description: str | None
    balance_after: int
    created_at: datetime


@dataclass(frozen=True)
class Payment:
    id: str
    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    description: str | None
    status: str
    failure_code: str | None
    failure_detail: str | None
    created_at: datetime
    completed_at: datetime | None
    capture: str | None
    captured_amount: int | None
    expires_at: datetime | None
    refund_of: str | None
    refunded_amount: int | None
    batch_id: str | None

    @property
    def settled(self) -> bool:
        """The worker has judged it: no longer ``pending``."""
        return self.status != PENDING


@dataclass(frozen=True)
class BatchCounts:
    """A batch's payments by status."""

    pending: int
    completed: int
    failed: int
    authorized: int
    voided: int
    expired: int


@dataclass(frozen=True)
class Batch:
    id: str
    atomic: bool
    status: str
    """``pending`` until none of its payments is, then ``settled``."""
    counts: BatchCounts
    created_at: datetime
    settled_at: datetime | None

    @property
    def settled(self) -> bool:
        """None of its payments is ``pending`` any more."""
        return self.status != PENDING


@dataclass(frozen=True)
class NewBatch:
    """A batch as submitted: every payment, in the batch's order."""

    id: str
    atomic: bool
    status: str
    created_at: datetime
    payments: list[Payment]


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    account_id: str
    direction: str
    amount: int
    balance_after: int
    payment_id: str | None
    deposit_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created_at: datetime
    data: JSON

    @property
    def object(self) -> JSON:
        """The changed object, as the viewer would have read it then."""
        value = self.data.get("object")
        if not isinstance(value, dict):
            raise UnexpectedAnswer(f"event {self.id} has no data.object")
        return value


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    description: str | None
    event_types: list[str] | None
    """``None``: every type, those added later too."""
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewWebhookEndpoint:
    """A new webhook endpoint and its signing secret (``whsec_…``), shown this once."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next."""

    data: list[T]
    has_more: bool
    next_cursor: str | None


class _Reader:
    """Typed access to one JSON object's fields, naming the object when one is wrong."""

    def __init__(self, kind: str, value: object) -> None:
        if not isinstance(value, dict):
            raise UnexpectedAnswer(f"expected a {kind} object, got {type(value).__name__}")
        self._kind = kind
        self._value: Mapping[str, object] = value

    def _get(self, name: str, types: tuple[type, ...], optional: bool) -> Any:
        value = self._value.get(name)
        if value is None and optional:
            return None
        # bool is an int to Python, never to JSON.
        if not isinstance(value, types) or isinstance(value, bool):
            raise UnexpectedAnswer(f"{self._kind}.{name} is {value!r}")
        return value

    def text(self, name: str) -> str:
        value: str = self._get(name, (str,), False)
        return value

    def opt_text(self, name: str) -> str | None:
        value: str | None = self._get(name, (str,), True)
        return value

    def integer(self, name: str) -> int:
        value: int = self._get(name, (int,), False)
        return value

    def opt_integer(self, name: str) -> int | None:
        value: int | None = self._get(name, (int,), True)
        return value

    def time(self, name: str) -> datetime:
        return _time(self._kind, name, self.text(name))

    def opt_time(self, name: str) -> datetime | None:
        text = self.opt_text(name)
        return None if text is None else _time(self._kind, name, text)

    def flag(self, name: str) -> bool:
        value = self._value.get(name)
        if not isinstance(value, bool):
            raise UnexpectedAnswer(f"{self._kind}.{name} is {value!r}")
        return value

    def opt_texts(self, name: str) -> list[str] | None:
        value = self._value.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise UnexpectedAnswer(f"{self._kind}.{name} is {value!r}")
        return value

    def mapping(self, name: str) -> JSON:
        value = self._value.get(name)
        if not isinstance(value, dict):
            raise UnexpectedAnswer(f"{self._kind}.{name} is {value!r}")
        return value

    def items(self, name: str) -> list[object]:
        value = self._value.get(name)
        if not isinstance(value, list):
            raise UnexpectedAnswer(f"{self._kind}.{name} is {value!r}")
        return value


def _time(kind: str, name: str, text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UnexpectedAnswer(f"{kind}.{name} is not an RFC 3339 time: {text!r}") from None


def user(value: object) -> User:
    r = _Reader("user", value)
    return User(r.text("id"), r.text("name"), r.text("email"), r.time("created_at"))


def new_user(value: object) -> NewUser:
    return NewUser(user(value), _Reader("user", value).text("api_key"))


def api_key(value: object) -> ApiKey:
    r = _Reader("api_key", value)
    return ApiKey(
        r.text("id"), r.time("created_at"), r.opt_time("revoked_at"), r.opt_text("signing")
    )


def new_api_key(value: object) -> NewApiKey:
    r = _Reader("api_key", value)
    return NewApiKey(api_key(value), r.text("api_key"), r.opt_text("signing_secret"))


def account(value: object) -> Account:
    r = _Reader("account", value)
    return Account(
        id=r.text("id"),
        user_id=r.text("user_id"),
        currency=r.text("currency"),
        balance=r.integer("balance"),
        pending_out=r.integer("pending_out"),
        status=r.text("status"),
        created_at=r.time("created_at"),
        updated_at=r.time("updated_at"),
        held=r.opt_integer("held"),
        available=r.opt_integer("available"),
    )


def deposit(value: object) -> Deposit:
    r = _Reader("deposit", value)
    return Deposit(
        id=r.text("id"),
        account_id=r.text("account_id"),
        amount=r.integer("amount"),
        description=r.opt_text("description"),
        balance_after=r.integer("balance_after"),
        created_at=r.time("created_at"),
    )


def payment(value: object) -> Payment:
    r = _Reader("payment", value)
    return Payment(
        id=r.text("id"),
        from_account_id=r.text("from_account_id"),
        to_account_id=r.text("to_account_id"),
        amount=r.integer("amount"),
        currency=r.text("currency"),
        description=r.opt_text("description"),
        status=r.text("status"),
        failure_code=r.opt_text("failure_code"),
        failure_detail=r.opt_text("failure_detail"),
        created_at=r.time("created_at"),
        completed_at=r.opt_time("completed_at"),
        capture=r.opt_text("capture"),
        captured_amount=r.opt_integer("captured_amount"),
        expires_at=r.opt_time("expires_at"),
        refund_of=r.opt_text("refund_of"),
        refunded_amount=r.opt_integer("refunded_amount"),
        batch_id=r.opt_text("batch_id"),
    )


def batch_counts(value: object) -> BatchCounts:
    r = _Reader("batch.counts", value)
    return BatchCounts(
        pending=r.integer("pending"),
        completed=r.integer("completed"),
        failed=r.integer("failed"),
        authorized=r.integer("authorized"),
        voided=r.integer("voided"),
        expired=r.integer("expired"),
    )


def batch(value: object) -> Batch:
    r = _Reader("batch", value)
    return Batch(
        id=r.text("id"),
        atomic=r.flag("atomic"),
        status=r.text("status"),
        counts=batch_counts(r.mapping("counts")),
        created_at=r.time("created_at"),
        settled_at=r.opt_time("settled_at"),
    )


def new_batch(value: object) -> NewBatch:
    r = _Reader("batch", value)
    return NewBatch(
        id=r.text("id"),
        atomic=r.flag("atomic"),
        status=r.text("status"),
        created_at=r.time("created_at"),
        payments=[payment(item) for item in r.items("payments")],
    )


def ledger_entry(value: object) -> LedgerEntry:
    r = _Reader("ledger_entry", value)
    return LedgerEntry(
        id=r.text("id"),
        account_id=r.text("account_id"),
        direction=r.text("direction"),
        amount=r.integer("amount"),
        balance_after=r.integer("balance_after"),
        payment_id=r.opt_text("payment_id"),
        deposit_id=r.opt_text("deposit_id"),
        created_at=r.time("created_at"),
    )


def event(value: object) -> Event:
    r = _Reader("event", value)
    return Event(r.text("id"), r.text("type"), r.time("created_at"), r.mapping("data"))


def webhook_endpoint(value: object) -> WebhookEndpoint:
    r = _Reader("webhook_endpoint", value)
    return WebhookEndpoint(
        id=r.text("id"),
        url=r.text("url"),
        description=r.opt_text("description"),
        event_types=r.opt_texts("event_types"),
        status=r.text("status"),
        created_at=r.time("created_at"),
        updated_at=r.time("updated_at"),
    )


def new_webhook_endpoint(value: object) -> NewWebhookEndpoint:
    secret = _Reader("webhook_endpoint", value).text("secret")
    return NewWebhookEndpoint(webhook_endpoint(value), secret)


def webhook_secret(value: object) -> str:
    return _Reader("webhook_secret", value).text("secret")


def webhook_delivery(value: object) -> WebhookDelivery:
    r = _Reader("webhook_delivery", value)
    return WebhookDelivery(
        id=r.text("id"),
        endpoint_id=r.text("endpoint_id"),
        event_id=r.text("event_id"),
        event_type=r.text("event_type"),
        status=r.text("status"),
        attempts=r.integer("attempts"),
        last_attempt_at=r.opt_time("last_attempt_at"),
        next_attempt_at=r.opt_time("next_attempt_at"),
        last_status_code=r.opt_integer("last_status_code"),
        last_error=r.opt_text("last_error"),
        created_at=r.time("created_at"),
    )


def page_of(item: Callable[[object], T]) -> Callable[[object], Page[T]]:
    """The reader of a list answer whose items ``item`` reads."""

    def read(value: object) -> Page[T]:
        r = _Reader("list", value)
        return Page(
            data=[item(entry) for entry in r.items("data")],
            has_more=r.flag("has_more"),
            next_cursor=r.opt_text("next_cursor"),
        )

    return read
