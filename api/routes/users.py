from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.exceptions import RequestValidationError

from api.deps import CurrentUser, ServicesDep
from api.limiter import rate_limit_headers
from api.problems import ApiProblem
from api.routes._docs import problems, rate_limited
from api.routes.accounts import Cursor, Limit
from api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ListPage,
    UserCreate,
    UserCreated,
)
from shared import users
from shared.records import Signing

router = APIRouter(tags=["users"])

_NO_BODY = ApiKeyCreate(signing="none")


async def _sign_up_limit(request: Request, response: Response, services: ServicesDep) -> None:
    """Counts the sign-up against its client address's limit, before anything is read
    past JSON syntax or written: a refused one records nothing."""
    limiter = services.signup_limiter
    if limiter is None:
        return
    address = request.client.host if request.client is not None else "unknown"
    decision = await limiter.check(f"signup:{address}")
    headers = rate_limit_headers(limiter.policy, decision)
    if not decision.allowed:
        raise ApiProblem(
            429,
            "rate_limited",
            f"too many sign-ups from this address: retry after {headers['Retry-After']} s",
            headers,
        )
    response.headers.update(headers)


@router.post(
    "/users",
    status_code=201,
    responses=problems(409, 413, 415, 422) | rate_limited(201),
    dependencies=[Depends(_sign_up_limit)],
)
async def sign_up(body: UserCreate, services: ServicesDep) -> UserCreated:
    """Sign up. The answer carries the user's API key, shown this once.

    At most `P2P_SIGNUP_RATE_LIMIT_BURST` sign-ups at once from one client address, then
    `P2P_SIGNUP_RATE_LIMIT_PER_HOUR`: past that, `429 rate_limited` with `Retry-After`.
    """
    user, api_key = await services.write(users.sign_up, body.name, str(body.email))
    return UserCreated(
        id=user.id, name=user.name, email=user.email, created_at=user.created_at, api_key=api_key
    )


@router.post(
    "/users/me/api-keys",
    status_code=201,
    responses=problems(401, 409, 413, 415, 422),
    response_model_exclude_none=True,
)
async def create_api_key(
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    body: Annotated[ApiKeyCreate, Body()] = _NO_BODY,
) -> ApiKeyCreated:
    """Another API key for the caller, shown this once; the others stay live.

    With `{"signing": "required"}` the answer also holds the key's `signing_secret`, shown
    this once too, and every request made with the key must then be signed. A user holds
    at most `P2P_MAX_API_KEYS` live keys: one more is `409 too_many_api_keys`.
    """
    if body is _NO_BODY and await request.body():
        # FastAPI takes a JSON null for no body at all, and gives the default.
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "Input should be an object", "type": "model_type"}]
        )
    signing = Signing(body.signing)
    new = await services.write(
        users.create_api_key, user.id, signing, max_keys=services.settings.max_api_keys
    )
    return ApiKeyCreated(
        id=new.key.id,
        api_key=new.api_key,
        created_at=new.key.created_at,
        signing=new.key.signing,
        signing_secret=new.signing_secret,
    )


@router.get("/users/me/api-keys", responses=problems(401, 422))
def list_api_keys(
    user: CurrentUser, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None
) -> ListPage[ApiKeyPublic]:
    """The caller's API keys, revoked ones too, newest first; never a key itself."""
    page = users.list_api_keys(services.db, user.id, limit=limit, cursor=cursor)
    return ListPage(
        data=[ApiKeyPublic.model_validate(k) for k in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.delete(
    "/users/me/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses=problems(401, 404, 409),
)
async def revoke_api_key(key_id: str, user: CurrentUser, services: ServicesDep) -> None:
    """Revoke one of the caller's keys: refused at once by every API process.

    Revoking a revoked key again is a no-op `204`; the caller's last live key is `409`.
    """
    await services.write(users.revoke_api_key, user.id, key_id)
