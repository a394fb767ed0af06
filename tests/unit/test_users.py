from __future__ import annotations

import hashlib
import re

import anyio
import anyio.to_thread
import pytest

from shared.errors import EmailTaken, LastApiKey, NotFound
from shared.records import Signing
from shared.store import Database
from shared.users import (
    KEY_PATTERN,
    KEY_PREFIX,
    SIGNING_SECRET_PATTERN,
    KeyHolder,
    authenticate,
    authenticate_key,
    authenticate_key_on_loop,
    create_api_key,
    key_id_of,
    revoke_api_key,
    sign_up,
)
from tests.backends import open_database
from tests.unit.helpers import count_rows


def test_sign_up_returns_a_key_with_the_p2p_prefix_that_authenticates(db: Database) -> None:
    user, api_key = db.run(sign_up, "Ada", "ada@example.com")

    assert api_key.startswith(KEY_PREFIX)
    assert KEY_PREFIX == "p2p_"
    assert (user.name, user.email) == ("Ada", "ada@example.com")
    assert authenticate(db, api_key) == user


def test_each_key_authenticates_its_own_user(db: Database) -> None:
    ada, ada_key = db.run(sign_up, "Ada", "ada@example.com")
    bea, bea_key = db.run(sign_up, "Bea", "bea@example.com")

    assert ada_key != bea_key
    assert authenticate(db, ada_key) == ada
    assert authenticate(db, bea_key) == bea


def test_a_well_formed_key_that_was_never_issued_does_not_authenticate(db: Database) -> None:
    db.run(sign_up, "Ada", "ada@example.com")

    assert authenticate(db, KEY_PREFIX + "0" * 64) is None


def test_malformed_keys_do_not_authenticate(db: Database) -> None:
    _, api_key = db.run(sign_up, "Ada", "ada@example.com")
    malformed = [
        "",
        KEY_PREFIX,
        api_key[:-1],
        api_key + "0",
        api_key.upper(),
        " " + api_key,
        api_key + "\n",
        f"Bearer {api_key}",
        "p2q_" + api_key.removeprefix(KEY_PREFIX),
        api_key.removeprefix(KEY_PREFIX),
        "p2p_" + "g" * 64,
    ]

    for candidate in malformed:
        assert authenticate(db, candidate) is None, candidate


def test_an_altered_key_does_not_authenticate(db: Database) -> None:
    _, api_key = db.run(sign_up, "Ada", "ada@example.com")

    def flipped(position: int) -> str:
        replacement = "1" if api_key[position] == "0" else "0"
        return api_key[:position] + replacement + api_key[position + 1 :]

    # The last character is in the secret part, the fifth in the key's id part.
    assert authenticate(db, flipped(len(api_key) - 1)) is None
    assert authenticate(db, flipped(len(KEY_PREFIX))) is None
    assert authenticate(db, api_key) is not None


def test_only_the_sha256_of_the_key_is_stored(db: Database) -> None:
    user, api_key = db.run(sign_up, "Ada", "ada@example.com")
    secret = api_key[len(KEY_PREFIX) + 16 :]

    rows = db.connection().execute("SELECT * FROM api_keys").fetchall()

    assert len(rows) == 1
    assert rows[0]["user_id"] == user.id
    assert rows[0]["key_hash"] == hashlib.sha256(api_key.encode()).hexdigest()
    for value in tuple(rows[0]):
        assert api_key not in str(value)
        assert secret not in str(value)


def test_email_uniqueness_is_case_insensitive(db: Database) -> None:
    db.run(sign_up, "Ada", "Ada@Example.com")

    with pytest.raises(EmailTaken):
        db.run(sign_up, "Impostor", "ada@EXAMPLE.COM")

    assert count_rows(db, "users") == 1
    assert count_rows(db, "api_keys") == 1


def test_the_email_is_kept_as_it_was_given(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "Ada@Example.com")

    assert user.email == "Ada@Example.com"


def test_a_revoked_key_no_longer_authenticates_and_the_other_still_does(db: Database) -> None:
    user, first = db.run(sign_up, "Ada", "ada@example.com")
    issued = db.run(create_api_key, user.id, max_keys=10)
    second = issued.api_key

    revoked = db.run(revoke_api_key, user.id, key_id_of(first))

    assert issued.key.id == key_id_of(second)
    assert revoked.id == key_id_of(first)
    assert revoked.revoked_at is not None
    assert authenticate(db, first) is None
    assert authenticate(db, second) == user


