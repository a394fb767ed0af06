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
    Batch,
    BatchCounts,
    Deposit,
    Event,
    LedgerEntry,
    NewApiKey,
    NewBatch,
    NewUser,
    NewWebhookEndpoint,
    Page,
    Payment,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from p2p_client.retry import NO_RETRIES, RetryPolicy
from p2p_client.signing import RequestSigner, content_digest
from p2p_client.transfers import Transfer
from p2p_client.webhooks import verify_webhook

__all__ = [
    "NO_RETRIES",
    "Account",
    "ApiKey",
    "AsyncClient",
    "AsyncEventStream",
    "Batch",
    "BatchCounts",
    "Client",
    "Conflict",
    "Deposit",
    "Event",
    "EventStream",
    "FieldError",
    "InvalidRequest",
    "LedgerEntry",
    "NewApiKey",
    "NewBatch",
    "NewUser",
    "NewWebhookEndpoint",
    "NotFound",
    "P2PError",
    "Page",
    "Payment",
    "ProblemError",
    "RateLimited",
    "RequestSigner",
    "RetryPolicy",
    "ServerError",
    "Transfer",
    "Unauthorized",
    "UnexpectedAnswer",
    "Unreachable",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookVerificationFailed",
    "content_digest",
    "verify_webhook",
]
