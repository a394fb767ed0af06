"""The submit fast lane: a plainly valid transfer, within its rate limit, is answered
here without FastAPI's routing and dependency solving, by the code the route runs.

Everything else — a body or an ``Idempotency-Key`` that is not plainly valid, an amount
over ``P2P_MAX_AMOUNT``, a request over its limit — goes on to the route, which answers it
as it always has. A request is handed on only before anything was counted or written,
so the route sees it as if this layer were not there: a refused rate-limit check uses up
nothing, and the route asks again.
"""

from __future__ import annotations

import json

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import Services, valid_idempotency_key
from api.limiter import rate_limit_headers
from api.problems import problem, status_of
from api.routes.payments import TRANSFER_PATH, accept_transfer, transfer_headers
from api.schemas import PaymentPublic, TransferCreate
from shared.errors import P2PError
from shared.records import User


class TransferFastLane:
    """In front of the router, behind authentication: ``POST /payments/transfer``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TRANSFER_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        # BodyMiddleware, outside, has read and size-checked the body: one message.
        message = await receive()
        body = message.get("body", b"")
        body_given = False

        async def again() -> Message:
            """The body once more for the route, then the client's own messages."""
            nonlocal body_given
            if body_given:
                return await receive()
            body_given = True
            return message

        services: Services = scope["app"].state.services
        state = scope["state"]
        user: User = state["user"]
        key = _plain_idempotency_key(scope)
        transfer = _plain_transfer(body)
        if key is None or transfer is None or transfer.amount > services.settings.max_amount:
            await self.app(scope, again, send)
            return
        headers: dict[str, str] = {}
        if services.limiter is not None:
            decision = await services.limiter.check(user.id)
            if not decision.allowed:
                await self.app(scope, again, send)
                return
            headers = rate_limit_headers(services.limiter.policy, decision)
        scope["route"] = _ROUTE
        try:
            payment, replayed = await accept_transfer(services, user, transfer, key)
        except P2PError as error:
            response: Response = problem(status_of(error), error.code, error.detail)
        else:
            headers.update(transfer_headers(payment, replayed))
            response = Response(
                PaymentPublic.model_validate(payment).model_dump_json(),
                status_code=202,
                headers=headers,
                media_type="application/json",
            )
        await response(scope, receive, send)


def _plain_idempotency_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            key = bytes(value).decode("latin-1")
            return key if valid_idempotency_key(key) else None
    return None


def _plain_transfer(body: bytes) -> TransferCreate | None:
    """The body as the route would read it (``json.loads``, then the model), or ``None``
    for anything else: bad JSON, bad UTF-8, nesting too deep, a field out of bounds. The
    route answers those."""
    try:
        return TransferCreate.model_validate(json.loads(body))
    except Exception:
        return None


class _Route:
    """What the request metrics read of a matched route: its template."""

    path = TRANSFER_PATH


_ROUTE = _Route()
