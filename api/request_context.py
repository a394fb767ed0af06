"""The request id, the log fields of a request, its one access line and its metrics;
``Cache-Control: no-store`` on every answer.

It runs outside every other layer, Starlette's ``ServerErrorMiddleware`` included, so
that every answer carries ``X-Request-ID`` — a ``500``, and the ``401``/``413``/``415``
answered by middleware before any route runs — and every request gets its access line
and is counted and timed, once. Headers are never logged.
"""

from __future__ import annotations

import logging
import os
import re
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ApiMetrics
from shared import logs

REQUEST_ID_HEADER = b"x-request-id"
# Answers carry API keys (and other secrets shown once) and balances: no cache, shared or
# private, may keep any of them. On every answer, so a new one that holds a secret
# cannot be left out; a route that sets its own Cache-Control keeps it.
NO_STORE = (b"cache-control", b"no-store")
# What a client may choose: short, and nothing that could forge a log field or a header.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# The access line shows at most this much of a path a client made up.
_PATH_SHOWN = 256

# Labels come from a closed set: a client must not be able to mint metric series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("p2p.access")


def install(app: FastAPI, metrics: ApiMetrics) -> None:
    """Make ``RequestContextMiddleware`` the outermost layer of ``app``.

    ``add_middleware`` cannot: Starlette always puts ``ServerErrorMiddleware`` outside
    the user's middleware, and its ``500`` answers would go out without the request id.
    """
    build = app.build_middleware_stack

    def build_outermost() -> ASGIApp:
        return RequestContextMiddleware(build(), metrics)

    app.build_middleware_stack = build_outermost  # type: ignore[method-assign]


class RequestContextMiddleware:
    """Takes the client's ``X-Request-ID`` when it is sane, or makes one; puts it on the
    request's log lines and on the answer; logs one access line per request; counts it
    by route template and status, and times it. Every answer gets ``NO_STORE``."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _given_request_id(scope) or os.urandom(16).hex().encode()
        header = (REQUEST_ID_HEADER, request_id)
        token = logs.begin(request_id=request_id.decode())
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: a response object's own headers stay as they were.
                headers = [*message.get("headers", ()), header]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            route = scope.get("route")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe_request(
                method, getattr(route, "path", "unmatched"), status, seconds
            )
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, status, seconds)
            logs.end(token)


def _given_request_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return bytes(value) if _SANE_REQUEST_ID.fullmatch(value) else None
    return None


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    route = scope.get("route")
    access_log.info(
        "request",
        extra={
            "method": scope["method"],
            "route": getattr(route, "path", None),
            "path": scope["path"][:_PATH_SHOWN],
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )
