"""``python -m bench.flood``: good requests' latency while other clients flood the API.

Starts ``p2p dev`` on loopback in a temporary directory, signs a user up with two
funded accounts, then runs three phases of ``--seconds`` each: quiet; ``--flooders``
clients each sending heads with a ``--header-mib`` header to ``GET /healthz`` as fast as
they are answered; and as many sending bad bodies (about 1 MiB of ~90,000 unknown fields
to ``POST /users``). A server still busy with the bad bodies when the phase ends is left
to finish them after it: that phase comes last. Through every phase one client sends
good requests one after the other (a transfer, then a read of the account) and their
latency is printed per phase, with what the flooders got back and the API's peak memory.

``--p2p`` runs another checkout's ``p2p`` (say, the code before a change) against the
same measurement. Bounded: floods stop with their phase, and never send more than
``--max-floods`` requests each.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import percentile
from bench.stack import Child, free_port, wait_until

HOST = "127.0.0.1"
# What the good client must never run into, so that only the floods are measured.
_ENV = {
    "P2P_RATE_LIMIT_PER_S": "1000000",
    "P2P_RATE_LIMIT_BURST": "1000000",
    "P2P_LOG_LEVEL": "WARNING",
}


@dataclass
class Phase:
    name: str
    latencies: list[float]
    good_statuses: Counter[int]
    flood_outcomes: Counter[str]
    flood_sent_mib: float
    peak_rss_mib: float


def main() -> None:
    args = _parser().parse_args()
    directory = Path(tempfile.mkdtemp(prefix="p2p-flood-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env.update(_ENV, P2P_DATABASE_URL=f"sqlite:///{directory / 'p2p.db'}")
    if args.no_signup_limit:
        env["P2P_SIGNUP_RATE_LIMIT_PER_HOUR"] = "0"
    api = Child("dev", [args.p2p, "dev", "--port", str(port)], env, directory)
    try:
        wait_until(lambda: _healthy(port), "p2p dev to answer /healthz")
        good = _GoodClient(port)
        phases = [
            _phase("quiet", good, api, args, None),
            _phase("huge headers", good, api, args, "headers"),
            _phase("bad bodies", good, api, args, "bodies"),
        ]
    finally:
        api.stop()
        shutil.rmtree(directory, ignore_errors=True)
    _report(args, phases)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__)
    parser.add_argument("--p2p", default=str(Path(sys.executable).with_name("p2p")))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--header-mib", type=int, default=32)
    parser.add_argument("--max-floods", type=int, default=200, help="requests per flooder")
    parser.add_argument(
        "--no-signup-limit",
        action="store_true",
        help="P2P_SIGNUP_RATE_LIMIT_PER_HOUR=0: every bad body reaches validation",
    )
    return parser


def _healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=1)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


class _GoodClient:
    """One user, two funded accounts, one kept-alive connection, one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection(HOST, port, timeout=120)
        user = self._call("POST", "/users", {"name": "Good", "email": "good@example.com"})
        self.auth = {"Authorization": f"Bearer {user['api_key']}"}
        self.sender = self._call("POST", "/accounts", {"currency": "EUR"})["id"]
        self.receiver = self._call("POST", "/accounts", {"currency": "EUR"})["id"]
        self._call("POST", f"/accounts/{self.sender}/deposits", {"amount": 10**11}, key="funds")
        self.serial = 0

    def _call(
        self, method: str, path: str, body: object = None, *, key: str | None = None
    ) -> dict[str, str]:
        status, data = self.request(method, path, body, key=key)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        answer: dict[str, str] = json.loads(data)
        return answer

    def request(
        self, method: str, path: str, body: object = None, *, key: str | None = None
    ) -> tuple[int, bytes]:
        headers = dict(getattr(self, "auth", {}))
        if key is not None:
            headers["Idempotency-Key"] = key
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, payload, headers)
            response = self.connection.getresponse()
        except (http.client.HTTPException, OSError):
            self.connection.close()
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=120)
            return 0, b""
        return response.status, response.read()

    def one(self) -> tuple[float, int]:
        """A transfer, or a read of the sending account, in turn; its latency and status."""
        self.serial += 1
        started = time.perf_counter()
        if self.serial % 2:
            body = {
                "from_account_id": self.sender,
                "to_account_id": self.receiver,
                "amount": 1,
                "currency": "EUR",
            }
            status, _ = self.request("POST", "/payments/transfer", body, key=f"good-{self.serial}")
        else:
            status, _ = self.request("GET", f"/accounts/{self.sender}")
        return time.perf_counter() - started, status


