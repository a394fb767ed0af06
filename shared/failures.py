"""What a failed payment says, and to whom.

A payment is read by two parties, the owners of its two accounts, and a failure is about
one of those accounts: a frozen one, the sender's funds, the receiver's ceiling. The
``failure_code`` says what went wrong to both; the ``failure_detail`` as written, which
names the account and the amount, is shown only to the owner of the account it is about
(and to a user who owns both). The other party reads a detail that says no more than
the code.
"""

from __future__ import annotations

from dataclasses import replace

from shared.records import FailureCode, Payment


def frozen(account_id: str) -> str:
    return f"account {account_id} is frozen"


def missing(account_id: str) -> str:
    return f"account {account_id} does not exist"


def lacks_funds(account_id: str, amount: int) -> str:
    return f"account {account_id} lacks the funds for {amount}"


def cannot_hold(account_id: str) -> str:
    return f"account {account_id} cannot hold more"


def linked(payment_id: str) -> str:
    return f"payment {payment_id} of the same atomic batch failed"


_TO_THE_OTHER_PARTY = {
    FailureCode.INSUFFICIENT_FUNDS: "the sending account lacks the funds for this payment",
    FailureCode.BALANCE_LIMIT_EXCEEDED: "the receiving account cannot hold this payment",
    FailureCode.LINKED_PAYMENT_FAILED: "another payment of its atomic batch failed",
}


def as_seen_by(payment: Payment, *, owns_sender: bool, owns_receiver: bool) -> Payment:
    """The payment with the failure detail its viewer may read."""
    code = payment.failure_code
    if code is None or (owns_sender and owns_receiver):
        return payment
    if code is FailureCode.REFUND_EXCEEDS_PAYMENT:
        return payment  # about the payment refunded, which both parties can read
    about_receiver = _about_receiver(payment, code)
    if owns_receiver if about_receiver else owns_sender:
        return payment
    side = "receiving" if about_receiver else "sending"
    generic = {
        FailureCode.ACCOUNT_FROZEN: f"the {side} account is frozen",
        FailureCode.ACCOUNT_NOT_FOUND: f"the {side} account does not exist",
    }.get(code) or _TO_THE_OTHER_PARTY.get(code, "the payment failed: see failure_code")
    return replace(payment, failure_detail=generic)


def _about_receiver(payment: Payment, code: FailureCode) -> bool:
    """Whether the failure is about the receiving account (else the sending one)."""
    if code is FailureCode.INSUFFICIENT_FUNDS:
        return False
    if code is FailureCode.BALANCE_LIMIT_EXCEEDED:
        return True
    receiver = payment.to_account_id
    return payment.failure_detail in (frozen(receiver), missing(receiver))
