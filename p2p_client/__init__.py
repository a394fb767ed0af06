"""A Python client of the payment service: submit, then wait; follow events; verify
webhooks; sign requests. ``Client`` is synchronous, ``AsyncClient`` asynchronous."""

from p2p_client.async_client import AsyncClient, AsyncEventStream
from p2p_client.client import Client, EventStream
from p2p_client.errors import (
    Conflict,
    FieldError,
    InvalidRequest,
    NotFound,
    P2PError,
    ProblemError,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedAnswer,
    Unreachable,
    WebhookVerificationFailed,
)
from p2p_client.models import (
    Account,
    ApiKey,
    Deposit,
    Event,
    LedgerEntry,
    NewApiKey,
    NewUser,
    Page,
    Payment,
    User,
)
from p2p_client.retry import NO_RETRIES, RetryPolicy
from p2p_client.signing import RequestSigner, content_digest
from p2p_client.webhooks import verify_webhook

__all__ = [
    "NO_RETRIES",
    "Account",
    "ApiKey",
    "AsyncClient",
    "AsyncEventStream",
    "Client",
    "Conflict",
    "Deposit",
    "Event",
    "EventStream",
    "FieldError",
    "InvalidRequest",
    "LedgerEntry",
    "NewApiKey",
    "NewUser",
    "NotFound",
    "P2PError",
    "Page",
    "Payment",
    "ProblemError",
    "RateLimited",
    "RequestSigner",
    "RetryPolicy",
    "ServerError",
    "Unauthorized",
    "UnexpectedAnswer",
    "Unreachable",
    "User",
    "WebhookVerificationFailed",
    "content_digest",
    "verify_webhook",
]
