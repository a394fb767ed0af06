"""``p2p bench``: the real stack on loopback, measured beside its ceilings.

Phases: submit (API alone, the worker held off), drain (the worker alone settles that
backlog), sustained (both, at half the measured submit rate, for a fixed time), then the
same with transfers sent 100 to a batch (``bench.batches``). Each figure is printed
beside the ceiling measured the same way in the same run: a no-op endpoint on the same
server stack with the same load generator, and a no-op actor with the worker's own
settings; the batch figures beside the single-transfer submit rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scaling
from bench.batches import BATCH_SIZE, BatchRequests, settled_loop
from bench.database import BenchDatabase, bench_database, engine_of
from bench.engines import compare, report_comparison
from bench.loadgen import Result, closed_loop, open_loop, percentile, post
from bench.stack import BenchStack, Child
from cli.arguments import positive_count

DESCRIPTION = "measure the real stack on loopback against its ceilings"
HOST = "127.0.0.1"
# Rate limits on, so that their cost is measured, but too high to ever refuse a submit.
UNTHROTTLED = {
    "P2P_RATE_LIMIT_PER_S": "1000000",
    "P2P_RATE_LIMIT_BURST": "1000000",
    "P2P_SIGNUP_RATE_LIMIT_PER_HOUR": "1000000000",
    "P2P_SIGNUP_RATE_LIMIT_BURST": "1000000",
}


@dataclass(frozen=True)
class Plan:
    payments: int
    connections: int
    sustained_s: float
    accounts: int = 100
    accounts_sweep: tuple[int, ...] = ()
    repeat: int = 1

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            return cls(
                payments=args.payments or 4_000,
                connections=args.connections,
                sustained_s=args.seconds or 6,
                accounts=args.accounts,
                accounts_sweep=tuple(args.accounts_sweep or ()),
                repeat=args.repeat,
            )
        return cls(
            payments=args.payments or 20_000,
            connections=args.connections,
            sustained_s=args.seconds or 30,
            accounts=args.accounts,
            accounts_sweep=tuple(args.accounts_sweep or ()),
            repeat=args.repeat,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    parser.add_argument("--payments", type=int, default=0, help="submits in the submit phase")
    parser.add_argument("--connections", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=0, help="length of the sustained phase")
    parser.add_argument(
        "--accounts",
        type=_two_or_more,
        default=100,
        help="funded accounts the transfers go between (each to the next): fewer means "
        "hotter accounts",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    parser.add_argument(
        "--database-url",
        action="append",
        help="sqlite:///… (default: a fresh file) or postgresql://… (a fresh database "
        "is created on that server and dropped at the end); with --workers-sweep, give it "
        "more than once to sweep each database in the same run",
    )
    parser.add_argument(
        "--workers",
        type=positive_count,
        default=1,
        help="worker processes (p2p worker --processes)",
    )
    parser.add_argument(
        "--workers-sweep",
        type=_counts,
        metavar="N,N,…",
        help="instead of the phases: drain throughput with each number of worker processes,"
        " profiled (bench.scaling)",
    )
    parser.add_argument(
        "--accounts-sweep",
        type=_accounts,
        metavar="N,N,…",
        help="with --workers-sweep: sweep each number of accounts in turn (few: hot, many: cold)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_count,
        default=1,
        help="with --workers-sweep: run every round this many times, alternating",
    )


def _two_or_more(text: str) -> int:
    count = int(text)
    if count < 2:
        raise argparse.ArgumentTypeError("a transfer needs two accounts: at least 2")
    return count


def _counts(text: str) -> list[int]:
    return [positive_count(part) for part in text.split(",")]


def _accounts(text: str) -> list[int]:
    return [_two_or_more(part) for part in text.split(",")]


def main(argv: Sequence[str]) -> int:
    """``p2p bench ARGV``."""
    parser = argparse.ArgumentParser(prog="p2p bench", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = Plan.of(args)
    urls: list[str | None] = list(args.database_url or [None])
    if not args.workers_sweep:
        urls = _one_per_engine(urls)
    directory = Path(tempfile.mkdtemp(prefix="p2p-bench-"))
    figures: dict[str, Any] = {}
    if args.workers_sweep:
        sweeps = [
            _on_database(url, directory / f"db{index}", plan, args.workers_sweep)
            for index, url in enumerate(urls)
        ]
        figures = {"payments": plan.payments, "sweeps": sweeps}
        scaling.report(sweeps)
    else:
        engines = _open_engines(urls, directory)
        try:
            asyncio.run(_measure(engines, plan, args.workers))
        finally:
            for engine in engines:
                engine.stack.close()
                engine.database.drop()
        if len(engines) == 1:
            figures = engines[0].figures
            _report(figures, plan)
        else:
            sqlite, postgresql = (engine.figures for engine in engines)
            figures = {"payments": plan.payments, "connections": plan.connections}
            figures |= {"sqlite": sqlite, "postgresql": postgresql}
            figures |= compare(sqlite, postgresql)
            for engine in engines:
                _report(engine.figures, plan, engine.database.engine)
            report_comparison(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"run directory kept: {directory}")
    return 0


def _one_per_engine(urls: list[str | None]) -> list[str | None]:
    """One database, or one SQLite and one PostgreSQL, SQLite first: the run compares
    them. Raises ``SystemExit`` for any other list."""
    if len(urls) == 1:
        return urls
    try:
        kinds = [engine_of(url) for url in urls]
    except ValueError as error:
        raise SystemExit(f"p2p bench: {error}") from None
    if sorted(kinds) != ["postgresql", "sqlite"]:
        raise SystemExit(
            "p2p bench: several --database-url need --workers-sweep, "
            "or are one sqlite:/// and one postgresql:// to compare"
        )
    return sorted(urls, key=lambda url: engine_of(url) != "sqlite")


@dataclass
class _Engine:
    """One database's stack in a run: its processes, its accounts and its figures."""

    database: BenchDatabase
    stack: BenchStack
    figures: dict[str, Any] = field(default_factory=dict)
    api: Child | None = None
    api_port: int = 0
    accounts: list[tuple[str, str]] = field(default_factory=list)

    def label(self, phase: str, engines: int) -> str:
        """The phase's name on the progress line, with the engine's when there are two."""
        return phase if engines == 1 else f"{phase} {self.database.engine}".ljust(22)


