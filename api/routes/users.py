from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.body import json_of, validated
from api.deps import CurrentUser, ServicesDep
from api.routes._docs import problems, takes
from api.routes.accounts import Cursor, Limit
from api.schemas import ApiKeyCreated, ApiKeyPublic, ListPage, UserCreate, UserCreated
from shared import users

router = APIRouter(tags=["users"])


@router.post(
    "/users",
    status_code=201,
    responses=problems(409, 413, 415, 422),
    openapi_extra=takes(UserCreate),
)
async def sign_up(request: Request, services: ServicesDep) -> UserCreated:
    """Sign up. The answer carries the user's API key, shown this once."""
    body = validated(UserCreate, await json_of(request))
    user, api_key = await services.write(users.sign_up, body.name, str(body.email))
    return UserCreated(
        id=user.id, name=user.name, email=user.email, created_at=user.created_at, api_key=api_key
    )


@router.post("/users/me/api-keys", status_code=201, responses=problems(401, 413, 415))
async def create_api_key(user: CurrentUser, services: ServicesDep) -> ApiKeyCreated:
    """Another API key for the caller, shown this once; the others stay live."""
    key, api_key = await services.write(users.create_api_key, user.id)
    return ApiKeyCreated(id=key.id, api_key=api_key, created_at=key.created_at)


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