def _phase(
    name: str, good: _GoodClient, api: Child, args: argparse.Namespace, kind: str | None
) -> Phase:
    outcomes: multiprocessing.Queue[tuple[Counter[str], float]] = multiprocessing.Queue()
    flooders = [
        multiprocessing.Process(
            target=_flood, args=(kind, good.port, args.seconds, args, outcomes), daemon=True
        )
        for _ in range(args.flooders if kind else 0)
    ]
    for flooder in flooders:
        flooder.start()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    peak = 0.0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        seconds, status = good.one()
        latencies.append(seconds)
        statuses[status] += 1
        peak = max(peak, api.rss_mb())
    total: Counter[str] = Counter()
    sent = 0.0
    for _ in flooders:
        counts, mib = outcomes.get(timeout=args.seconds + 60)
        total.update(counts)
        sent += mib
    for flooder in flooders:
        flooder.join(30)
    return Phase(name, latencies, statuses, total, sent, peak)


def _flood(
    kind: str,
    port: int,
    seconds: float,
    args: argparse.Namespace,
    outcomes: multiprocessing.Queue[tuple[Counter[str], float]],
) -> None:
    if kind == "bodies":
        fields = ",".join(f'"f{n}":0' for n in range(90_000))
        payload = ("{" + fields + "}").encode()
        request = (
            f"POST /users HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
    else:
        request = (
            f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nX-Flood: ".encode()
            + b"a" * (args.header_mib * 2**20)
            + b"\r\n\r\n"
        )
    counts, sent = asyncio.run(_send_until(port, request, seconds, args.max_floods))
    outcomes.put((counts, sent / 2**20))


async def _send_until(
    port: int, request: bytes, seconds: float, limit: int
) -> tuple[Counter[str], int]:
    """Sends ``request`` over and over, each after the answer to the last, until the
    deadline; counts the answers by status (or how the connection ended)."""
    counts: Counter[str] = Counter()
    sent = 0
    deadline = time.monotonic() + seconds
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < deadline and sum(counts.values()) < limit:
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            left = deadline - time.monotonic()
            status, closing = await asyncio.wait_for(_answer(reader, writer), max(left, 0.1))
            sent += len(request)  # offered: a server may stop reading sooner
            counts[str(status)] += 1
            if closing:
                writer.close()
                writer = reader = None
        except TimeoutError:
            counts["unanswered at the deadline"] += 1
            break
        except (ConnectionError, asyncio.IncompleteReadError):
            counts["connection closed"] += 1
            writer = reader = None
    if writer is not None:
        writer.close()
    return counts, sent


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bool]:
    """The answer's status, and whether the server closes the connection after it."""
    drain = asyncio.ensure_future(writer.drain())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    drain.cancel()
    return int(head[9:12]), b"connection: close" in head.lower()


def _report(args: argparse.Namespace, phases: list[Phase]) -> None:
    print(f"p2p: {args.p2p}")
    print(
        f"{args.seconds:g} s a phase; {args.flooders} flooders; headers of {args.header_mib} MiB;"
        f" sign-up limit {'off' if args.no_signup_limit else 'as configured'}"
    )
    row = "{:<14} {:>6} {:>9} {:>9} {:>9}  {:>9}  {}"
    print(row.format("phase", "good", "p50 ms", "p99 ms", "max ms", "peak RSS", "floods"))
    for phase in phases:
        lat = sorted(phase.latencies)
        floods = ", ".join(f"{k}: {v}" for k, v in sorted(phase.flood_outcomes.items()))
        print(
            row.format(
                phase.name,
                len(lat),
                _ms(lat, 0.50),
                _ms(lat, 0.99),
                f"{lat[-1] * 1000:.0f}",
                f"{phase.peak_rss_mib:.0f} MiB",
                (floods or "-") + (f" ({phase.flood_sent_mib:.0f} MiB offered)" if floods else ""),
            )
        )
        bad = {s: n for s, n in phase.good_statuses.items() if s not in (200, 202)}
        if bad:
            print(f"{'':<14} good requests answered otherwise: {bad}")


def _ms(latencies: list[float], q: float) -> str:
    return f"{percentile(latencies, q) * 1000:.1f}"


if __name__ == "__main__":
    main()
