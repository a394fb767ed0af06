"""Users and their API keys. A key is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3

from shared.clock import new_id, to_text, utcnow
from shared.db import Database
from shared.errors import EmailTaken
from shared.records import User

KEY_PREFIX = "p2p_"
_KEY = re.compile(r"p2p_([0-9a-f]{16})([0-9a-f]{48})")


def sign_up(conn: sqlite3.Connection, name: str, email: str) -> tuple[User, str]:
    """Create a user and its first API key; returns the user and the key in clear.

    Raises:
        EmailTaken: the email is in use, compared case-insensitively.
    """
    now = to_text(utcnow())
    user_id = new_id("usr")
    taken = conn.execute("SELECT 1 FROM users WHERE email_key = ?", (email.casefold(),))
    if taken.fetchone() is not None:
        raise EmailTaken(f"a user with the email {email!r} exists already")
    conn.execute(
        "INSERT INTO users (id, name, email, email_key, created_at) VALUES (?, ?, ?, ?, ?)",
        (user_id, name, email, email.casefold(), now),
    )
    api_key = _insert_api_key(conn, user_id, now)
    row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return User.from_row(row), api_key


def authenticate(db: Database, api_key: str) -> User | None:
    """The user a live API key belongs to, or ``None``; the hash compare is constant-time."""
    match = _KEY.fullmatch(api_key)
    if match is None:
        return None
    row = (
        db.connection()
        .execute(
            "SELECT users.*, api_keys.key_hash FROM api_keys"
            " JOIN users ON users.id = api_keys.user_id"
            " WHERE api_keys.id = ? AND api_keys.revoked_at IS NULL",
            (f"key_{match[1]}",),
        )
        .fetchone()
    )
    if row is None or not hmac.compare_digest(row["key_hash"], _hash(api_key)):
        return None
    return User.from_row(row)


def _insert_api_key(conn: sqlite3.Connection, user_id: str, now: str) -> str:
    key_id = secrets.token_hex(8)
    api_key = f"{KEY_PREFIX}{key_id}{secrets.token_hex(24)}"
    conn.execute(
        "INSERT INTO api_keys (id, user_id, key_hash, created_at) VALUES (?, ?, ?, ?)",
        (f"key_{key_id}", user_id, _hash(api_key), now),
    )
    return api_key


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()
