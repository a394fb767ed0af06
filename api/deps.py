"""What routes ask for: the app's services, the caller, the Idempotency-Key, the rate limit.

Each is a plain function of the request, written once; ``ServicesDep`` and ``CurrentUser``
hand the first two to routes as FastAPI dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Request

from api.limiter import RateLimiter, rate_limit_headers
from api.metrics import ApiMetrics
from api.problems import ApiProblem, unauthorized
from api.waiter import Waiter
from jobs.producer import SettlementQueue
from shared.committer import Batched, GroupCommitter, Item
from shared.records import User
from shared.settings import Settings
from shared.store import Connection, Database

_IDEMPOTENCY_KEY = re.compile(rb"[\x20-\x7e]{1,255}")
# What /openapi.json promises a client: whitespace around a header value is not part of
# it, so a key that starts or ends with a space would not arrive as sent.
IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[!-~]([ -~]{0,253}[!-~])?$",
}

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    writer: GroupCommitter
    queue: SettlementQueue
    waiter: Waiter
    metrics: ApiMetrics
    limiter: RateLimiter | None
    """``None`` when ``P2P_RATE_LIMIT_PER_S`` or ``P2P_RATE_LIMIT_BURST`` is 0."""
    signup_limiter: RateLimiter | None = None
    """Sign-ups per client address; ``None`` when ``P2P_SIGNUP_RATE_LIMIT_*`` is 0."""

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(conn, *args, **kwargs)``, group-committed; returns once it is durable."""
        return await self.writer.submit_async(fn, *args, **kwargs)

    async def write_batched(
        self, many: Batched[Item, T], item: Item, *, then: Callable[[T], None] | None = None
    ) -> T:
        """``many(conn, [item])``, group-committed, run by one call with the other items of
        its commit (``GroupCommitter.submit_batched_async``); returns once it is durable.
        ``then(result)`` runs on the writer thread once it is."""
        return await self.writer.submit_batched_async(many, item, then=then)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def caller_of(request: Request) -> User:
    """The user ``AuthenticationMiddleware`` found for the request.

    Raises:
        ApiProblem: ``401``, a public path reached a route that needs a caller.
    """
    user: User | None = request.scope.get("state", {}).get("user")
    if user is None:
        raise unauthorized()
    return user


async def _services(request: Request) -> Services:
    return services_of(request)


async def _current_user(request: Request) -> User:
    return caller_of(request)


def idempotency_key(request: Request) -> str:
    """The request's ``Idempotency-Key``, without the optional whitespace (SP, HTAB) that
    HTTP allows around a field value and a proxy may add or trim (RFC 9110, 5.5): ``k``,
    `` k`` and ``k\t`` are one key.

    A comma is one of the key's printable characters, so ``k1, k2`` is one key; two
    ``Idempotency-Key`` lines are refused, as nothing says which of them the client meant.

    Raises:
        ApiProblem: ``400 idempotency_key_missing``; ``400 idempotency_key_invalid``, the
            header is repeated, or its value is not 1 to 255 printable ASCII characters.
    """
    values = [value for name, value in request.scope["headers"] if name == b"idempotency-key"]
    if not values:
        raise ApiProblem(400, "idempotency_key_missing", "the Idempotency-Key header is required")
    if len(values) > 1:
        raise ApiProblem(
            400, "idempotency_key_invalid", "the Idempotency-Key header is given more than once"
        )
    key = bytes(values[0]).strip(b" \t")
    if _IDEMPOTENCY_KEY.fullmatch(key) is None:
        raise ApiProblem(
            400,
            "idempotency_key_invalid",
            "the Idempotency-Key must be 1 to 255 printable ASCII characters",
        )
    return key.decode("ascii")


async def rate_limit(request: Request, services: Services) -> dict[str, str]:
    """Counts the request against its user's limit (all of the user's API keys share
    one), before anything is written; the ``RateLimit`` fields of the answer (none when
    limits are off).

    Raises:
        ApiProblem: ``429 rate_limited``, with ``Retry-After``.
    """
    limiter = services.limiter
    if limiter is None:
        return {}
    user: User | None = request.scope.get("state", {}).get("user")
    if user is None:
        raise unauthorized()
    decision = await limiter.check(user.id)
    headers = rate_limit_headers(limiter.policy, decision)
    if not decision.allowed:
        raise ApiProblem(
            429,
            "rate_limited",
            f"too many requests from this user: retry after {headers['Retry-After']} s",
            headers,
        )
    return headers


ServicesDep = Annotated[Services, Depends(_services)]
CurrentUser = Annotated[User, Depends(_current_user)]