def _open_engines(urls: list[str | None], directory: Path) -> list[_Engine]:
    """A fresh database and a stack for each URL, each in a directory of its own when
    there are several."""
    engines: list[_Engine] = []
    try:
        for url in urls:
            home = directory if len(urls) == 1 else directory / engine_of(url)
            home.mkdir(exist_ok=True)
            database = bench_database(url, home)
            engines.append(_Engine(database, BenchStack(home, UNTHROTTLED, database)))
    except BaseException:
        for engine in engines:
            engine.database.drop()
        raise
    return engines


class _Progress:
    def __init__(self, phase: str, total: float) -> None:
        self.phase = phase
        self.total = total
        self.tty = sys.stderr.isatty()

    def __call__(self, done: float) -> None:
        share = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(share * 30)
        text = f"\r  {self.phase:<10} [{bar:<30}] {share:4.0%}"
        if self.tty:
            print(text, end="", file=sys.stderr, flush=True)

    def done(self, note: str) -> None:
        print(f"\r  {self.phase:<10} [{'#' * 30}] {note}{' ' * 10}", file=sys.stderr)


async def _measure(engines: list[_Engine], plan: Plan, workers: int) -> None:
    """The phases, each on every engine before the next phase (SQLite's submit, then
    PostgreSQL's, …), so that what else loads the machine weighs on both alike. The
    ceilings touch no database: measured once, they are the same yardstick for both."""
    print(f"p2p bench: {plan.payments} payments, {plan.connections} connections", file=sys.stderr)
    for engine in engines:
        engine.figures = {
            "database": engine.database.engine,
            "payments": plan.payments,
            "connections": plan.connections,
        }
        if workers > 1:
            engine.figures["workers"] = workers
        engine.stack.start_redis()
    ceilings = await _ceilings(engines[0].stack, plan)
    for engine in engines:
        engine.figures |= ceilings
        engine.api, engine.api_port = engine.stack.start_api()
        engine.accounts = _open_accounts(engine.api_port, plan.accounts)
    for engine in engines:
        engine.figures |= await _submit(engine, plan, len(engines))
    for engine in engines:
        engine.figures |= await _drain_and_sustain(engine, plan, workers, len(engines))
    for engine in engines:
        engine.figures |= await _batches(engine, plan, workers, len(engines))


