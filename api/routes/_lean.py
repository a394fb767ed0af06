"""``LeanRoute``: a route FastAPI documents but calls as a plain ``endpoint(request)``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response


class LeanRoute(APIRoute):
    """An operation whose endpoint takes the ``Request`` (and string path parameters) and
    returns its ``Response``, checking everything itself with ``api.body`` and
    ``api.deps``.

    FastAPI still describes it from its declarations (``response_model``, ``responses``,
    ``openapi_extra``), but calls it without solving dependencies or validating its
    answer once more: on the submit path those cost more than the database write.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        taken = (
            dependant.query_params,
            dependant.header_params,
            dependant.cookie_params,
            dependant.body_params,
            dependant.dependencies,
        )
        if dependant.request_param_name != "request" or any(taken):
            raise TypeError(f"{path}: a lean endpoint takes `request` and path parameters only")
        if any(param.field_info.annotation is not str for param in dependant.path_params):
            raise TypeError(f"{path}: a lean endpoint's path parameters are strings")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[..., Coroutine[Any, Any, Response]] = self.endpoint

        async def handle(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handle
