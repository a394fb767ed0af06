"""RFC 9457 problem answers: the one place where an error becomes an HTTP status."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import errors

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
MAX_ERRORS = 20
"""Errors a validation problem lists at most."""

# Any other P2PError is a 400. Starlette's exception middleware finds the handler of the
# nearest class in an error's MRO, so a subclass of one of these answers its status.
_STATUS: dict[type[errors.P2PError], int] = {
    errors.P2PError: 400,
    errors.SignatureInvalid: 401,
    errors.NotFound: 404,
    errors.EmailTaken: 409,
    errors.AccountFrozen: 409,
    errors.LastApiKey: 409,
    errors.TooManyApiKeys: 409,
    errors.PaymentNotAuthorized: 409,
    errors.TooManyWebhookEndpoints: 409,
    errors.WebhookEndpointDisabled: 409,
    errors.PaymentNotRefundable: 409,
    errors.SameAccount: 422,
    errors.CurrencyMismatch: 422,
    errors.BalanceLimitExceeded: 422,
    errors.IdempotencyKeyReused: 422,
    errors.InvalidCursor: 422,
    errors.CaptureExceedsAuthorization: 422,
    errors.WebhookUrlNotAllowed: 422,
    errors.RefundExceedsPayment: 422,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "not_ready",
}


class ApiProblem(Exception):
    """A condition of the HTTP layer itself (authentication, headers, size)."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


KEY_REQUIRED = "a valid API key is required: Authorization: Bearer <api_key>"


def unauthorized(detail: str = KEY_REQUIRED) -> ApiProblem:
    return ApiProblem(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:p2p:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extensions,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def batch_item_problem(error: errors.BatchItemRefused) -> JSONResponse:
    """The problem the item would have had alone, its ``errors[].loc`` naming the item."""
    refusal = error.refusal
    return problem(
        status_of(refusal),
        refusal.code,
        error.detail,
        errors=[{"loc": ["body", "transfers", error.index], "msg": refusal.detail}],
    )


def status_of(error: errors.P2PError) -> int:
    """The status of the nearest class in the error's MRO that the mapping names."""
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400


def validation_problem(errs: Sequence[Any]) -> JSONResponse:
    """``422`` naming the first ``MAX_ERRORS`` errors: the answer to a bad body stays
    about as small as the body's own fields."""
    items = [
        ([_part(part) for part in e.get("loc", ())], str(e.get("msg", "")))
        for e in errs[:MAX_ERRORS]
    ]
    where, msg = items[0] if items else ([], "invalid request")
    more = f" (and {len(errs) - MAX_ERRORS} more errors)" if len(errs) > MAX_ERRORS else ""
    return problem(
        422,
        "validation_error",
        f"{'.'.join(map(str, where))}: {msg}{more}" if where else msg,
        errors=[{"loc": loc, "msg": text} for loc, text in items],
    )


def _part(part: object) -> str | int:
    """A ``loc`` part: a list's index stays a number (``["body", "transfers", 7]``)."""
    return part if isinstance(part, int) else str(part)


_METHODS = frozenset({"delete", "get", "head", "options", "patch", "post", "put", "trace"})


def _allowed_methods(request: Request, starlettes: str) -> str:
    """The methods ``/openapi.json`` gives the path: Starlette names only those of the
    first route matching it (``/accounts`` has one route per method), and a literal path
    such as ``/payments/transfer`` comes before the template ``/payments/{payment_id}``."""
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    path = request.url.path
    if path in paths:
        items = [paths[path]]
    else:
        items = [item for template, item in paths.items() if _template(template).fullmatch(path)]
    methods = sorted({method.upper() for item in items for method in item if method in _METHODS})
    return ", ".join(methods) or starlettes


def _template(path: str) -> re.Pattern[str]:
    """``/accounts/{account_id}`` as a pattern matching ``/accounts/acc_...``."""
    segments = path.split("/")
    return re.compile(
        "/".join(
            "[^/]+" if s.startswith("{") and s.endswith("}") else re.escape(s) for s in segments
        )
    )


def problem_of(error: errors.P2PError) -> JSONResponse:
    """The answer to a domain error met outside the app's exception handlers (in a
    middleware): its own class's status in the one mapping above."""
    return problem(_STATUS[type(error)], error.code, error.detail)


def install(app: FastAPI) -> None:
    """Answer every error as a problem: ours, FastAPI's and Starlette's."""

    def on_domain_error(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def answer(request: Request, error: Exception) -> JSONResponse:
            assert isinstance(error, errors.P2PError)
            return problem(status, error.code, error.detail)

        return answer

    async def on_api_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiProblem)
        return problem(error.status, error.code, error.detail, headers=error.headers)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return validation_problem(error.errors())

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = _CODE_BY_STATUS.get(error.status_code, "error")
        detail = (
            error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
        )
        if error.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}"
        headers = dict(error.headers) if error.headers else {}
        if error.status_code == 405:
            headers["Allow"] = _allowed_methods(request, headers.get("Allow", ""))
        return problem(error.status_code, code, detail, headers=headers or None)

    async def on_crash(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "internal_error",
            "the server failed; retrying with the same Idempotency-Key is safe",
        )

    async def on_batch_item(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, errors.BatchItemRefused)
        return batch_item_problem(error)

    for cls, status in _STATUS.items():
        app.add_exception_handler(cls, on_domain_error(status))
    app.add_exception_handler(errors.BatchItemRefused, on_batch_item)
    app.add_exception_handler(ApiProblem, on_api_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
