"""What routes ask for: the app's services, the caller, the Idempotency-Key, the rate limit."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Header, Request, Response

from api.limiter import RateLimiter, rate_limit_headers
from api.metrics import ApiMetrics
from api.problems import ApiProblem, unauthorized
from api.waiter import Waiter
from jobs.producer import SettlementQueue
from shared.committer import Batched, GroupCommitter, Item
from shared.records import User
from shared.settings import Settings
from shared.store import Connection, Database

_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
# What /openapi.json promises a client: HTTP trims spaces around a header value, so a key
# that starts or ends with one would not arrive as sent.
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


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _current_user(request: Request) -> User:
    user: User | None = request.scope.get("state", {}).get("user")
    if user is None:
        raise unauthorized()
    return user


async def _idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required: 1-255 printable ASCII characters, unique per request.",
        ),
    ] = None,
) -> str:
    if key is None:
        raise ApiProblem(400, "idempotency_key_missing", "the Idempotency-Key header is required")
    if not valid_idempotency_key(key):
        raise ApiProblem(
            400,
            "idempotency_key_invalid",
            "the Idempotency-Key must be 1 to 255 printable ASCII characters",
        )
    return key


def valid_idempotency_key(key: str) -> bool:
    return _IDEMPOTENCY_KEY.fullmatch(key) is not None


async def _rate_limit(request: Request, response: Response) -> None:
    """Counts the request against its user's limit (all of the user's API keys share
    one), before anything is written."""
    limiter = (await _services(request)).limiter
    if limiter is None:
        return
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
    response.headers.update(headers)


ServicesDep = Annotated[Services, Depends(_services)]
CurrentUser = Annotated[User, Depends(_current_user)]
IdempotencyKey = Annotated[str, Depends(_idempotency_key)]
RateLimited = Depends(_rate_limit)
"""For ``dependencies=[RateLimited]``: route dependencies run before the parameters'."""
