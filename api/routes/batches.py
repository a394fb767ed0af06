"""Batches: many transfers in one request, one key, one transaction; read back by the
caller who submitted them."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.responses import Response

from api.answers import answer
from api.body import check_amount, json_of, validated
from api.deps import CurrentUser, ServicesDep, idempotency_key, rate_limit
from api.routes._docs import problems, rate_limited, takes
from api.routes.accounts import Cursor, Limit
from api.schemas import BatchAccepted, BatchCreate, BatchPublic, ListPage, PaymentPublic
from shared import batches, logs

router = APIRouter(tags=["batches"], responses=problems(401))


@router.post(
    "/payments/batch",
    status_code=202,
    response_model=BatchAccepted,
    responses=problems(400, 404, 413, 415, 422) | rate_limited(202),
    openapi_extra=takes(BatchCreate, idempotent=True),
)
async def submit_batch(request: Request, user: CurrentUser, services: ServicesDep) -> Response:
    """Accept 1 to 1,000 transfers at once: recorded `pending` in one transaction, settled
    by the worker in the batch's order; poll `Location`.

    Each item is checked as `POST /payments/transfer` checks it; one refused item
    refuses the whole batch with that item's problem, its `errors[].loc` naming the item,
    and records nothing. Idempotent by `Idempotency-Key`, scoped to the caller.
    Rate-limited per user (`429`) as one request.
    """
    data = await json_of(request)
    headers = await rate_limit(request, services)
    key = idempotency_key(request)
    body = validated(BatchCreate, data)
    for index, item in enumerate(body.transfers):
        check_amount(item.amount, services.settings.max_amount, ("transfers", index))
    hold_seconds = services.settings.hold_seconds
    transfers = [item.to_transfer(hold_seconds) for item in body.transfers]
    accepted, replayed = await services.write(
        batches.submit_batch, batches.BatchRequest(user.id, body.atomic, transfers, key)
    )
    logs.bind(batch_id=accepted.batch.id)
    headers["Location"] = f"/batches/{accepted.batch.id}"
    if replayed:
        logs.bind(idempotent_replayed="true")
        headers["Idempotent-Replayed"] = "true"
    else:
        services.metrics.payments_accepted.inc(len(accepted.payments))
        # One message for the whole batch: it names the last payment, and the worker
        # settles the oldest payments in groups until that one is settled.
        services.queue.send(accepted.payments[-1].id)
    return answer(BatchAccepted.of(accepted.batch, accepted.payments), 202, headers)


@router.get("/batches/{batch_id}", responses=problems(404))
async def get_batch(batch_id: str, user: CurrentUser, services: ServicesDep) -> BatchPublic:
    """A batch, to the caller who submitted it: `pending` until none of its payments is."""
    batch = await anyio.to_thread.run_sync(batches.get_batch, services.db, user.id, batch_id)
    logs.bind(batch_id=batch.id)
    return BatchPublic.of(batch)


@router.get("/batches/{batch_id}/payments", responses=problems(404, 422))
def list_batch_payments(
    batch_id: str,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[PaymentPublic]:
    """A batch's payments in the batch's order, to the caller who submitted it."""
    page = batches.batch_payments(services.db, user.id, batch_id, limit=limit, cursor=cursor)
    return ListPage(
        data=[PaymentPublic.model_validate(p) for p in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
