"""Users and their API keys. A key is shown once; only its SHA-256 is stored.

A key is ``p2p_`` + 16 hex digits naming it + 48 hex digits of secret; its id is
``key_`` + those 16 digits, so a key can be told apart from another without its secret,
and a leaked one can be found by ``KEY_PATTERN``. A key with ``signing: required`` also
has a signing secret (``sks_`` + 64 hex digits), shown once too but stored as issued:
verifying an HMAC takes the secret itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from shared.clock import new_id, to_text, utcnow
from shared.errors import EmailTaken, LastApiKey, NotFound, TooManyApiKeys
from shared.pages import newest_first
from shared.records import ApiKey, Page, Signing, User
from shared.store import Connection, Database, Row

KEY_PREFIX = "p2p_"
KEY_PATTERN = r"\bp2p_[0-9a-f]{64}\b"
"""What a secret scanner should look for (docs/operations.md says so too)."""
SIGNING_SECRET_PATTERN = r"\bsks_[0-9a-f]{64}\b"  # noqa: S105 (a pattern, no secret)
_KEY = re.compile(r"p2p_([0-9a-f]{16})([0-9a-f]{48})")


def sign_up(conn: Connection, name: str, email: str) -> tuple[User, str]:
    """Create a user and its first API key; returns the user and the key in clear.

    Raises:
        EmailTaken: the email is in use, compared case-insensitively.
    """
    now = to_text(utcnow())
    user_id = new_id("usr")
    # ON CONFLICT: a sign-up with the same email committing meanwhile (another API
    # process, on PostgreSQL) makes this one insert nothing, rather than fail.
    row = conn.execute(
        "INSERT INTO users (id, name, email, email_key, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (email_key) DO NOTHING RETURNING *",
        (user_id, name, email, email.casefold(), now),
    ).fetchone()
    if row is None:
        raise EmailTaken(f"a user with the email {email!r} exists already")
    api_key = _insert_api_key(conn, user_id, now)
    return User.from_row(row), api_key


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A new key as its creator sees it, once: the key, and a signing key's secret."""

    key: ApiKey
    api_key: str
    signing_secret: str | None


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who a live key authenticates, and what its requests must be signed with."""

    user: User
    key_id: str
    signing_secret: str | None


def authenticate(db: Database, api_key: str) -> User | None:
    """The user a live API key belongs to, or ``None``; the hash compare is constant-time."""
    holder = authenticate_key(db, api_key)
    return None if holder is None else holder.user


def authenticate_key(db: Database, api_key: str) -> KeyHolder | None:
    """``authenticate``, with the key's id and signing secret."""
    key_id = _key_id_if_well_formed(api_key)
    if key_id is None:
        return None
    # fetchall, not fetchone: the statement runs to its end, so no read snapshot stays
    # open on this connection to hide a later revocation.
    return _holder(api_key, key_id, db.connection().execute(_KEY_HOLDER, (key_id,)).fetchall())


async def authenticate_key_on_loop(db: Database, api_key: str) -> KeyHolder | None:
    """``authenticate_key``, from an event loop, which it never blocks
    (``Database.fetch``)."""
    key_id = _key_id_if_well_formed(api_key)
    if key_id is None:
        return None
    return _holder(api_key, key_id, await db.fetch(_KEY_HOLDER, (key_id,)))


_KEY_HOLDER = (
    "SELECT users.*, api_keys.key_hash, api_keys.signing_secret FROM api_keys"
    " JOIN users ON users.id = api_keys.user_id"
    " WHERE api_keys.id = ? AND api_keys.revoked_at IS NULL"
)
"""The live key of an id, and its user; ``_holder`` judges the rows."""


def _key_id_if_well_formed(api_key: str) -> str | None:
    match = _KEY.fullmatch(api_key)
    return None if match is None else f"key_{match[1]}"


