"""Keyset pagination: a cursor names the last row seen, so any page costs the same."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from shared.errors import InvalidCursor
from shared.records import Page, T
from shared.store import Row

_PREFIX = "c1:"
BEFORE_ANY = 2**63 - 1


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{seq}".encode()).decode().rstrip("=")


def cursor_bound(cursor: str | None) -> int:
    """The ``seq`` below which the page starts: every row's, for the first page.

    Raises:
        InvalidCursor: the cursor was not made by ``encode_cursor``.
    """
    if cursor is None:
        return BEFORE_ANY
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("the cursor is not one this service handed out") from None
    number = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or not number.isdigit() or int(number) > BEFORE_ANY:
        raise InvalidCursor("the cursor is not one this service handed out")
    return int(number)


def page_of(rows: list[Row], limit: int, build: Callable[[Row], T]) -> Page[T]:
    """``rows`` were fetched newest first with ``LIMIT limit + 1``."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([build(row) for row in rows], encode_cursor(rows[-1]["seq"]) if more else None)
