"""A local webhook receiver for the tests: an HTTP server on a free port, on its own
thread, that keeps every request it gets and answers as the test scripts it.

``answers`` is a list of status codes given out in order (the last one repeats);
``hang`` makes it hold each request until the test ends (released at ``close``);
``redirect_to`` answers ``307`` pointing there. Waiting is bounded: ``wait_for(n)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    answers: list[int] = field(default_factory=lambda: [200])
    hang: bool = False
    redirect_to: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def localhost_url(self) -> str:
        return f"http://localhost:{self.port}/hooks"

    def record(self, received: Received) -> int:
        """Keep the request; the status to answer it with."""
        with self._lock:
            self.received.append(received)
            self._lock.notify_all()
            index = min(len(self.received), len(self.answers)) - 1
            return self.answers[index]

    def wait_for(self, count: int, *, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` requests, once they have come; fails after ``timeout``."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(
                    f"the receiver got {len(self.received)} requests, not {count}, in {timeout} s"
                )
            return list(self.received[:count])

    def hold(self) -> None:
        """What a hanging receiver does with a request: nothing, until released."""
        self._released.wait()

    def release(self) -> None:
        self._released.set()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        status = receiver.record(
            Received(self.path, dict(self.headers.items()), body, time.monotonic())
        )
        if receiver.hang:
            receiver.hold()
            return
        self.send_response(307 if receiver.redirect_to else status)
        if receiver.redirect_to:
            self.send_header("Location", receiver.redirect_to)
        answer = b"x" * 5000 if status >= 400 else b"ok"
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


@contextmanager
def receiving(receiver: Receiver | None = None) -> Iterator[Receiver]:
    """``receiver`` (a new one by default) listening on 127.0.0.1 until the block ends."""
    receiver = receiver or Receiver()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = receiver
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="test-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
        thread.join()
