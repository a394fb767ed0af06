"""Capture and void: the receiving owner ends an authorization, answered at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.body import json_of, validated
from api.deps import CurrentUser, ServicesDep, idempotency_key, rate_limit
from api.routes._docs import problems, rate_limited, takes
from api.schemas import CaptureCreate, PaymentPublic
from shared import holds, logs
from shared.holds import ActionAnswer
from shared.records import Payment

router = APIRouter(tags=["payments"], responses=problems(401))

_ANSWERS = problems(400, 404, 409, 413, 415, 422) | rate_limited(200)
# A void takes no body: only the Idempotency-Key parameter of ``takes``.
_KEYED: dict[str, Any] = {"parameters": takes(CaptureCreate, idempotent=True)["parameters"]}


def _render(payment: Payment) -> str:
    return PaymentPublic.model_validate(payment).model_dump_json()


def _answer(payment_id: str, answer: ActionAnswer, headers: dict[str, str]) -> Response:
    """The answer as first sent (a replay's: the one kept), with ``Idempotent-Replayed``."""
    logs.bind(payment_id=payment_id)
    if answer.replayed:
        logs.bind(idempotent_replayed="true")
        headers["Idempotent-Replayed"] = "true"
    return Response(
        answer.body, status_code=answer.status_code, headers=headers, media_type="application/json"
    )


@router.post(
    "/payments/{payment_id}/capture",
    response_model=PaymentPublic,
    responses=_ANSWERS,
    openapi_extra=takes(CaptureCreate, idempotent=True, optional=True),
)
async def capture(
    payment_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> Response:
    """Capture an authorized payment: move `amount` (default: all of it) from sender to
    receiver and release the whole hold; `completed`, `captured_amount` set.

    Only the owner of the receiving account (anyone else: `404`). Idempotent by
    `Idempotency-Key`, scoped to the payment. `409 payment_not_authorized` when it is
    not `authorized`; `409 account_frozen` while either account is frozen (the hold
    stays); `422 capture_exceeds_authorization`. Rate-limited per user (`429`).
    """
    data = await json_of(request) if await request.body() else None
    headers = await rate_limit(request, services)
    key = idempotency_key(request)
    body = CaptureCreate() if data is None else validated(CaptureCreate, data)
    answer = await services.write(
        holds.capture,
        user.id,
        payment_id,
        amount=body.amount,
        idempotency_key=key,
        render=_render,
    )
    return _answer(payment_id, answer, headers)


@router.post(
    "/payments/{payment_id}/void",
    response_model=PaymentPublic,
    responses=_ANSWERS,
    openapi_extra=_KEYED,
)
async def void(
    payment_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> Response:
    """Void an authorized payment: release its hold, move nothing; `voided`.

    Only the owner of the receiving account (anyone else: `404`). Idempotent by
    `Idempotency-Key`, scoped to the payment. `409 payment_not_authorized` when it is
    not `authorized`. Rate-limited per user (`429`).
    """
    headers = await rate_limit(request, services)
    key = idempotency_key(request)
    answer = await services.write(
        holds.void, user.id, payment_id, idempotency_key=key, render=_render
    )
    return _answer(payment_id, answer, headers)
