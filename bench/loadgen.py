"""A small HTTP/1.1 load generator on raw asyncio streams: keep-alive connections, one
request in flight on each, nanosecond latencies. Lean enough that on two cores it costs
the server less than a general-purpose client would, and the same for every endpoint it
measures, so ratios between them are fair."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RequestBytes = Callable[[int], bytes]


@dataclass
class Result:
    """What a run saw: per-request latencies (s), statuses, and its wall time."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def post(path: str, headers: dict[str, str], body: object, host: str) -> bytes:
    """One request's bytes."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def get(path: str, headers: dict[str, str], host: str) -> bytes:
    """One request's bytes."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request on a keep-alive connection; its status and body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    body = await reader.readexactly(length) if length else b""
    return status, body


async def closed_loop(
    host: str,
    port: int,
    make_request: RequestBytes,
    *,
    total: int,
    connections: int,
    keep_bodies: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> Result:
    """``total`` requests as fast as ``connections`` keep-alive clients can go."""
    result = Result()
    numbers = itertools.count()

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (n := next(numbers)) < total:
                started = time.perf_counter()
                status, body = await exchange(reader, writer, make_request(n))
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if keep_bodies:
                    result.bodies.append(body)
                if on_progress is not None and n % 500 == 0:
                    on_progress(result.count)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


async def open_loop(
    host: str,
    port: int,
    make_request: RequestBytes,
    *,
    rate: float,
    seconds: float,
    connections: int,
    keep_bodies: bool = False,
    on_tick: Callable[[float], None] | None = None,
) -> Result:
    """Offer ``rate`` requests per second for ``seconds``, whatever the answers' pace:
    requests are due on a fixed schedule, and latency counts from when each was due."""
    result = Result()
    due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    total = int(rate * seconds)

    async def schedule() -> None:
        begin = time.perf_counter()
        for n in range(total):
            at = begin + n / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait((n, at))
            if on_tick is not None and n % max(1, int(rate / 4)) == 0:
                on_tick(time.perf_counter() - begin)
        for _ in range(connections):
            due.put_nowait((-1, 0.0))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                n, at = await due.get()
                if n < 0:
                    return
                status, body = await exchange(reader, writer, make_request(n))
                result.latencies.append(time.perf_counter() - at)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if keep_bodies:
                    result.bodies.append(body)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(schedule(), *(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
