"""The store's ``Connection`` as both backends give it: ``executemany``."""

from __future__ import annotations

import pytest

from shared.store import Database

INSERT_USER = (
    "INSERT INTO users (id, name, email, email_key, created_at) VALUES (?, ?, ?, ?, 'now')"
)


def _users(n: int, start: int = 0) -> list[tuple[str, str, str, str]]:
    return [
        (f"usr_{i}", f"User {i}", f"u{i}@example.com", f"u{i}@example.com")
        for i in range(start, start + n)
    ]


def _names(db: Database) -> list[str]:
    rows = db.connection().execute("SELECT name FROM users ORDER BY name").fetchall()
    return [row["name"] for row in rows]


def test_executemany_in_a_write_runs_each_set_and_commits_with_it(db: Database) -> None:
    with db.write() as conn:
        conn.executemany(INSERT_USER, _users(3))
        conn.executemany("UPDATE users SET name = name || ? WHERE id = ?", [("!", "usr_1")])

    assert _names(db) == ["User 0", "User 1!", "User 2"]


def test_executemany_in_a_write_that_raises_is_rolled_back_with_it(db: Database) -> None:
    def insert_then_fail() -> None:
        with db.write() as conn:
            conn.executemany(INSERT_USER, _users(2))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()

    assert _names(db) == []


def test_a_refused_set_refuses_the_whole_write(db: Database) -> None:
    # The second set repeats the first's email key: UNIQUE refuses it, and the write.
    twin = ("usr_9", "Nine", "nine@example.com", "u0@example.com")
    with pytest.raises(db.engine.integrity_error), db.write() as conn:
        conn.executemany(INSERT_USER, [*_users(1), twin])

    assert _names(db) == []


def test_executemany_outside_a_write_commits_at_once(db: Database) -> None:
    db.connection().executemany(INSERT_USER, _users(2, start=5))

    assert _names(db) == ["User 5", "User 6"]
