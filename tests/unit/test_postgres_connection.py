"""The PostgreSQL connection's own pieces, without a server: placeholders, rows, the URL
as logs show it."""

from __future__ import annotations

import pytest

from shared.store.postgres import Statement, row_class, shown_url, translate


@pytest.mark.parametrize(
    ("store_sql", "postgres_sql"),
    [
        ("SELECT * FROM t WHERE id = ? AND n < ?", "SELECT * FROM t WHERE id = $1 AND n < $2"),
        ("SELECT 'a ? :b 50%' || ?", "SELECT 'a ? :b 50%' || $1"),
        ("SELECT x::text, y % 2 FROM t WHERE z = ?", "SELECT x::text, y % 2 FROM t WHERE z = $1"),
        ("SELECT 'it''s ?'", "SELECT 'it''s ?'"),
    ],
)
def test_question_marks_become_numbered_placeholders_outside_string_literals(
    store_sql: str, postgres_sql: str
) -> None:
    statement = translate(store_sql)

    assert statement == Statement(postgres_sql, ())
    assert statement.values(("a", 2)) == ("a", 2)


def test_names_become_numbered_placeholders_and_their_values_are_put_in_that_order() -> None:
    statement = translate("WHERE owner = :owner AND seq < :before OR creator = :owner")

    assert statement.sql == "WHERE owner = $1 AND seq < $2 OR creator = $1"
    assert statement.values({"before": 7, "owner": "usr_1", "unused": 0}) == ("usr_1", 7)


def test_both_kinds_of_placeholder_in_one_statement_are_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        translate("WHERE a = ? AND b = :b")


def test_a_row_reads_by_name_by_index_and_unpacks_like_sqlite3_row() -> None:
    row = row_class(("id", "balance", "id"))(("acc_1", 10, "other"))

    assert row["id"] == "acc_1"  # the first of two equal names, as sqlite3.Row
    assert row["balance"] == row[1] == 10
    assert row[-1] == "other"
    assert row[:2] == ("acc_1", 10)
    assert tuple(row) == ("acc_1", 10, "other")
    assert row.keys() == ["id", "balance"]
    with pytest.raises(KeyError):
        row["nothing"]


def test_therow_class_of_a_column_list_is_made_once() -> None:
    assert row_class(("a", "b")) is row_class(("a", "b"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://p2p:secret@db:5432/p2p", "postgresql://p2p@db:5432/p2p"),
        ("postgresql://p2p@db/p2p", "postgresql://p2p@db/p2p"),
        ("postgres://db/p2p", "postgres://db/p2p"),
    ],
)
def test_a_password_never_shows_in_the_database_name(url: str, shown: str) -> None:
    assert shown_url(url) == shown
