from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep
from api.routes._docs import problems
from api.schemas import UserCreate, UserCreated
from shared import users

router = APIRouter(tags=["users"])


@router.post("/users", status_code=201, responses=problems(409, 413, 415, 422))
async def sign_up(body: UserCreate, services: ServicesDep) -> UserCreated:
    """Sign up. The answer carries the user's API key, shown this once."""
    user, api_key = await services.write(users.sign_up, body.name, str(body.email))
    return UserCreated(
        id=user.id, name=user.name, email=user.email, created_at=user.created_at, api_key=api_key
    )