async def _ceilings(stack: BenchStack, plan: Plan) -> dict[str, Any]:
    """The HTTP ceiling, with the same requests the submit phase sends, and the queue's:
    a no-op actor with the worker's settings."""
    noop, noop_port = stack.start_noop_http()
    requests = _TransferRequests(_fake_accounts(plan.accounts), "noop")
    progress = _Progress("noop http", plan.payments)
    ceiling = await closed_loop(
        HOST,
        noop_port,
        requests,
        total=plan.payments,
        connections=plan.connections,
        on_progress=progress,
    )
    progress.done(f"{ceiling.rate:,.0f} req/s")
    noop.stop()
    figures = _latency("noop", ceiling)

    progress = _Progress("noop queue", 1)
    figures |= json.loads(stack.queue_ceiling(plan.payments))
    progress.done(f"{figures['queue_noop_rps']:,.0f} msg/s")
    return figures


async def _submit(engine: _Engine, plan: Plan, engines: int) -> dict[str, Any]:
    """The API alone, the worker held off."""
    requests = _TransferRequests(engine.accounts, "submit")
    progress = _Progress(engine.label("submit", engines), plan.payments)
    submitted = await closed_loop(
        HOST,
        engine.api_port,
        requests,
        total=plan.payments,
        connections=plan.connections,
        on_progress=progress,
    )
    progress.done(f"{submitted.rate:,.0f} req/s")
    _expect_only(submitted, 202, "submit")
    figures = _latency("submit", submitted)
    figures["submit_ratio"] = figures["submit_rps"] / engine.figures["noop_rps"]
    return figures


async def _drain_and_sustain(
    engine: _Engine, plan: Plan, workers: int, engines: int
) -> dict[str, Any]:
    """Drain: the worker alone settles the submit phase's backlog. Sustained: both, at
    half the submit rate. The worker stops at the end."""
    stack = engine.stack
    figures: dict[str, Any] = {}
    progress = _Progress(engine.label("drain", engines), plan.payments)
    worker = stack.start_worker(workers)
    assert engine.api is not None, "the API starts before the phases"
    rss = _RssSampler({"api": engine.api, "worker": worker})
    figures["drain_rps"] = _drain_rate(stack, progress, plan.payments, "submit")
    figures["drain_ratio"] = figures["drain_rps"] / engine.figures["queue_noop_rps"]
    progress.done(f"{figures['drain_rps']:,.0f} payments/s")

    rate = engine.figures["submit_rps"] / 2
    figures["sustained_offered_rps"] = rate
    requests = _TransferRequests(engine.accounts, "sustained")
    depth: list[tuple[float, int, int]] = []
    progress = _Progress(engine.label("sustained", engines), plan.sustained_s)
    sampling = _DepthSampler(stack, depth)
    sampling.start()
    sustained = await open_loop(
        HOST,
        engine.api_port,
        requests,
        rate=rate,
        seconds=plan.sustained_s,
        connections=plan.connections,
        on_tick=progress,
    )
    sampling.stop()
    _expect_only(sustained, 202, "sustained")
    _wait_settled(stack.db, None, plan.payments + sustained.count)
    rows = stack.db.rows(
        "SELECT created_at, completed_at FROM payments WHERE idempotency_key LIKE 'sustained-%'"
    )
    settle = [_seconds(str(created), str(completed)) for created, completed in rows]
    figures["sustained_submit_p99_ms"] = percentile(sustained.latencies, 0.99) * 1000
    figures["settle_p50_ms"] = percentile(settle, 0.50) * 1000
    figures["settle_p99_ms"] = percentile(settle, 0.99) * 1000
    figures["settle_max_ms"] = max(settle, default=0) * 1000
    figures["backlog_max"] = max((pending for _, pending, _ in depth), default=0)
    figures["backlog_end"] = depth[-1][1] if depth else 0
    # Bounded: the backlog at the end is no larger than a second of offered load.
    figures["backlog_bounded"] = figures["backlog_end"] <= rate
    figures["queue_depth"] = [
        {"t": round(t, 2), "pending": pending, "queued": queued} for t, pending, queued in depth
    ]
    progress.done(f"settle p99 {figures['settle_p99_ms']:,.0f} ms")
    figures |= rss.summary()
    worker.stop()
    return figures


