"""Refunds: the receiving owner of a completed payment gives some or all of it back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.body import json_of, validated
from api.deps import CurrentUser, ServicesDep, idempotency_key, rate_limit
from api.routes._docs import problems, rate_limited, takes
from api.routes.payments import accepted
from api.schemas import PaymentPublic, RefundCreate
from shared import refunds
from shared.refunds import Refund

router = APIRouter(tags=["payments"], responses=problems(401))


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=202,
    response_model=PaymentPublic,
    responses=problems(400, 404, 409, 413, 415, 422) | rate_limited(202),
    openapi_extra=takes(RefundCreate, idempotent=True, optional=True),
)
async def refund(
    payment_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> Response:
    """Refund a completed payment: a new payment from its receiver back to its sender,
    `refund_of` set, recorded `pending` and settled by the worker; poll `Location`.

    Only the owner of the receiving account (anyone else: `404`). `amount` defaults to
    what is left to refund. Idempotent by `Idempotency-Key`, scoped to the payment.
    `409 payment_not_refundable` when it is not `completed` or is itself a refund;
    `422 refund_exceeds_payment` when nothing is left or `amount` is more than is.
    Rate-limited per user (`429`).
    """
    data = await json_of(request) if await request.body() else None
    headers = await rate_limit(request, services)
    key = idempotency_key(request)
    body = Refund() if data is None else validated(RefundCreate, data).to_refund()
    payment, replayed = await services.write(refunds.submit_refund, user.id, payment_id, body, key)
    if not replayed:
        services.queue.send(payment.id)
    return accepted(services, payment, replayed, headers)
