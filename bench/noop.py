"""The ceilings a run is measured against, each in a process of its own:

- ``python -m bench.noop http --port N``: the HTTP ceiling, our server stack (FastAPI on
  uvicorn, served by ``api.server.serve``) answering ``202`` to a validated transfer body
  and doing nothing else, on the event loop (an ``async def`` endpoint: a plain ``def``
  one would pay a thread-pool hop per request and halve the ceiling);
- ``python -m bench.noop queue --redis-url U --count N``: the queue ceiling, a no-op
  Dramatiq actor consumed by a worker with the settings ``p2p worker`` uses. Prints
  ``{"queue_noop_rps": ...}``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import dramatiq
from fastapi import FastAPI, Header

from api.http_protocol import ServerLimits
from api.schemas import TransferCreate
from api.server import serve
from jobs.broker import redis_broker
from shared.settings import Settings


def noop_app() -> FastAPI:
    app = FastAPI()

    @app.post("/payments/transfer", status_code=202)
    async def accept(
        body: TransferCreate,
        idempotency_key: str = Header(alias="Idempotency-Key"),
    ) -> dict[str, str]:
        return {"id": "pay_noop", "status": "pending"}

    return app


def queue_ceiling(redis_url: str, count: int, settings: Settings) -> float:
    """Messages per second from the first no-op to the last, worker as configured."""
    broker = redis_broker(redis_url, timeout_s=5.0)
    seen: list[float] = []
    done = threading.Event()

    def noop(n: int) -> None:
        seen.append(time.perf_counter())
        if len(seen) == count:
            done.set()

    actor: dramatiq.Actor[[int], None] = dramatiq.actor(
        broker=broker, actor_name="bench_noop", queue_name="bench-noop", max_retries=0
    )(noop)
    broker.flush("bench-noop")
    for n in range(count):
        actor.send(n)
    worker = dramatiq.Worker(
        broker, worker_threads=settings.worker_threads, worker_timeout=settings.worker_timeout_ms
    )
    worker.queue_prefetch = settings.worker_prefetch
    worker.start()
    done.wait(300)
    worker.stop()
    broker.close()
    return (count - 1) / (seen[-1] - seen[0])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.noop")
    sub = parser.add_subparsers(dest="what", required=True)
    http = sub.add_parser("http")
    http.add_argument("--port", type=int, required=True)
    queue = sub.add_parser("queue")
    queue.add_argument("--redis-url", required=True)
    queue.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    if args.what == "http":
        serve(noop_app(), "127.0.0.1", args.port, ServerLimits.from_settings(Settings()))
    else:
        rate = queue_ceiling(args.redis_url, args.count, Settings())
        print(json.dumps({"queue_noop_rps": rate}))


if __name__ == "__main__":
    main()
