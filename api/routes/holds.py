"""Capture and void: the receiving owner ends an authorization, answered at once."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentUser, IdempotencyKey, RateLimited, ServicesDep
from api.routes._docs import problems, rate_limited
from api.schemas import CaptureCreate, PaymentPublic
from shared import holds, logs
from shared.holds import ActionAnswer
from shared.records import Payment

router = APIRouter(tags=["payments"], responses=problems(401))

_ANSWERS = problems(400, 404, 409, 413, 415, 422) | rate_limited(200)


def _render(payment: Payment) -> str:
    return PaymentPublic.model_validate(payment).model_dump_json()


def _answer(payment_id: str, answer: ActionAnswer) -> Response:
    """The answer as first sent (a replay's: stored), with ``Idempotent-Replayed``."""
    logs.bind(payment_id=payment_id)
    headers = {}
    if answer.replayed:
        logs.bind(idempotent_replayed="true")
        headers["Idempotent-Replayed"] = "true"
    return Response(
        answer.body,
        status_code=answer.status_code,
        headers=headers,
        media_type="application/json",
    )


@router.post(
    "/payments/{payment_id}/capture",
    response_model=PaymentPublic,
    responses=_ANSWERS,
    dependencies=[RateLimited],
)
async def capture(
    payment_id: str,
    user: CurrentUser,
    key: IdempotencyKey,
    services: ServicesDep,
    body: CaptureCreate | None = None,
) -> Response:
    """Capture an authorized payment: move `amount` (default: all of it) from sender to
    receiver and release the whole hold; `completed`, `captured_amount` set.

    Only the owner of the receiving account (anyone else: `404`). Idempotent by
    `Idempotency-Key`, scoped to the payment. `409 payment_not_authorized` when it is
    not `authorized`; `409 account_frozen` while either account is frozen (the hold
    stays); `422 capture_exceeds_authorization`.
    """
    answer = await services.write(
        holds.capture,
        user.id,
        payment_id,
        amount=None if body is None else body.amount,
        idempotency_key=key,
        render=_render,
    )
    return _answer(payment_id, answer)


@router.post(
    "/payments/{payment_id}/void",
    response_model=PaymentPublic,
    responses=_ANSWERS,
    dependencies=[RateLimited],
)
async def void(
    payment_id: str, user: CurrentUser, key: IdempotencyKey, services: ServicesDep
) -> Response:
    """Void an authorized payment: release its hold, move nothing; `voided`.

    Only the owner of the receiving account (anyone else: `404`). Idempotent by
    `Idempotency-Key`, scoped to the payment. `409 payment_not_authorized` when it is
    not `authorized`.
    """
    answer = await services.write(
        holds.void, user.id, payment_id, idempotency_key=key, render=_render
    )
    return _answer(payment_id, answer)
