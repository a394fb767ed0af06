"""A transfer as the client sends it: one body for ``transfer`` and for each item of a
batch, which the service checks alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Transfer:
    """One transfer of a batch: the arguments ``Client.transfer`` takes, but the key."""

    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    description: str | None = None
    capture: str | None = None
    """``"manual"``: authorized, then captured or voided; ``None``: the service's default."""
    hold_seconds: int | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body, without the fields left to the service's defaults."""
        body: dict[str, Any] = {
            "from_account_id": self.from_account_id,
            "to_account_id": self.to_account_id,
            "amount": self.amount,
            "currency": self.currency,
        }
        optional = {
            "description": self.description,
            "capture": self.capture,
            "hold_seconds": self.hold_seconds,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        return body