def _holder(api_key: str, key_id: str, rows: Sequence[Row]) -> KeyHolder | None:
    """Who ``_KEY_HOLDER``'s rows say the key authenticates; the hash compare is
    constant-time."""
    if not rows or not hmac.compare_digest(rows[0]["key_hash"], _hash(api_key)):
        return None
    return KeyHolder(User.from_row(rows[0]), key_id, rows[0]["signing_secret"])


def key_id_of(api_key: str) -> str:
    """The id of a well-formed key (``key_`` + its 16 hex digits after ``p2p_``)."""
    return f"key_{api_key[len(KEY_PREFIX) : len(KEY_PREFIX) + 16]}"


def create_api_key(
    conn: Connection, user_id: str, signing: Signing = Signing.NONE, *, max_keys: int
) -> IssuedApiKey:
    """Another live key for the user, in clear, with its signing secret if it signs.

    Raises:
        TooManyApiKeys: the user holds ``max_keys`` live keys already.
    """
    if _live_keys(conn, user_id) >= max_keys:
        raise TooManyApiKeys(
            f"you hold {max_keys} live API keys, as many as one may: revoke one first"
        )
    api_key = _insert_api_key(conn, user_id, to_text(utcnow()))
    key_id = key_id_of(api_key)
    secret = None
    if signing is Signing.REQUIRED:
        secret = f"sks_{secrets.token_hex(32)}"
        conn.execute("UPDATE api_keys SET signing_secret = ? WHERE id = ?", (secret, key_id))
    return IssuedApiKey(_owned_key(conn, user_id, key_id), api_key, secret)


def list_api_keys(db: Database, user_id: str, *, limit: int, cursor: str | None) -> Page[ApiKey]:
    """The user's keys, revoked ones too, newest first.

    Raises:
        InvalidCursor: the cursor was not handed out for this list.
    """
    return newest_first(
        db.connection(),
        "api_keys",
        "user_id",
        user_id,
        limit=limit,
        cursor=cursor,
        build=ApiKey.from_row,
    )


def revoke_api_key(conn: Connection, user_id: str, key_id: str) -> ApiKey:
    """Revoke one of the user's keys; a key revoked already stays as it was.

    Raises:
        NotFound: no such key, or another user's.
        LastApiKey: it is the user's only live key.
    """
    key = _owned_key(conn, user_id, key_id)
    if key.revoked_at is not None:
        return key
    if _live_keys(conn, user_id) <= 1:
        raise LastApiKey(f"{key_id} is your only live API key: create another before revoking it")
    conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (to_text(utcnow()), key_id))
    return _owned_key(conn, user_id, key_id)


def _live_keys(conn: Connection, user_id: str) -> int:
    """How many live keys the user holds, counted under a lock on the user: on
    PostgreSQL, concurrent creations and revocations for one user then count one after
    the other (SQLite's ``BEGIN IMMEDIATE`` serializes every write already), so neither
    the cap nor the last key can be raced past."""
    conn.execute(conn.engine.select_for_update("SELECT id FROM users WHERE id = ?"), (user_id,))
    live: int = conn.execute(
        "SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL", (user_id,)
    ).fetchone()[0]
    return live


def _owned_key(conn: Connection, user_id: str, key_id: str) -> ApiKey:
    row = conn.execute(
        "SELECT * FROM api_keys WHERE id = ? AND user_id = ?", (key_id, user_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"no API key {key_id}")
    return ApiKey.from_row(row)


def _insert_api_key(conn: Connection, user_id: str, now: str) -> str:
    """A key without signing; it names only the columns every schema version has."""
    key_id = secrets.token_hex(8)
    api_key = f"{KEY_PREFIX}{key_id}{secrets.token_hex(24)}"
    conn.execute(
        "INSERT INTO api_keys (id, user_id, key_hash, created_at) VALUES (?, ?, ?, ?)",
        (f"key_{key_id}", user_id, _hash(api_key), now),
    )
    return api_key


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()
