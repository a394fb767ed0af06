"""``AsyncClient``: the asynchronous client, on ``httpx.AsyncClient``; the same calls as
``Client``, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType

import httpx

from p2p_client import _calls, _exchange, _options, errors, models
from p2p_client._calls import Call, T
from p2p_client.retry import Attempts, RetryPolicy, default_rng
from p2p_client.signing import Target
from p2p_client.transfers import Transfer


class AsyncClient:
    """Talks to the payment service; one per base URL and API key, closed when done.
    Everything ``Client`` says holds here.

    Transfers, deposits, captures, voids, refunds and batches are sent with an
    ``Idempotency-Key`` (a fresh one unless given) and retried on network errors, ``5xx``
    and ``429`` with that same key, within ``retry``. Reads are retried alike. A problem
    answer raises its ``ProblemError``.

    ``sleep``, ``clock`` (monotonic), ``wall_clock`` (Unix time) and ``rng`` are there for
    tests, which record the delays instead of waiting them out.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        signing_secret: str | None = None,
        signing_key_id: str | None = None,
        sign_target: Target = "target-uri",
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = default_rng,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=_options.headers_of(api_key),
            auth=_options.signer_of(
                api_key, signing_secret, signing_key_id, sign_target, wall_clock
            ),
            transport=transport,
            follow_redirects=False,
        )
        self._retry = retry or RetryPolicy()
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # Users and API keys

    async def create_user(self, name: str, email: str) -> models.NewUser:
        """Sign up; the answer holds the user's first API key, shown this once."""
        return await self._send(_calls.create_user(name, email))

    async def create_api_key(self, *, signing: bool = False) -> models.NewApiKey:
        """Another key for the caller; ``signing=True``: its requests must be signed."""
        return await self._send(_calls.create_api_key(signing))

    async def list_api_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.ApiKey]:
        return await self._send(_calls.list_api_keys(limit, cursor))

    async def revoke_api_key(self, key_id: str) -> None:
        await self._send(_calls.revoke_api_key(key_id))

    # Accounts, deposits and ledgers

    async def create_account(self, currency: str) -> models.Account:
        return await self._send(_calls.create_account(currency))

    async def get_account(self, account_id: str) -> models.Account:
        return await self._send(_calls.get_account(account_id))

    async def list_accounts(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.Account]:
        return await self._send(_calls.list_accounts(limit, cursor))

    async def set_account_status(self, account_id: str, status: str) -> models.Account:
        """Freeze (``"frozen"``) or unfreeze (``"active"``) an account."""
        return await self._send(_calls.set_account_status(account_id, status))

    async def deposit(
        self,
        account_id: str,
        amount: int,
        *,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.Deposit:
        return await self._send(_calls.deposit(account_id, amount, description, idempotency_key))

    async def ledger(
        self, account_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.LedgerEntry]:
        return await self._send(_calls.ledger(account_id, limit, cursor))

    # Payments

    async def transfer(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: int,
        currency: str,
        description: str | None = None,
        idempotency_key: str | None = None,
        capture: str | None = None,
        hold_seconds: int | None = None,
    ) -> models.Payment:
        """Submit a transfer; the answer is the payment, ``pending`` until a worker
        settles it (see ``wait``). Sent again after a failure, it is the same payment."""
        transfer = Transfer(
            from_account_id, to_account_id, amount, currency, description, capture, hold_seconds
        )
        return await self._send(_calls.transfer(transfer, idempotency_key))

    async def get_payment(self, payment_id: str, *, wait: float | None = None) -> models.Payment:
        """The payment; with ``wait`` (0-30 s), once it is settled or that time is up."""
        return await self._send(_calls.get_payment(payment_id, wait))

    # The service's long-poll budget, not a cancellation: the call always returns a payment.
    async def wait(self, payment_id: str, timeout: float) -> models.Payment:  # noqa: ASYNC109
        """The payment once it is settled, or as it stands after ``timeout`` seconds
        (check ``settled``): long-polls in steps of at most 30 s."""
        deadline = self._clock() + timeout
        while True:
            step = min(_calls.MAX_WAIT_S, max(0.0, deadline - self._clock()))
            payment = await self.get_payment(payment_id, wait=step)
            if payment.settled or self._clock() >= deadline:
                return payment

    async def list_payments(
        self,
        *,
        account_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.Page[models.Payment]:
        return await self._send(_calls.list_payments(account_id, status, limit, cursor))

    # Holds and refunds

    async def capture(
        self, payment_id: str, *, amount: int | None = None, idempotency_key: str | None = None
    ) -> models.Payment:
        """Capture an ``authorized`` payment: move ``amount`` (default: all of it) and
        release the hold; the answer is the payment ``completed``. Receiver's owner only."""
        return await self._send(_calls.capture(payment_id, amount, idempotency_key))

    async def void(self, payment_id: str, *, idempotency_key: str | None = None) -> models.Payment:
        """Release an ``authorized`` payment's hold; the answer is the payment ``voided``."""
        return await self._send(_calls.void(payment_id, idempotency_key))

    async def refund(
        self,
        payment_id: str,
        *,
        amount: int | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.Payment:
        """Give back ``amount`` (default: all that is left) of a ``completed`` payment: the
        answer is the refund, a new payment ``pending`` until a worker settles it."""
        return await self._send(_calls.refund(payment_id, amount, description, idempotency_key))

    # Batches

    async def submit_batch(
        self,
        transfers: Sequence[Transfer],
        *,
        atomic: bool = False,
        idempotency_key: str | None = None,
    ) -> models.NewBatch:
        """Submit 1 to 1,000 transfers in one request; ``atomic=True``: all complete or
        none does. One refused item refuses the batch (its ``errors`` name the item)."""
        return await self._send(_calls.submit_batch(transfers, atomic, idempotency_key))

    async def get_batch(self, batch_id: str) -> models.Batch:
        return await self._send(_calls.get_batch(batch_id))

    async def list_batch_payments(
        self, batch_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.Payment]:
        """The batch's payments, in the batch's order."""
        return await self._send(_calls.list_batch_payments(batch_id, limit, cursor))

    # Webhook endpoints

    async def create_webhook_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
    ) -> models.NewWebhookEndpoint:
        """Subscribe ``url`` to the caller's events (every type unless ``event_types``);
        the answer holds the endpoint's secret, shown this once."""
        return await self._send(_calls.create_webhook_endpoint(url, event_types, description))

    async def list_webhook_endpoints(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.WebhookEndpoint]:
        return await self._send(_calls.list_webhook_endpoints(limit, cursor))

    async def get_webhook_endpoint(self, endpoint_id: str) -> models.WebhookEndpoint:
        return await self._send(_calls.get_webhook_endpoint(endpoint_id))

    async def update_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        all_event_types: bool = False,
        status: str | None = None,
    ) -> models.WebhookEndpoint:
        """Change what is given: the URL, the event types (``all_event_types=True``:
        every type) or the status (``"enabled"``, ``"disabled"``)."""
        call = _calls.update_webhook_endpoint(
            endpoint_id,
            url=url,
            event_types=event_types,
            all_event_types=all_event_types,
            status=status,
        )
        return await self._send(call)

    async def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        await self._send(_calls.delete_webhook_endpoint(endpoint_id))

    async def rotate_webhook_secret(self, endpoint_id: str) -> str:
        """A new secret, shown this once; deliveries carry the old one's signature too
        for a while (24 h by default), so the receiver can switch without missing one."""
        return await self._send(_calls.rotate_webhook_secret(endpoint_id))

    async def list_webhook_deliveries(
        self, endpoint_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.WebhookDelivery]:
        """The endpoint's deliveries, newest first, with their attempts."""
        return await self._send(_calls.list_webhook_deliveries(endpoint_id, limit, cursor))

    async def retry_webhook_delivery(
        self, endpoint_id: str, delivery_id: str
    ) -> models.WebhookDelivery:
        """Deliver again now, whatever the delivery's status: it is ``pending`` again."""
        return await self._send(_calls.retry_webhook_delivery(endpoint_id, delivery_id))

    # Events

    def events(
        self,
        *,
        after: str | None = None,
        types: Sequence[str] | None = None,
        wait: float | None = None,
        limit: int | None = None,
    ) -> AsyncEventStream:
        """The caller's events, oldest first, from after ``after`` (the oldest kept when
        omitted). Without ``wait`` the stream ends once caught up; with it, it follows the
        feed for ever, long-polling ``wait`` seconds at a time. Keep ``stream.cursor`` to
        resume from where it stands."""
        return AsyncEventStream(self, _exchange.EventFeed(after, types, limit, wait))

    async def _send(self, call: Call[T]) -> T:
        attempts = Attempts(self._retry, self._clock, self._rng)
        while True:
            request = _exchange.build_request(self._http, call, self._timeout_s)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                delay = attempts.delay(None) if _exchange.resend_after_error(call, error) else None
                if delay is None:
                    raise _exchange.unreachable(call, error) from error
            else:
                try:
                    return _exchange.read_answer(response, call, self._wall_clock)
                except errors.ProblemError as failure:
                    if not _exchange.resend_after_problem(call, failure):
                        raise
                    delay = attempts.delay(failure.retry_after)
                    if delay is None:
                        raise
            await self._sleep(delay)


class AsyncEventStream:
    """An asynchronous iterator of events that follows the feed's cursors."""

    def __init__(self, client: AsyncClient, feed: _exchange.EventFeed) -> None:
        self._client = client
        self._feed = feed

    @property
    def cursor(self) -> str | None:
        """Where to resume: past every page whose last event was handed out."""
        return self._feed.cursor

    async def __aiter__(self) -> AsyncIterator[models.Event]:
        while True:
            page = await self._client._send(self._feed.call())
            for event in self._feed.events(page):
                yield event
            if not self._feed.more(page):
                return
