from __future__ import annotations

import pytest

from shared.pages import BEFORE_ANY, cursor_bound, encode_cursor


@pytest.mark.parametrize("seq", [0, 1, 42, 10**9, BEFORE_ANY])
def test_a_cursor_decodes_to_the_row_it_was_made_for(seq: int) -> None:
    assert cursor_bound(encode_cursor(seq)) == seq


def test_a_cursor_is_url_safe_text_without_padding() -> None:
    cursor = encode_cursor(123456789)

    assert cursor.isascii()
    assert "=" not in cursor
    assert not set(cursor) & set("+/ ")


def test_no_cursor_starts_before_every_row() -> None:
    assert cursor_bound(None) == BEFORE_ANY == 2**63 - 1
