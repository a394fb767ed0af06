from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api.answers import answer
from api.body import check_amount, json_of, validated
from api.deps import (
    CurrentUser,
    ServicesDep,
    caller_of,
    idempotency_key,
    rate_limit,
    services_of,
)
from api.routes._docs import problems, rate_limited, takes
from api.routes._lean import LeanRoute
from api.schemas import (
    AccountCreate,
    AccountPublic,
    AccountUpdate,
    DepositCreate,
    DepositPublic,
    LedgerEntryPublic,
    ListPage,
)
from shared import accounts, logs
from shared.records import AccountStatus

router = APIRouter(tags=["accounts"], responses=problems(401))

Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=100, description="`next_cursor` of a page.")]


@router.post(
    "/accounts",
    status_code=201,
    responses=problems(413, 415, 422),
    openapi_extra=takes(AccountCreate),
)
async def open_account(request: Request, user: CurrentUser, services: ServicesDep) -> AccountPublic:
    """Open an account for the caller, with balance 0."""
    body = validated(AccountCreate, await json_of(request))
    account = await services.write(accounts.open_account, user.id, body.currency)
    return AccountPublic.model_validate(account)


@router.get("/accounts", responses=problems(422))
def list_accounts(
    user: CurrentUser, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None
) -> ListPage[AccountPublic]:
    """The caller's accounts, newest first."""
    page = accounts.list_accounts(services.db, user.id, limit=limit, cursor=cursor)
    return ListPage(
        data=[AccountPublic.model_validate(a) for a in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.get("/accounts/{account_id}", responses=problems(404))
def get_account(account_id: str, user: CurrentUser, services: ServicesDep) -> AccountPublic:
    return AccountPublic.model_validate(accounts.get_account(services.db, user.id, account_id))


@router.patch(
    "/accounts/{account_id}",
    responses=problems(404, 413, 415, 422),
    openapi_extra=takes(AccountUpdate),
)
async def update_account(
    account_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> AccountPublic:
    """Freeze or unfreeze: a frozen account neither sends nor receives."""
    body = validated(AccountUpdate, await json_of(request))
    account = await services.write(
        accounts.set_status, user.id, account_id, AccountStatus(body.status)
    )
    return AccountPublic.model_validate(account)


async def deposit(request: Request, account_id: str) -> Response:
    """Money in from outside, applied at once. Idempotent by `Idempotency-Key`.

    Rate-limited per API key (`429`); a replay counts too.
    """
    services = services_of(request)
    user = caller_of(request)
    data = await json_of(request)
    headers = await rate_limit(request, services)
    key = idempotency_key(request)
    body = validated(DepositCreate, data)
    check_amount(body.amount, services.settings.max_amount)
    made, replayed = await services.write(
        accounts.deposit,
        user.id,
        account_id,
        amount=body.amount,
        description=body.description,
        idempotency_key=key,
    )
    logs.bind(deposit_id=made.id)
    if replayed:
        logs.bind(idempotent_replayed="true")
        headers["Idempotent-Replayed"] = "true"
    return answer(DepositPublic.model_validate(made), 201, headers)


deposit_route = LeanRoute(
    "/accounts/{account_id}/deposits",
    deposit,
    methods=["POST"],
    tags=["accounts"],
    status_code=201,
    response_model=DepositPublic,
    responses=problems(400, 401, 404, 409, 413, 415, 422) | rate_limited(201),
    openapi_extra=takes(DepositCreate, idempotent=True),
)


@router.get("/accounts/{account_id}/ledger", responses=problems(404, 422))
def ledger(
    account_id: str,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[LedgerEntryPublic]:
    """The account's ledger entries, newest first."""
    page = accounts.list_ledger(services.db, user.id, account_id, limit=limit, cursor=cursor)
    return ListPage(
        data=[LedgerEntryPublic.model_validate(e) for e in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
