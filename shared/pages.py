"""Keyset pagination: a cursor names the last row seen, so any page costs the same.

The cursor holds that row's id and nothing else: what the caller saw on the page
already. Its position (``seq``, the order rows were written in, which would tell how
busy the whole service is) is looked up again when the cursor comes back, by the id's
unique index and only among the rows the caller may see.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Literal

from shared.errors import InvalidCursor
from shared.records import Page, T
from shared.store import Connection, Row

_PREFIX = "c2:"
# Ids are a type prefix and random text (``shared.clock.new_id``; API keys ``key_`` + hex).
_ID = re.compile(r"[a-z]{2,4}_[0-9A-Za-z]{1,60}")
BEFORE_ANY = 2**63 - 1

Listed = Literal[
    "accounts", "api_keys", "ledger_entries", "payments", "webhook_endpoints", "webhook_deliveries"
]
"""The tables lists page through."""


def encode_cursor(item_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{item_id}".encode()).decode().rstrip("=")


def cursor_item(cursor: str) -> str:
    """The id of the row the cursor names.

    Raises:
        InvalidCursor: the cursor was not made by ``encode_cursor``.
    """
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("the cursor is not one this service handed out") from None
    item_id = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or _ID.fullmatch(item_id) is None:
        raise InvalidCursor("the cursor is not one this service handed out")
    return item_id


def cursor_bound(
    conn: Connection, cursor: str | None, table: Listed, visible: str, *params: object
) -> int:
    """The ``seq`` below which the page starts: every row's, for the first page.

    ``visible`` (SQL over ``table``, with ``params``) says which rows the list shows the
    caller: a cursor naming any other row is refused, so it reveals nothing either.

    Raises:
        InvalidCursor: the cursor was not made by ``encode_cursor`` for this list.
    """
    if cursor is None:
        return BEFORE_ANY
    row = conn.execute(
        f"SELECT seq FROM {table} WHERE id = ? AND ({visible})", (cursor_item(cursor), *params)
    ).fetchone()
    if row is None:
        raise InvalidCursor("the cursor is not one this service handed out")
    seq: int = row[0]
    return seq


def page_of(rows: list[Row], limit: int, build: Callable[[Row], T]) -> Page[T]:
    """``rows`` were fetched newest first with ``LIMIT limit + 1``."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([build(row) for row in rows], encode_cursor(rows[-1]["id"]) if more else None)


def newest_first(
    conn: Connection,
    table: Listed,
    owner_column: str,
    owner: str,
    *,
    limit: int,
    cursor: str | None,
    build: Callable[[Row], T],
) -> Page[T]:
    """A page of ``table``'s rows whose ``owner_column`` is ``owner``, newest first, by
    keyset on ``seq`` (an index on ``(owner_column, seq)`` serves it at any depth).

    Raises:
        InvalidCursor: the cursor was not handed out for this list.
    """
    before = cursor_bound(conn, cursor, table, f"{owner_column} = ?", owner)
    rows = conn.execute(
        f"SELECT * FROM {table} WHERE {owner_column} = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        (owner, before, limit + 1),
    ).fetchall()
    return page_of(rows, limit, build)
