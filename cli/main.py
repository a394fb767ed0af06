"""p2p: run the API, the worker, both at once for development, migrate or audit the database,
or copy it from SQLite to PostgreSQL."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from cli.arguments import positive_count
from cli.copy import PROGRESS_EVERY
from cli.copy import run as run_copy
from cli.processes import run_api_processes, run_worker_processes
from shared.audit import verify
from shared.logs import LogFormat, configure_logging
from shared.settings import Settings
from shared.store.opening import open_store

# The API (FastAPI) and the worker (Dramatiq) are imported by the commands that run them:
# ``p2p verify`` starts in a quarter of the time, ``p2p worker`` in half.

log = logging.getLogger("p2p")

# The services log for machines; what a person runs (dev, verify, bench) logs for people.
_LOG_FORMAT: dict[str, LogFormat] = {"api": "json", "worker": "json"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # ``p2p bench``'s own options are ``bench.run``'s, parsed there: the benchmark is
    # imported only when it is asked for.
    args, bench_argv = parser.parse_known_args(argv)
    if args.command != "bench" and bench_argv:
        parser.error(f"unrecognized arguments: {' '.join(bench_argv)}")
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"p2p: invalid settings:\n{error}", file=sys.stderr)
        return 2
    command: str = args.command
    configure_logging(settings.log_level, settings.log_format or _LOG_FORMAT.get(command, "text"))
    if command == "api":
        if args.processes > 1:
            return run_api_processes(settings, args.host, args.port, args.processes)
        _serve_api(settings, args.host, args.port, args.fd)
    elif command == "worker":
        if args.processes > 1:
            return run_worker_processes(settings, args.processes)
        from worker.runtime import run_worker

        run_worker(settings)
    elif command == "dev":
        _serve_dev(settings, args.host, args.port)
    elif command == "bench":
        from bench.run import main as run_bench

        return run_bench(bench_argv)
    elif command == "migrate":
        return _migrate(settings)
    elif command == "copy":
        return run_copy(args.source, args.target, every=args.progress_every)
    else:
        return _verify(settings)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2p", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("api", "serve the HTTP API (uvicorn); needs Redis"),
        ("dev", "the API and a worker in one process, in-process broker: no Redis needed"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        if name == "api":
            sub.add_argument(
                "--processes", type=positive_count, default=1, metavar="N", help=_PROCESSES_HELP
            )
            # A socket already listening, inherited from ``p2p api --processes``.
            sub.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    worker = commands.add_parser("worker", help="settle payments from Redis, and sweep stuck ones")
    worker.add_argument(
        "--processes", type=positive_count, default=1, metavar="N", help=_PROCESSES_HELP
    )
    commands.add_parser("verify", help="audit the database: exit 0 when the ledger holds")
    commands.add_parser(
        "migrate", help="create or upgrade the schema in place (api, worker and dev do it on start)"
    )
    copy = commands.add_parser(
        "copy",
        help="copy a whole SQLite ledger into an empty PostgreSQL database, then verify it",
        description="Copy every table of a SQLite ledger, in one snapshot, into an empty"
        " PostgreSQL database (migrated first), then audit the copy as `p2p verify` does."
        " Exit 0: copied and verified; 1: failed (nothing written) or the copy does not"
        " verify; 2: refused (nothing done).",
    )
    copy.add_argument("--from", dest="source", required=True, metavar="sqlite:///FILE")
    copy.add_argument("--to", dest="target", required=True, metavar="postgresql://…")
    copy.add_argument(
        "--progress-every",
        type=positive_count,
        default=PROGRESS_EVERY,
        metavar="ROWS",
        help=f"rows between progress lines on stderr (default {PROGRESS_EVERY:,})",
    )
    # Its options, ``--help`` too, are left to ``bench.run.main``.
    commands.add_parser("bench", help=_BENCH_HELP, add_help=False)
    return parser


_BENCH_HELP = "measure the real stack on loopback against its ceilings (see p2p bench --help)"
_PROCESSES_HELP = "run N processes under one supervisor that restarts any that dies (default 1)"


def _serve_api(settings: Settings, host: str, port: int, fd: int | None) -> None:
    from api.app import create_app
    from api.http_protocol import ServerLimits
    from api.server import serve
    from jobs.broker import redis_broker
    from jobs.producer import SettlementQueue

    db = open_store(settings)
    db.migrate()
    broker = redis_broker(settings.redis_url, timeout_s=settings.redis_timeout_s)
    queue = SettlementQueue(broker, settings.queue_name)
    sock = None if fd is None else socket.socket(fileno=fd)
    try:
        app = create_app(settings, db, queue, shared_limits=True)
        serve(app, host, port, ServerLimits.from_settings(settings), sock=sock)
    finally:
        queue.close()
        db.close()


def _serve_dev(settings: Settings, host: str, port: int) -> None:
    from api.app import create_app
    from api.http_protocol import ServerLimits
    from api.server import serve
    from jobs.broker import in_process_broker
    from jobs.producer import SettlementQueue
    from worker.runtime import WorkerRuntime

    db = open_store(settings)
    db.migrate()
    runtime = WorkerRuntime(settings, in_process_broker(), db)
    runtime.start()
    log.info("dev: API and worker in one process, database %s, no Redis", db.path)
    queue = SettlementQueue(runtime.broker, settings.queue_name)
    try:
        app = create_app(settings, db, queue, worker_metrics=runtime.metrics.registry)
        serve(app, host, port, ServerLimits.from_settings(settings))
    finally:
        queue.close()
        runtime.stop()
        db.close()


def _migrate(settings: Settings) -> int:
    db = open_store(settings)
    try:
        before = db.schema_version()
        after = db.migrate()
    finally:
        db.close()
    if before == after:
        print(f"migrate: {db.path}: at schema version {after} already")
    else:
        print(f"migrate: {db.path}: schema version {before} -> {after}")
    return 0


def _verify(settings: Settings) -> int:
    db = open_store(settings)
    db.migrate()
    violations = verify(db)
    db.close()
    if not violations:
        print(
            f"verify: {db.path}: the ledger holds"
            " (G2 atomicity, G3 conservation, G8 holds, G9 refunds)"
        )
        return 0
    print(f"verify: {db.path}: {len(violations)} violation(s)")
    for line in violations:
        print(f"  {line}")
    return 1
