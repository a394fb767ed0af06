"""The one reader of request bodies: UTF-8 JSON, bounded, every key once, then the model.

Every route that takes a body reads it here, in two steps a route may put other checks
between (a transfer checks its rate limit and key after the JSON and before the fields):
``await json_of(request)``, then ``validated(Model, data)``.

A bad body must cost about what a good one does. JSON is parsed by the standard
library's C scanner, and an object with more than ``MAX_MEMBERS`` members is refused
before pydantic sees it, so no body makes more than that many field errors to find.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from api.problems import ApiProblem

M = TypeVar("M", bound=BaseModel)

MAX_MEMBERS = 64
"""Members of one JSON object: our bodies have at most five fields."""

_BYTE_ORDER_MARKS = (codecs.BOM_UTF8, codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)
NOT_UTF8 = "the body must be JSON in UTF-8 without a byte order mark (RFC 8259)"


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _TooManyMembers(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_MEMBERS:
        raise _TooManyMembers
    made = dict(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return made


_DECODER = json.JSONDecoder(object_pairs_hook=_object)


async def json_of(request: Request) -> Any:
    """The request's body as JSON (``BodyMiddleware`` has bounded its size and checked its
    media type). Raises what ``parse_json`` raises."""
    return parse_json(await request.body())


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON: RFC 8259 with every object's keys unique.

    Raises:
        ApiProblem: ``400 bad_request``: the bytes are not UTF-8 (UTF-16 and UTF-32 are
            not), start with a byte order mark, nest deeper than the parser goes, or hold
            an integer of more than 4,300 digits.
        RequestValidationError: ``422``: no body, not JSON, a key given twice in one
            object, or an object of more than ``MAX_MEMBERS`` members.
    """
    if not raw:
        raise _invalid((), "missing", "Field required")
    # JSON text starts with an ASCII character, so UTF-16 and UTF-32 show a NUL in the
    # first four bytes (the detection of RFC 4627, section 3).
    if raw.startswith(_BYTE_ORDER_MARKS) or b"\x00" in raw[:4]:
        raise ApiProblem(400, "bad_request", NOT_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiProblem(400, "bad_request", NOT_UTF8) from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise _invalid((error.pos,), "json_invalid", f"JSON decode error: {error.msg}") from None
    except _DuplicateKey as error:
        raise _invalid((error.key,), "duplicate_key", "Key given more than once") from None
    except _TooManyMembers:
        msg = f"An object may have at most {MAX_MEMBERS} members"
        raise _invalid((), "too_many_members", msg) from None
    except (RecursionError, ValueError):
        # Nesting past the interpreter's recursion limit; an integer past
        # sys.get_int_max_str_digits().
        detail = "the body is too deeply nested or a number too long"
        raise ApiProblem(400, "bad_request", detail) from None


def validated(model: type[M], data: Any) -> M:
    """``data`` as ``model``, with pydantic's errors located under ``body``.

    Raises:
        RequestValidationError: ``422``, every field error (at most ``MAX_MEMBERS`` + the
            model's fields).
    """
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(
            [
                {**item, "loc": ("body", *item["loc"])}
                for item in error.errors(include_url=False, include_input=False)
            ]
        ) from None


def check_amount(amount: int, max_amount: int) -> None:
    """``P2P_MAX_AMOUNT`` is a setting, so the model cannot carry it: checked after it.

    Raises:
        RequestValidationError: ``422``, the amount is above the setting.
    """
    if amount > max_amount:
        msg = f"Input should be less than or equal to {max_amount}"
        raise _invalid(("amount",), "less_than_equal", msg)


def _invalid(where: tuple[str | int, ...], kind: str, msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body", *where), "msg": msg}])