async def _batches(engine: _Engine, plan: Plan, workers: int, engines: int) -> dict[str, Any]:
    """Batch submit (the worker held off), batch drain (the worker alone), batch e2e.
    The worker stops at the end."""
    stack, api_port, accounts = engine.stack, engine.api_port, engine.accounts
    figures: dict[str, Any] = {}
    batches = max(1, plan.payments // BATCH_SIZE)
    progress = _Progress(engine.label("batch", engines), batches)
    submitted = await closed_loop(
        HOST,
        api_port,
        BatchRequests(accounts, "batch", HOST),
        total=batches,
        connections=plan.connections,
        on_progress=progress,
    )
    _expect_only(submitted, 202, "batch submit")
    figures |= _latency("batch_submit", submitted)
    figures["batch_submit_tps"] = submitted.rate * BATCH_SIZE
    progress.done(f"{figures['batch_submit_tps']:,.0f} transfers/s")

    progress = _Progress(engine.label("batch drain", engines), batches * BATCH_SIZE)
    worker = stack.start_worker(workers)
    figures["batch_drain_tps"] = _drain_rate(stack, progress, batches * BATCH_SIZE, "batch")
    progress.done(f"{figures['batch_drain_tps']:,.0f} transfers/s")

    progress = _Progress(engine.label("batch e2e", engines), plan.sustained_s)
    settled = await settled_loop(
        HOST,
        api_port,
        BatchRequests(accounts, "e2e", HOST),
        stack.db,
        seconds=plan.sustained_s,
        connections=plan.connections,
        on_tick=progress,
    )
    worker.stop()
    if settled.refused:
        raise RuntimeError(f"batch e2e: unexpected answers {settled.refused}")
    figures["batch_e2e_tps"] = settled.transfers_per_s
    figures["batch_e2e_backlog_max"] = max(settled.backlog, default=0)
    progress.done(f"{figures['batch_e2e_tps']:,.0f} transfers/s")
    return figures


def _on_database(url: str | None, directory: Path, plan: Plan, sweep: list[int]) -> dict[str, Any]:
    """One workers sweep on a fresh database of its own, with its own stack."""
    directory.mkdir(parents=True)
    database = bench_database(url, directory)
    # A pass of reconciliation costs per ledger slice, not per payment: each worker
    # process's own would land in some rounds' windows and not in others.
    stack = BenchStack(directory, UNTHROTTLED | {"P2P_RECONCILE_INTERVAL_S": "0"}, database)
    try:
        return asyncio.run(_sweep(stack, plan, sweep))
    finally:
        stack.close()
        database.drop()


async def _sweep(stack: BenchStack, plan: Plan, sweep: list[int]) -> dict[str, Any]:
    """For each number of accounts and N: submit a backlog while N worker processes,
    booted, are stopped, then let them drain it, profiled; one API, one database, one
    Redis for the whole sweep."""
    counts = plan.accounts_sweep or (plan.accounts,)
    print(
        f"p2p bench: drain of {plan.payments} payments by {', '.join(map(str, sweep))} "
        f"worker process(es), between {' then '.join(map(str, counts))} accounts",
        file=sys.stderr,
    )
    stack.start_redis()
    api, api_port = stack.start_api()
    opened = _open_accounts(api_port, max(counts))
    rounds = []
    for repeat in range(plan.repeat):
        for accounts in counts:
            for workers in sweep:
                phase = f"s{repeat}a{accounts}w{workers}"
                worker = stack.start_worker(workers)
                scaling.wait_booted(worker, workers)
                with scaling.paused(worker, workers):
                    progress = _Progress(f"submit {workers}", plan.payments)
                    submitted = await closed_loop(
                        HOST,
                        api_port,
                        _TransferRequests(opened[:accounts], phase),
                        total=plan.payments,
                        connections=plan.connections,
                        on_progress=progress,
                    )
                    _expect_only(submitted, 202, phase)
                    progress.done(f"{submitted.rate:,.0f} req/s")
                    profile = scaling.DrainProfile(stack, api, worker, workers, phase)
                    profile.start()
                progress = _Progress(f"drain {workers}", plan.payments)
                rate = _drain_rate(stack, progress, plan.payments, phase)
                figures = profile.stop()
                worker.stop()
                progress.done(f"{rate:,.0f} payments/s")
                rounds.append(
                    {"workers": workers, "accounts": accounts, "drain_rps": rate} | figures
                )
    return {
        "payments": plan.payments,
        "database": stack.db.url.split(":", 1)[0],
        "workers_sweep": rounds,
    }


def _drain_rate(stack: BenchStack, progress: _Progress, payments: int, phase: str) -> float:
    """Payments per second from the first settlement of ``phase`` to the last message."""
    _wait_settled(stack.db, progress, payments)
    # Drained means every message handled too, as the no-op ceiling counts it: a
    # payment settled by a group still has its message to acknowledge.
    _wait_queue_empty(stack)
    drained = datetime.now(UTC).isoformat()
    ((first,),) = stack.db.rows(
        f"SELECT min(completed_at) FROM payments WHERE idempotency_key LIKE '{phase}-%'"
    )
    return (payments - 1) / _seconds(str(first), drained)


class _TransferRequests:
    """Request n: a transfer of 1 between neighbouring accounts, with its own key."""

    def __init__(self, accounts: list[tuple[str, str]], phase: str) -> None:
        self.accounts = accounts
        self.phase = phase

    def __call__(self, n: int) -> bytes:
        (sender, key), (receiver, _) = (
            self.accounts[n % len(self.accounts)],
            self.accounts[(n + 1) % len(self.accounts)],
        )
        body = {
            "from_account_id": sender,
            "to_account_id": receiver,
            "amount": 1,
            "currency": "EUR",
        }
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"{self.phase}-{n}"}
        return post("/payments/transfer", headers, body, HOST)


