"""The batch phases of ``p2p bench``: transfers sent 100 to a request
(``POST /payments/batch``), through the same API, worker and database.

- **batch submit**: the worker held off, the clients submit batches as fast as they
  can: transfers accepted per second (``batch_submit_tps``); then the worker alone
  settles that backlog (``batch_drain_tps``).
- **batch e2e**: API and worker together; each client submits a batch, waits until it is
  settled (a long-poll of its last payment, then the batch read back), and submits the
  next, for a fixed time: transfers accepted *and* settled per second
  (``batch_e2e_tps``). The backlog cannot pass 100 a client; it is sampled anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.database import BenchDatabase
from bench.loadgen import exchange, get, post

BATCH_SIZE = 100


class BatchRequests:
    """Batch n: 100 transfers of 1 from account n to the accounts after it, keyed
    ``{phase}-{n}``."""

    def __init__(self, accounts: list[tuple[str, str]], phase: str, host: str) -> None:
        self.accounts = accounts
        self.phase = phase
        self.host = host

    def sender(self, n: int) -> tuple[str, str]:
        return self.accounts[n % len(self.accounts)]

    def __call__(self, n: int) -> bytes:
        count = len(self.accounts)
        sender, key = self.sender(n)
        transfers = [
            {
                "from_account_id": sender,
                "to_account_id": self.accounts[(n + 1 + i % (count - 1)) % count][0],
                "amount": 1,
                "currency": "EUR",
            }
            for i in range(BATCH_SIZE)
        ]
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"{self.phase}-{n}"}
        return post("/payments/batch", headers, {"transfers": transfers}, self.host)


@dataclass
class Settled:
    """What the e2e phase saw: batches accepted and settled, and the backlog samples."""

    batches: int = 0
    seconds: float = 0.0
    backlog: list[int] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)

    @property
    def transfers_per_s(self) -> float:
        return self.batches * BATCH_SIZE / self.seconds if self.seconds else 0.0


async def settled_loop(
    host: str,
    port: int,
    requests: BatchRequests,
    db: BenchDatabase,
    *,
    seconds: float,
    connections: int,
    on_tick: Callable[[float], None] | None = None,
) -> Settled:
    """For ``seconds``, each of ``connections`` clients submits a batch and waits until
    it is settled before the next; the run ends once the last batch begun is settled."""
    result = Settled()
    numbers = itertools.count()
    began = time.perf_counter()
    ends = began + seconds
    done = asyncio.Event()

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < ends:
                n = next(numbers)
                status, body = await exchange(reader, writer, requests(n))
                if status != 202:
                    result.refused[status] = result.refused.get(status, 0) + 1
                    continue
                await _until_settled(reader, writer, requests, n, json.loads(body))
                result.batches += 1
        finally:
            writer.close()

    async def sample() -> None:
        while not done.is_set():
            result.backlog.append(await asyncio.to_thread(_pending, db))
            if on_tick is not None:
                on_tick(time.perf_counter() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - began
    done.set()
    await sampler
    return result


async def _until_settled(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    requests: BatchRequests,
    n: int,
    batch: dict[str, object],
) -> None:
    _, key = requests.sender(n)
    auth = {"Authorization": f"Bearer {key}"}
    payments = batch["payments"]
    assert isinstance(payments, list)
    last = payments[-1]["id"]
    while True:
        await exchange(reader, writer, get(f"/payments/{last}?wait=10", auth, requests.host))
        status, body = await exchange(
            reader, writer, get(f"/batches/{batch['id']}", auth, requests.host)
        )
        if status == 200 and json.loads(body)["status"] == "settled":
            return


def _pending(db: BenchDatabase) -> int:
    ((count,),) = db.rows("SELECT count(*) FROM payments WHERE status = 'pending'")
    return int(count or 0)
