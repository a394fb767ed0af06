"""``Client``: the synchronous client, on ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType

import httpx

from p2p_client import _calls, _exchange, _options, errors, models
from p2p_client._calls import Call, T
from p2p_client.retry import Attempts, RetryPolicy, default_rng
from p2p_client.signing import Target


class Client:
    """Talks to the payment service; one per base URL and API key, closed when done.

    Payments and deposits are sent with an ``Idempotency-Key`` (a fresh one unless given)
    and retried on network errors, ``5xx`` and ``429`` with that same key, within
    ``retry``. Reads are retried alike. A problem answer raises its ``ProblemError``.

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
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = default_rng,
    ) -> None:
        self._http = httpx.Client(
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

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # Users and API keys

    def create_user(self, name: str, email: str) -> models.NewUser:
        """Sign up; the answer holds the user's first API key, shown this once."""
        return self._send(_calls.create_user(name, email))

    def create_api_key(self, *, signing: bool = False) -> models.NewApiKey:
        """Another key for the caller; ``signing=True``: its requests must be signed."""
        return self._send(_calls.create_api_key(signing))

    def list_api_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.ApiKey]:
        return self._send(_calls.list_api_keys(limit, cursor))

    def revoke_api_key(self, key_id: str) -> None:
        self._send(_calls.revoke_api_key(key_id))

    # Accounts, deposits and ledgers

    def create_account(self, currency: str) -> models.Account:
        return self._send(_calls.create_account(currency))

    def get_account(self, account_id: str) -> models.Account:
        return self._send(_calls.get_account(account_id))

    def list_accounts(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.Account]:
        return self._send(_calls.list_accounts(limit, cursor))

    def set_account_status(self, account_id: str, status: str) -> models.Account:
        """Freeze (``"frozen"``) or unfreeze (``"active"``) an account."""
        return self._send(_calls.set_account_status(account_id, status))

    def deposit(
        self,
        account_id: str,
        amount: int,
        *,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.Deposit:
        return self._send(_calls.deposit(account_id, amount, description, idempotency_key))

    def ledger(
        self, account_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> models.Page[models.LedgerEntry]:
        return self._send(_calls.ledger(account_id, limit, cursor))

    # Payments

    def transfer(
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
        call = _calls.transfer(
            from_account_id,
            to_account_id,
            amount,
            currency,
            description=description,
            idempotency_key=idempotency_key,
            capture=capture,
            hold_seconds=hold_seconds,
        )
        return self._send(call)

    def get_payment(self, payment_id: str, *, wait: float | None = None) -> models.Payment:
        """The payment; with ``wait`` (0-30 s), once it is settled or that time is up."""
        return self._send(_calls.get_payment(payment_id, wait))

    def wait(self, payment_id: str, timeout: float) -> models.Payment:
        """The payment once it is settled, or as it stands after ``timeout`` seconds
        (check ``settled``): long-polls in steps of at most 30 s."""
        deadline = self._clock() + timeout
        while True:
            step = min(_calls.MAX_WAIT_S, max(0.0, deadline - self._clock()))
            payment = self.get_payment(payment_id, wait=step)
            if payment.settled or self._clock() >= deadline:
                return payment

    def list_payments(
        self,
        *,
        account_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.Page[models.Payment]:
        return self._send(_calls.list_payments(account_id, status, limit, cursor))

    # Events

    def events(
        self,
        *,
        after: str | None = None,
        types: Sequence[str] | None = None,
        wait: float | None = None,
        limit: int | None = None,
    ) -> EventStream:
        """The caller's events, oldest first, from after ``after`` (the oldest kept when
        omitted). Without ``wait`` the stream ends once caught up; with it, it follows the
        feed for ever, long-polling ``wait`` seconds at a time. Keep ``stream.cursor`` to
        resume from where it stands."""
        return EventStream(self, _exchange.EventFeed(after, types, limit, wait))

    def _send(self, call: Call[T]) -> T:
        attempts = Attempts(self._retry, self._clock, self._rng)
        while True:
            request = _exchange.build_request(self._http, call, self._timeout_s)
            try:
                response = self._http.send(request)
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
            self._sleep(delay)


class EventStream:
    """An iterator of events that follows the feed's cursors."""

    def __init__(self, client: Client, feed: _exchange.EventFeed) -> None:
        self._client = client
        self._feed = feed

    @property
    def cursor(self) -> str | None:
        """Where to resume: past every page whose last event was handed out."""
        return self._feed.cursor

    def __iter__(self) -> Iterator[models.Event]:
        while True:
            page = self._client._send(self._feed.call())
            yield from self._feed.events(page)
            if not self._feed.more(page):
                return