def _fake_accounts(count: int) -> list[tuple[str, str]]:
    return [(f"acc_{n:032x}", f"p2p_{n:064x}") for n in range(count)]


def _open_accounts(port: int, count: int) -> list[tuple[str, str]]:
    import httpx

    accounts = []
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as client:
        for n in range(count):
            user = client.post("/users", json={"name": "bench", "email": f"b{n}@example.com"})
            key = user.json()["api_key"]
            auth = {"Authorization": f"Bearer {key}"}
            account = client.post("/accounts", json={"currency": "EUR"}, headers=auth).json()
            funded = client.post(
                f"/accounts/{account['id']}/deposits",
                json={"amount": 10**9},
                headers=auth | {"Idempotency-Key": "bench-funding"},
            )
            assert funded.status_code == 201, funded.text
            accounts.append((account["id"], key))
    return accounts


def _expect_only(result: Result, status: int, phase: str) -> None:
    others = {s: n for s, n in result.statuses.items() if s != status}
    if others:
        raise RuntimeError(f"{phase}: unexpected answers {others}")


def _latency(name: str, result: Result) -> dict[str, float]:
    return {
        f"{name}_rps": result.rate,
        f"{name}_p50_ms": percentile(result.latencies, 0.50) * 1000,
        f"{name}_p99_ms": percentile(result.latencies, 0.99) * 1000,
        f"{name}_max_ms": max(result.latencies, default=0) * 1000,
    }


def _wait_settled(db: BenchDatabase, progress: _Progress | None, total: int) -> None:
    """Until no payment is pending; ``total`` is what the progress bar counts to."""
    deadline = time.monotonic() + 600
    while True:
        pending = _pending(db)
        if progress is not None:
            progress(total - pending)
        if pending == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pending} payments still pending after 600 s")
        time.sleep(0.1)


def _pending(db: BenchDatabase) -> int:
    ((count,),) = db.rows("SELECT count(*) FROM payments WHERE status = 'pending'")
    return int(count or 0)


def _wait_queue_empty(stack: BenchStack) -> None:
    deadline = time.monotonic() + 600
    with stack.redis() as client:
        while client.hlen("dramatiq:payments.msgs"):
            if time.monotonic() > deadline:
                raise RuntimeError("messages still queued after 600 s")
            time.sleep(0.01)


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


