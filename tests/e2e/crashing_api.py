"""``p2p api`` that dies between recording a payment and enqueueing it.

Built exactly like ``cli/main.py``'s ``_serve_api``, except that the queue's ``send`` ends
the process: the payment is committed, no message exists, and the client gets no answer.
Run as ``python crashing_api.py --port N`` with the usual ``P2P_*`` environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from api.app import create_app
from api.http_protocol import ServerLimits
from api.server import serve
from jobs.broker import redis_broker
from jobs.producer import SettlementQueue
from shared.settings import Settings
from shared.store.opening import open_store

CRASH_EXIT_CODE = 70


class CrashBeforeEnqueue(SettlementQueue):
    def send(self, payment_id: str) -> None:
        print(f"crashing-api: dying before enqueueing {payment_id}", file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT_CODE)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings()
    logging.basicConfig(level=settings.log_level)
    db = open_store(settings)
    db.migrate()
    broker = redis_broker(settings.redis_url, timeout_s=settings.redis_timeout_s)
    queue = CrashBeforeEnqueue(broker, settings.queue_name)
    try:
        app = create_app(settings, db, queue, shared_limits=True)
        serve(app, args.host, args.port, ServerLimits.from_settings(settings))
    finally:
        db.close()


if __name__ == "__main__":
    main()
