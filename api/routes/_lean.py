"""``LeanRoute``: a route FastAPI documents but calls as a plain ``endpoint(request)``;
``LeanDispatch``: the hot ones found by a dictionary lookup instead of FastAPI's routing."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


class LeanRoute(APIRoute):
    """An operation whose endpoint takes the ``Request`` (and string path parameters) and
    returns its ``Response``, checking everything itself with ``api.body`` and
    ``api.deps``.

    FastAPI still describes it from its declarations (``response_model``, ``responses``,
    ``openapi_extra``), but calls it without solving dependencies or validating its
    answer once more: on the submit path those cost more than the database write.
    ``create_app`` puts it on the app's own router, never through ``include_router``,
    whose dependencies it would not run.
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
        # Without FastAPI's request_response around it: what the endpoint raises goes to
        # the app's exception handlers all the same (ExceptionMiddleware), and with no
        # dependencies there is no exit stack to close.
        self.app = self._respond

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        response = await self.endpoint(request, **request.path_params)
        await response(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[..., Coroutine[Any, Any, Response]] = self.endpoint

        async def handle(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handle


class LeanDispatch:
    """Innermost of the app's own middleware: a request for a ``LeanRoute`` of a literal
    path goes straight to that route, found by its method and path, ahead of FastAPI's
    routing and ``AsyncExitStackMiddleware`` (which a route without dependencies does not
    use). What it raises goes to the app's exception handlers through Starlette's own
    ``ExceptionMiddleware``, as from the router. Everything else goes on unchanged.

    The route stays on the app's router too, where the OpenAPI document and a wrong
    method (``405``) find it.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[LeanRoute],
        handlers: Mapping[Any, Callable[[Request, Exception], Any]],
    ) -> None:
        self.app = app
        # The crash handler stays with ServerErrorMiddleware, outside, as for any route.
        mine = {key: handler for key, handler in handlers.items() if key not in (500, Exception)}
        self._routes: dict[tuple[str, str], tuple[LeanRoute, ASGIApp]] = {}
        for route in routes:
            if route.param_convertors:
                raise TypeError(f"{route.path}: only a literal path is dispatched directly")
            for method in route.methods or ():
                self._routes[(method, route.path)] = (
                    route,
                    ExceptionMiddleware(route.app, handlers=mine),
                )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._routes.get((scope.get("method", ""), scope.get("path", "")))
        if found is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, app = found
        scope["route"] = route
        scope.setdefault("path_params", {})
        await app(scope, receive, send)
