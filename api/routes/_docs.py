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


def check_amount(amount: int, max_amount: int) -> None:
    """``P2P_MAX_AMOUNT`` is a setting, so the schema cannot carry it: check it here.

    Raises:
        RequestValidationError: the amount is above the setting.
    """
    if amount > max_amount:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "amount"),
                    "msg": f"Input should be less than or equal to {max_amount}",
                    "type": "less_than_equal",
                }
            ]
        )
