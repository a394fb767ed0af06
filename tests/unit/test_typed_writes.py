"""Every write call is type-checked: its arguments against the function it runs.

``mypy --strict`` (``make lint``) checks this module. Each call under ``TYPE_CHECKING``
is a mistake that mypy must report; the ``type: ignore`` on it says which error. Were a
write entry point to take ``Callable[..., T]`` again, the mistake would pass, its
``type: ignore`` would be unused, and strict mode (``warn_unused_ignores``) would fail
the check instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from shared import accounts, payments
from shared.committer import GroupCommitter
from shared.records import Account, Payment
from shared.store import Database
from shared.users import sign_up

if TYPE_CHECKING:
    from api.deps import Services

    def _wrong_writes(db: Database, writer: GroupCommitter) -> None:
        user, account = "usr_1", "acc_1"
        db.run(accounts.open_account, 42, "USD")  # type: ignore[arg-type]
        db.run(accounts.open_account, user)  # type: ignore[call-arg]
        db.run(accounts.set_status, user, account, colour="red")  # type: ignore[call-arg]
        db.run(
            accounts.deposit,
            user,
            account,
            amount="1",  # type: ignore[arg-type]
            description=None,
            idempotency_key="k",
        )
        writer.submit(accounts.open_account, user, 840)  # type: ignore[arg-type]
        writer.run(payments.submit_transfer, user, account, "k")  # type: ignore[arg-type]
        writer.submit_batched_async(payments.submit_transfers, account)  # type: ignore[arg-type]

    def _wrong_result(db: Database) -> Payment:
        return db.run(accounts.open_account, "usr_1", "USD")  # type: ignore[return-value]

    async def _wrong_api_writes(services: Services) -> None:
        await services.write(accounts.open_account, "usr_1", currency=978)  # type: ignore[arg-type]
        await services.writer.submit_async(sign_up, "Ada")  # type: ignore[call-arg]


def test_a_write_runs_with_the_arguments_it_was_given(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")

    account: Account = db.run(accounts.open_account, user.id, currency="USD")

    assert account.user_id == user.id
    assert account.currency == "USD"


def test_a_group_committed_write_runs_with_the_arguments_it_was_given(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")
    writer = GroupCommitter(db)
    try:

        async def main() -> Account:
            return await writer.submit_async(accounts.open_account, user.id, currency="EUR")

        account = asyncio.run(main())
        unchanged = writer.run(accounts.set_status, user.id, account.id, account.status)
    finally:
        writer.close()

    assert account.currency == "EUR"
    assert unchanged == account
