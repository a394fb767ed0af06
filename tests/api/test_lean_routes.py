"""A ``LeanRoute`` takes nothing FastAPI would have to solve, so calling it directly
skips no check: anything else is refused when the route is made."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, Request
from starlette.responses import Response

from api.routes._lean import LeanDispatch, LeanRoute


async def _endpoint(request: Request) -> Response:
    return Response()


async def _permission() -> None:
    return None


async def _with_dependency(
    request: Request, allowed: Annotated[None, Depends(_permission)]
) -> Response:
    return Response()


async def _with_query(request: Request, limit: int = 1) -> Response:
    return Response()


async def _with_path_number(request: Request, number: int) -> Response:
    return Response()


@pytest.mark.parametrize(
    ("path", "endpoint", "extra"),
    [
        ("/x", _with_dependency, {}),
        ("/x", _endpoint, {"dependencies": [Depends(_permission)]}),
        ("/x", _with_query, {}),
        ("/x/{number}", _with_path_number, {}),
    ],
    ids=["parameter_dependency", "route_dependency", "query", "typed_path_parameter"],
)
def test_a_lean_route_refuses_what_it_would_not_run(
    path: str, endpoint: object, extra: dict[str, object]
) -> None:
    with pytest.raises(TypeError, match="lean endpoint"):
        LeanRoute(path, endpoint, methods=["POST"], **extra)  # type: ignore[arg-type]


def test_only_a_literal_path_is_dispatched_directly() -> None:
    async def by_id(request: Request, item_id: str) -> Response:
        return Response()

    route = LeanRoute("/items/{item_id}", by_id, methods=["POST"])

    with pytest.raises(TypeError, match="literal path"):
        LeanDispatch(_endpoint, [route], {})  # type: ignore[arg-type]
