"""Each endpoint once, as a ``Call``: what to send and how to read the answer.

``Client`` and ``AsyncClient`` only send calls, so the two cannot drift apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from p2p_client import models
from p2p_client.transfers import Transfer

T = TypeVar("T")
JSON = dict[str, Any]

MAX_WAIT_S = 30.0
"""The longest ``?wait=`` the service accepts."""


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[object], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: JSON | None = None
    idempotency_key: str | None = None
    retry_unsent_only: bool = False
    """Not safe to send twice (it would make a second resource): retried only when it
    surely never reached the service (refused connection, ``429``)."""
    wait_s: float = 0.0
    """The service may hold the answer this long (a long-poll): added to the timeout."""


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _nothing(_: object) -> None:
    return None


def _drop_none(values: Mapping[str, object | None]) -> dict[str, str]:
    return {name: str(value) for name, value in values.items() if value is not None}


def _given(values: Mapping[str, object | None]) -> JSON:
    """The body's fields that are given: the service's defaults stand for the others."""
    return {name: value for name, value in values.items() if value is not None}


def _page(limit: int | None, cursor: str | None) -> dict[str, str]:
    return _drop_none({"limit": limit, "cursor": cursor})


def create_user(name: str, email: str) -> Call[models.NewUser]:
    body = {"name": name, "email": email}
    return Call("POST", "/users", models.new_user, body=body, retry_unsent_only=True)


def create_api_key(signing: bool) -> Call[models.NewApiKey]:
    body: JSON = {"signing": "required"} if signing else {}
    return Call("POST", "/users/me/api-keys", models.new_api_key, body=body, retry_unsent_only=True)


def list_api_keys(limit: int | None, cursor: str | None) -> Call[models.Page[models.ApiKey]]:
    read = models.page_of(models.api_key)
    return Call("GET", "/users/me/api-keys", read, params=_page(limit, cursor))


def revoke_api_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/users/me/api-keys/{key_id}", _nothing)


def create_account(currency: str) -> Call[models.Account]:
    body = {"currency": currency}
    return Call("POST", "/accounts", models.account, body=body, retry_unsent_only=True)


def get_account(account_id: str) -> Call[models.Account]:
    return Call("GET", f"/accounts/{account_id}", models.account)


def list_accounts(limit: int | None, cursor: str | None) -> Call[models.Page[models.Account]]:
    read = models.page_of(models.account)
    return Call("GET", "/accounts", read, params=_page(limit, cursor))


def set_account_status(account_id: str, status: str) -> Call[models.Account]:
    return Call("PATCH", f"/accounts/{account_id}", models.account, body={"status": status})


def deposit(
    account_id: str, amount: int, description: str | None, idempotency_key: str | None
) -> Call[models.Deposit]:
    body = _given({"amount": amount, "description": description})
    return Call(
        "POST",
        f"/accounts/{account_id}/deposits",
        models.deposit,
        body=body,
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def ledger(
    account_id: str, limit: int | None, cursor: str | None
) -> Call[models.Page[models.LedgerEntry]]:
    read = models.page_of(models.ledger_entry)
    return Call("GET", f"/accounts/{account_id}/ledger", read, params=_page(limit, cursor))


def transfer(transfer: Transfer, idempotency_key: str | None) -> Call[models.Payment]:
    return Call(
        "POST",
        "/payments/transfer",
        models.payment,
        body=transfer.body(),
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def get_payment(payment_id: str, wait: float | None) -> Call[models.Payment]:
    if wait is not None and not 0 <= wait <= MAX_WAIT_S:
        raise ValueError(f"wait is 0 to {MAX_WAIT_S} seconds")
    params = _drop_none({"wait": _seconds(wait) if wait else None})
    return Call("GET", f"/payments/{payment_id}", models.payment, params=params, wait_s=wait or 0)


def list_payments(
    account_id: str | None, status: str | None, limit: int | None, cursor: str | None
) -> Call[models.Page[models.Payment]]:
    params = {**_drop_none({"account_id": account_id, "status": status}), **_page(limit, cursor)}
    return Call("GET", "/payments", models.page_of(models.payment), params=params)


def capture(
    payment_id: str, amount: int | None, idempotency_key: str | None
) -> Call[models.Payment]:
    return Call(
        "POST",
        f"/payments/{payment_id}/capture",
        models.payment,
        body=None if amount is None else {"amount": amount},
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def void(payment_id: str, idempotency_key: str | None) -> Call[models.Payment]:
    return Call(
        "POST",
        f"/payments/{payment_id}/void",
        models.payment,
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def refund(
    payment_id: str, amount: int | None, description: str | None, idempotency_key: str | None
) -> Call[models.Payment]:
    body = _given({"amount": amount, "description": description})
    return Call(
        "POST",
        f"/payments/{payment_id}/refunds",
        models.payment,
        body=body or None,
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def submit_batch(
    transfers: Sequence[Transfer], atomic: bool, idempotency_key: str | None
) -> Call[models.NewBatch]:
    body = {"atomic": atomic, "transfers": [transfer.body() for transfer in transfers]}
    return Call(
        "POST",
        "/payments/batch",
        models.new_batch,
        body=body,
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def get_batch(batch_id: str) -> Call[models.Batch]:
    return Call("GET", f"/batches/{batch_id}", models.batch)


def list_batch_payments(
    batch_id: str, limit: int | None, cursor: str | None
) -> Call[models.Page[models.Payment]]:
    read = models.page_of(models.payment)
    return Call("GET", f"/batches/{batch_id}/payments", read, params=_page(limit, cursor))


def create_webhook_endpoint(
    url: str, event_types: Sequence[str] | None, description: str | None
) -> Call[models.NewWebhookEndpoint]:
    body = _given({"url": url, "description": description})
    if event_types is not None:
        body["event_types"] = list(event_types)
    return Call(
        "POST",
        "/webhook-endpoints",
        models.new_webhook_endpoint,
        body=body,
        retry_unsent_only=True,
    )


def list_webhook_endpoints(
    limit: int | None, cursor: str | None
) -> Call[models.Page[models.WebhookEndpoint]]:
    read = models.page_of(models.webhook_endpoint)
    return Call("GET", "/webhook-endpoints", read, params=_page(limit, cursor))


def get_webhook_endpoint(endpoint_id: str) -> Call[models.WebhookEndpoint]:
    return Call("GET", f"/webhook-endpoints/{endpoint_id}", models.webhook_endpoint)


def update_webhook_endpoint(
    endpoint_id: str,
    *,
    url: str | None,
    event_types: Sequence[str] | None,
    all_event_types: bool,
    status: str | None,
) -> Call[models.WebhookEndpoint]:
    # The service reads ``"event_types": null`` as "every type", and an absent field as
    # "unchanged": ``None`` here is the latter, ``all_event_types`` the former.
    if all_event_types and event_types is not None:
        raise ValueError("give event_types or all_event_types, not both")
    body = _given({"url": url, "status": status})
    if event_types is not None:
        body["event_types"] = list(event_types)
    elif all_event_types:
        body["event_types"] = None
    return Call("PATCH", f"/webhook-endpoints/{endpoint_id}", models.webhook_endpoint, body=body)


def delete_webhook_endpoint(endpoint_id: str) -> Call[None]:
    return Call("DELETE", f"/webhook-endpoints/{endpoint_id}", _nothing)


def rotate_webhook_secret(endpoint_id: str) -> Call[str]:
    # Sent twice, the second rotation would drop at once the secret the receiver still
    # uses (the service keeps one previous secret), leaving no overlap to switch in.
    return Call(
        "POST",
        f"/webhook-endpoints/{endpoint_id}/rotate-secret",
        models.webhook_secret,
        retry_unsent_only=True,
    )


def list_webhook_deliveries(
    endpoint_id: str, limit: int | None, cursor: str | None
) -> Call[models.Page[models.WebhookDelivery]]:
    read = models.page_of(models.webhook_delivery)
    path = f"/webhook-endpoints/{endpoint_id}/deliveries"
    return Call("GET", path, read, params=_page(limit, cursor))


def retry_webhook_delivery(endpoint_id: str, delivery_id: str) -> Call[models.WebhookDelivery]:
    # Sent twice, it only makes the delivery due now twice: retried like a read.
    path = f"/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"
    return Call("POST", path, models.webhook_delivery)


def list_events(
    after: str | None, types: Sequence[str] | None, limit: int | None, wait: float | None
) -> Call[models.Page[models.Event]]:
    # A stream with ``wait`` never ends, so it must hold each request: 0 would spin.
    if wait is not None and not 0 < wait <= MAX_WAIT_S:
        raise ValueError(f"wait is more than 0 and at most {MAX_WAIT_S} seconds")
    params = _drop_none(
        {
            "after": after,
            "types": ",".join(types) if types else None,
            "limit": limit,
            "wait": _seconds(wait) if wait else None,
        }
    )
    read = models.page_of(models.event)
    return Call("GET", "/events", read, params=params, wait_s=wait or 0)


def _seconds(value: float) -> str:
    """``10`` rather than ``10.0``: the service takes fractions, and whole seconds read better."""
    return str(int(value)) if value == int(value) else f"{value:.3f}".rstrip("0")
