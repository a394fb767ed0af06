"""OpenAPI helpers: which problems an operation may answer."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError

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


def check_amount(amount: int, max_amount: int, at: tuple[str | int, ...] = ("body",)) -> None:
    """``P2P_MAX_AMOUNT`` is a setting, so the schema cannot carry it: check it here.
    ``at``: where in the request the amount's object is.

    Raises:
        RequestValidationError: the amount is above the setting.
    """
    if amount > max_amount:
        raise RequestValidationError(
            [
                {
                    "loc": (*at, "amount"),
                    "msg": f"Input should be less than or equal to {max_amount}",
                    "type": "less_than_equal",
                }
            ]
        )
