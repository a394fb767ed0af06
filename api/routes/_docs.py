"""OpenAPI helpers: the body and headers an operation reads, and the problems it answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

from api.deps import IDEMPOTENCY_KEY_SCHEMA
from api.schemas import Problem


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for these problem statuses (rewritten to problem+json in the app)."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }


def _header(description: str, *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": 'The limit, e.g. `"burst";q=100;w=1`: `q` at once, all back in `w` s.',
    "RateLimit": 'What is left, e.g. `"burst";r=99;t=1`: `r` now, all back in `t` s.',
}


def rate_limited(success: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a rate-limited operation: ``429``, and the fields on ``success``."""
    refused = problems(429)[429]
    refused["headers"] = {
        "Retry-After": _header("Whole seconds until a request would pass.", required=True),
        **{name: _header(text, required=True) for name, text in _RATE_LIMIT_HEADERS.items()},
    }
    sent = {
        name: _header(f"When limits are on. {text}", required=False)
        for name, text in _RATE_LIMIT_HEADERS.items()
    }
    return {429: refused, success: {"headers": sent}}


def takes(
    model: type[BaseModel], *, idempotent: bool = False, optional: bool = False
) -> dict[str, Any]:
    """``openapi_extra=`` of an operation that reads a ``model`` body with ``api.body``
    (and an ``Idempotency-Key`` with ``api.deps``), which FastAPI does not see. The app
    puts ``model``'s schema in the document's components. ``optional``: the body may be
    left out altogether."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    extra: dict[str, Any] = {
        "requestBody": {"required": not optional, "content": {"application/json": {"schema": ref}}}
    }
    if idempotent:
        extra["parameters"] = [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": (
                    "1-255 printable ASCII characters, unique per request, sent once;"
                    " spaces or tabs around it are not part of it."
                ),
                "schema": dict(IDEMPOTENCY_KEY_SCHEMA),
            }
        ]
    return extra