def test_the_last_live_key_is_never_revoked(db: Database) -> None:
    user, api_key = db.run(sign_up, "Ada", "ada@example.com")

    with pytest.raises(LastApiKey):
        db.run(revoke_api_key, user.id, key_id_of(api_key))

    assert authenticate(db, api_key) == user


def test_nobody_revokes_another_users_key(db: Database) -> None:
    ada, _ = db.run(sign_up, "Ada", "ada@example.com")
    bea, bea_key = db.run(sign_up, "Bea", "bea@example.com")
    db.run(create_api_key, bea.id, max_keys=10)

    with pytest.raises(NotFound):
        db.run(revoke_api_key, ada.id, key_id_of(bea_key))

    assert authenticate(db, bea_key) == bea


def test_the_documented_pattern_finds_a_leaked_key_in_a_diff(db: Database) -> None:
    _, api_key = db.run(sign_up, "Ada", "ada@example.com")
    diff = f'+API_KEY = "{api_key}"\n-API_KEY = "p2p_not-a-key"\n+id = "key_{api_key[4:20]}"\n'

    assert re.findall(KEY_PATTERN, diff) == [api_key]


def test_a_signing_key_has_a_secret_stored_to_verify_with_and_a_plain_key_none(
    db: Database,
) -> None:
    user, first = db.run(sign_up, "Ada", "ada@example.com")
    signing = db.run(create_api_key, user.id, Signing.REQUIRED, max_keys=10)

    assert signing.key.signing is Signing.REQUIRED
    assert signing.signing_secret is not None
    assert re.fullmatch(SIGNING_SECRET_PATTERN, signing.signing_secret)
    holder = authenticate_key(db, signing.api_key)
    assert holder is not None
    assert (holder.user, holder.key_id) == (user, signing.key.id)
    assert holder.signing_secret == signing.signing_secret
    plain = authenticate_key(db, first)
    assert plain is not None
    assert (plain.key_id, plain.signing_secret) == (key_id_of(first), None)
    assert db.run(create_api_key, user.id, max_keys=10).signing_secret is None


def test_a_key_is_looked_up_from_an_event_loop_without_a_worker_thread(db: Database) -> None:
    user, api_key = db.run(sign_up, "Ada", "ada@example.com")
    signing = db.run(create_api_key, user.id, Signing.REQUIRED, max_keys=10)

    async def look_up() -> list[KeyHolder | None]:
        async with db.event_loop_reads():
            limiter = anyio.to_thread.current_default_thread_limiter()
            # Every worker thread's token taken: a lookup handed to a thread waits for ever.
            for _ in range(int(limiter.total_tokens)):
                limiter.acquire_on_behalf_of_nowait(object())
            with anyio.fail_after(10):
                return [
                    await authenticate_key_on_loop(db, key)
                    for key in (api_key, signing.api_key, api_key[:-1] + "x", "p2p_\x00")
                ]

    plain, signed, wrong, malformed = anyio.run(look_up)

    assert plain == KeyHolder(user, key_id_of(api_key), None)
    assert signed == KeyHolder(user, signing.key.id, signing.signing_secret)
    assert (wrong, malformed) == (None, None)


def test_a_key_revoked_on_another_connection_is_refused_by_the_next_lookup_on_the_loop(
    db: Database, database_url: str
) -> None:
    user, first = db.run(sign_up, "Ada", "ada@example.com")
    spare = db.run(create_api_key, user.id, max_keys=10)
    other_process = open_database(database_url)

    async def look_up_around_revocation() -> tuple[KeyHolder | None, KeyHolder | None]:
        async with db.event_loop_reads():
            before = await authenticate_key_on_loop(db, first)
            other_process.run(revoke_api_key, user.id, key_id_of(first))
            return before, await authenticate_key_on_loop(db, first)

    try:
        before, after = anyio.run(look_up_around_revocation)
    finally:
        other_process.close()

    assert before == KeyHolder(user, key_id_of(first), None)
    assert after is None
    assert authenticate(db, spare.api_key) == user
