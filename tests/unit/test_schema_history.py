"""The schema's source: migrations that databases have run never change, the enums and
the database agree on every status and failure code, and ``shared.schema`` stands alone."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

import shared.schema
from shared.enums import AccountStatus, FailureCode, PaymentStatus
from shared.schema import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from shared.store import Database
from tests.unit.helpers import Customer, insert_payment_row, refused

# The SHA-256 of each migration's text as deployed databases ran it. A new migration
# adds a line here; an old one changing means databases built before and after the
# change differ, with nothing to bring them together.
RAN = {
    "sqlite": (
        "94df0c06b3ebf2cb1bd04be61edfa7639a9f00a537f9f7022b5439a80d48413a",
        "bdef0fdb41cf6259a403c9b4c93c7aaf332ab1834098d2d67e3cf5d36713f9c0",
        "79711eda0552946d3ebfa43a911684359b140e01ccccc0a2f1182e5a6fed8a4e",
        "5533737d68f3f731c4778e3bc939877e8365ba9917b8f893cb12551ff2456e7a",
        "cacabccdb83ae78b68e2b6c0bbb86437db5ab800827ec09298371c787a640ad6",
        "318c22358ca081989dd9a8dfbef021d7189c5f7f04ce9ed156b1039559bc5e50",
        "5702436fe01f05c3cd46630f49e1d5c38c2a25fe2d9b286dea2f1b0718971f52",
        "3922139299a6de63abe2d797e8127cda881564d816d392b1bad30c371b99669d",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    "postgresql": (
        "6907b107761a6c3e8977095d2607dd7cb0c97491bb530510b55a904700f1475c",
        "bdef0fdb41cf6259a403c9b4c93c7aaf332ab1834098d2d67e3cf5d36713f9c0",
        "79cbe6c26ab7d43c881774d878af4ef92f49c866579c1ef52350d93b70b2274d",
        "79c1699ca80eaeafa21e1aea71f768e59f60db68faf93cda18f61e3289514a17",
        "cacabccdb83ae78b68e2b6c0bbb86437db5ab800827ec09298371c787a640ad6",
        "0be13e47314a1585fbd5bb004b2ad5774c01dda229908d28292e207014c51d48",
        "acc5e00a71af71a424eca517c615b20023186b4d02d77ddd908929fb9a144f4b",
        "06105738926db90c3b4246d8e011763b6310564779e57e1ef849eb929c760705",
        "b96e9c58876769fd5a7a5db71a66ef34a9fdfcfe831ff964e89fa11726790798",
    ),
}


@pytest.mark.parametrize(
    ("engine", "migrations"),
    [("sqlite", SQLITE_MIGRATIONS), ("postgresql", POSTGRES_MIGRATIONS)],
)
def test_migrations_that_databases_have_run_keep_their_text(
    engine: str, migrations: tuple[str, ...]
) -> None:
    ran = RAN[engine]
    assert len(migrations) == len(ran), "a new migration: add its digest to RAN"
    for number, (script, digest) in enumerate(zip(migrations, ran, strict=True), start=1):
        assert hashlib.sha256(script.encode()).hexdigest() == digest, f"migration {number}"


def test_both_engines_have_the_same_migrations() -> None:
    assert len(SQLITE_MIGRATIONS) == len(POSTGRES_MIGRATIONS)


def test_the_schema_imports_nothing_from_shared_but_the_enums() -> None:
    source = Path(shared.schema.__file__).read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }

    assert {name for name in imported if name.startswith("shared")} == {"shared.enums"}


def test_every_failure_code_is_one_a_failed_payment_may_carry(
    db: Database, alice: Customer, bob: Customer
) -> None:
    for code in FailureCode:
        insert_payment_row(
            db.connection(), alice.main, bob.main, status="failed", failure_code=code.value
        )

    with refused(db, "CHECK"):
        insert_payment_row(
            db.connection(), alice.main, bob.main, status="failed", failure_code="bad_luck"
        )


def test_the_database_allows_exactly_the_statuses_of_the_enums(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with refused(db, "CHECK"):
        insert_payment_row(db.connection(), alice.main, bob.main, status="settling")
    with refused(db, "CHECK"):
        db.connection().execute(
            "UPDATE accounts SET status = 'closed' WHERE id = ?", (alice.main.id,)
        )
    for status in AccountStatus:
        db.connection().execute(
            "UPDATE accounts SET status = ? WHERE id = ?", (status.value, alice.main.id)
        )
    assert insert_payment_row(
        db.connection(), alice.main, bob.main, status=PaymentStatus.PENDING.value
    )
