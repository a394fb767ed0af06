from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api.answers import answer
from api.body import check_amount, json_of, validated
from api.deps import (
    CurrentUser,
    Services,
    ServicesDep,
    caller_of,
    idempotency_key,
    rate_limit,
    services_of,
)
from api.routes._docs import problems, rate_limited, takes
from api.routes._lean import LeanRoute
from api.routes.accounts import Cursor, Limit
from api.schemas import ListPage, PaymentPublic, TransferCreate
from shared import logs, payments
from shared.records import Payment, PaymentStatus

router = APIRouter(tags=["payments"], responses=problems(401))

TRANSFER_PATH = "/payments/transfer"


async def transfer(request: Request) -> Response:
    """Accept a transfer: recorded `pending`, settled by the worker; poll `Location`.

    Idempotent by `Idempotency-Key`, scoped to the sending account. Rate-limited per
    API key (`429`); a replay counts too.
    """
    services = services_of(request)
    user = caller_of(request)
    data = await json_of(request)
    headers = await rate_limit(request, services)
    key = idempotency_key(request)
    body = validated(TransferCreate, data)
    check_amount(body.amount, services.settings.max_amount)

    def wake_the_worker(recorded: tuple[Payment, bool]) -> None:
        # On the writer thread, for every new payment of a commit in turn: the sending
        # thread wakes once per group, not once per request.
        payment, replayed = recorded
        if not replayed:
            services.queue.send(payment.id)

    payment, replayed = await services.write_batched(
        payments.submit_transfers,
        payments.TransferRequest(user.id, body.to_transfer(services.settings.hold_seconds), key),
        then=wake_the_worker,
    )
    return accepted(services, payment, replayed, headers)


def accepted(
    services: Services, payment: Payment, replayed: bool, headers: dict[str, str]
) -> Response:
    """The ``202`` of a payment recorded for the worker to settle (or found again by its
    key): ``Location`` to poll, ``Idempotent-Replayed`` on a replay."""
    logs.bind(payment_id=payment.id)
    headers["Location"] = f"/payments/{payment.id}"
    if replayed:
        logs.bind(idempotent_replayed="true")
        headers["Idempotent-Replayed"] = "true"
    else:
        services.metrics.payments_accepted.inc()
    return answer(PaymentPublic.model_validate(payment), 202, headers)


transfer_route = LeanRoute(
    TRANSFER_PATH,
    transfer,
    methods=["POST"],
    tags=["payments"],
    status_code=202,
    response_model=PaymentPublic,
    responses=problems(400, 401, 404, 413, 415, 422) | rate_limited(202),
    openapi_extra=takes(TransferCreate, idempotent=True),
)


@router.get("/payments/{payment_id}", responses=problems(404, 422))
async def get_payment(
    payment_id: str,
    user: CurrentUser,
    services: ServicesDep,
    wait: Annotated[
        float, Query(ge=0, le=30, description="Seconds to wait for a final status.")
    ] = 0,
) -> PaymentPublic:
    """A payment, to the owner of its sender or receiver. `wait` long-polls."""
    payment = await anyio.to_thread.run_sync(payments.get_payment, services.db, user.id, payment_id)
    logs.bind(payment_id=payment.id)
    if payment.status is PaymentStatus.PENDING and wait > 0:
        await services.waiter.wait_settled(payment.id, wait)
        payment = await anyio.to_thread.run_sync(
            payments.get_payment, services.db, user.id, payment_id
        )
    return PaymentPublic.model_validate(payment)


@router.get("/payments", responses=problems(404, 422))
def list_payments(
    user: CurrentUser,
    services: ServicesDep,
    account_id: Annotated[str | None, Query(max_length=64)] = None,
    status: PaymentStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[PaymentPublic]:
    """The caller's payments, sent and received, newest first."""
    page = payments.list_payments(
        services.db, user.id, account_id=account_id, status=status, limit=limit, cursor=cursor
    )
    return ListPage(
        data=[PaymentPublic.model_validate(p) for p in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