class _DepthSampler:
    """Pending payments (the database) and queued messages (Redis) twice a second."""

    def __init__(self, stack: BenchStack, into: list[tuple[float, int, int]]) -> None:
        self._stack = stack
        self._into = into
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        with self._stack.redis() as client:
            while not self._stop.wait(0.5):
                pending = _pending(self._stack.db)
                queued = int(client.hlen("dramatiq:payments.msgs"))
                self._into.append((time.monotonic() - began, pending, queued))


class _RssSampler:
    """Resident memory of the API and the worker, sampled in the background."""

    def __init__(self, children: dict[str, Child]) -> None:
        self._children = children
        self._samples: dict[str, list[float]] = {name: [] for name in children}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name, child in self._children.items():
                self._samples[name].append(child.rss_mb())

    def summary(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        out: dict[str, float] = {}
        for name, child in self._children.items():
            samples = [s for s in self._samples[name] if s] or [0.0]
            out[f"{name}_rss_mb"] = child.peak_rss_mb()
            half = max(1, len(samples) // 2)
            out[f"{name}_rss_growth"] = (
                statistics.mean(samples[half:]) / statistics.mean(samples[:half]) - 1
                if len(samples) > 1
                else 0.0
            )
        return out


def _report(figures: dict[str, Any], plan: Plan, engine: str = "") -> None:
    if not figures:
        return
    rows = [
        (
            "submit",
            f"{figures['submit_rps']:,.0f} req/s",
            f"{figures['noop_rps']:,.0f} req/s",
            f"{figures['submit_ratio']:.2f}",
            "≥ 0.60",
        ),
        (
            "  latency p50 / p99 / max",
            f"{figures['submit_p50_ms']:.1f} / {figures['submit_p99_ms']:.1f} / "
            f"{figures['submit_max_ms']:.0f} ms",
            f"{figures['noop_p50_ms']:.1f} / {figures['noop_p99_ms']:.1f} / "
            f"{figures['noop_max_ms']:.0f} ms",
            "",
            "",
        ),
        (
            "drain",
            f"{figures['drain_rps']:,.0f} payments/s",
            f"{figures['queue_noop_rps']:,.0f} msg/s",
            f"{figures['drain_ratio']:.2f}",
            "≥ 0.80",
        ),
        (
            "sustained settle p50 / p99",
            f"{figures['settle_p50_ms']:.0f} / {figures['settle_p99_ms']:.0f} ms",
            f"at {figures['sustained_offered_rps']:,.0f} req/s",
            "",
            "p99 ≤ 250 ms",
        ),
        (
            "sustained backlog max / end",
            f"{figures['backlog_max']} / {figures['backlog_end']}",
            "bounded" if figures["backlog_bounded"] else "GROWING",
            "",
            "bounded",
        ),
        (
            "batch submit (100 a batch)",
            f"{figures['batch_submit_tps']:,.0f} transfers/s",
            f"{figures['submit_rps']:,.0f} req/s",
            f"{figures['batch_submit_tps'] / figures['submit_rps']:.1f}",
            "",
        ),
        (
            "batch drain",
            f"{figures['batch_drain_tps']:,.0f} transfers/s",
            f"{figures['drain_rps']:,.0f} payments/s",
            f"{figures['batch_drain_tps'] / figures['drain_rps']:.1f}",
            "",
        ),
        (
            "batch e2e (accepted and settled)",
            f"{figures['batch_e2e_tps']:,.0f} transfers/s",
            f"backlog max {figures['batch_e2e_backlog_max']:,}",
            "",
            "≥ 10,000/s",
        ),
        (
            "peak RSS api / worker",
            f"{figures['api_rss_mb']:.0f} / {figures['worker_rss_mb']:.0f} MiB",
            f"growth {figures['api_rss_growth']:+.0%} / {figures['worker_rss_growth']:+.0%}",
            "",
            "flat (±10%)",
        ),
    ]
    print()
    on = f"{engine}, " if engine else ""
    print(
        f"| measure ({on}{plan.payments} payments, {plan.connections} connections) | figure "
        "| ceiling | ratio | target |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
