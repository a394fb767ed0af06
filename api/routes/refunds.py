"""Refunds: the receiving owner of a completed payment gives some or all of it back."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentUser, IdempotencyKey, RateLimited, ServicesDep
from api.routes._docs import problems, rate_limited
from api.routes.payments import transfer_headers
from api.schemas import PaymentPublic, RefundCreate
from shared import logs, refunds
from shared.refunds import Refund

router = APIRouter(tags=["payments"], responses=problems(401))


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=202,
    responses=problems(400, 404, 409, 413, 415, 422) | rate_limited(202),
    dependencies=[RateLimited],
)
async def refund(
    payment_id: str,
    user: CurrentUser,
    key: IdempotencyKey,
    services: ServicesDep,
    response: Response,
    body: RefundCreate | None = None,
) -> PaymentPublic:
    """Refund a completed payment: a new payment from its receiver back to its sender,
    `refund_of` set, recorded `pending` and settled by the worker; poll `Location`.

    Only the owner of the receiving account (anyone else: `404`). `amount` defaults to
    what is left to refund. Idempotent by `Idempotency-Key`, scoped to the payment.
    `409 payment_not_refundable` when it is not `completed` or is itself a refund;
    `422 refund_exceeds_payment` when nothing is left or `amount` is more than is.
    """
    payment, replayed = await services.write(
        refunds.submit_refund,
        user.id,
        payment_id,
        Refund() if body is None else body.to_refund(),
        key,
    )
    logs.bind(payment_id=payment.id)
    if replayed:
        logs.bind(idempotent_replayed="true")
    else:
        services.queue.send(payment.id)
        services.metrics.payments_accepted.inc()
    response.headers.update(transfer_headers(payment, replayed))
    return PaymentPublic.model_validate(payment)
