"""The HTTP server's own bounds (``api.http_protocol``), tried with raw sockets against a
real uvicorn serving the real app: heads too large get ``431``, heads and bodies too slow
get ``408``, and the connection is closed either way."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.app import create_app
from api.http_protocol import ServerLimits
from api.server import make_server
from shared.settings import Settings
from shared.store import Database
from tests.api.support import idle_queue

HEADER_BYTES = 1024
HEAD_BYTES = 4096
TIMEOUT_S = 0.5
# Every wait below ends at a deadline this far off, long after the server should have acted.
DEADLINE_S = 10.0

pytestmark = pytest.mark.parametrize(
    "settings",
    [
        {
            "max_header_bytes": HEADER_BYTES,
            "max_head_bytes": HEAD_BYTES,
            "header_timeout_s": TIMEOUT_S,
            "body_timeout_s": TIMEOUT_S,
        }
    ],
    indirect=True,
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    """The server closed the connection after it."""

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def address(settings: Settings, db: Database) -> Iterator[tuple[str, int]]:
    """A real server (uvicorn, the bounded protocol, the app) on a free loopback port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    with idle_queue(settings, db) as queue:
        app = create_app(settings, db, queue)
        server = make_server(app, "127.0.0.1", 0, ServerLimits.from_settings(settings))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
        thread.start()
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not server.started:
                assert thread.is_alive(), "the server stopped at start"
                assert time.monotonic() < deadline, "the server did not start"
                threading.Event().wait(0.01)
            yield listener.getsockname()
        finally:
            server.should_exit = True
            thread.join(DEADLINE_S)
            listener.close()


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=DEADLINE_S)


def read_answer(sock: socket.socket) -> Answer:
    """One answer, by its Content-Length; then whether the server closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the body"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body[:length], closed=_closed(sock))


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.2)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    finally:
        sock.settimeout(DEADLINE_S)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Reads (and drops) until the server closes the connection, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def get_healthz(address: tuple[str, int], extra: bytes = b"") -> Answer:
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n" + extra + b"\r\n")
        return read_answer(sock)


def test_a_header_field_over_the_bound_is_refused_with_431_and_the_connection_closed(
    address: tuple[str, int],
) -> None:
    answer = get_healthz(address, b"X-Big: " + b"a" * HEADER_BYTES + b"\r\n")

    assert answer.status == 431
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "headers_too_large"
    assert answer.closed


def test_a_header_field_at_the_bound_is_served(address: tuple[str, int]) -> None:
    name = b"x-big"
    answer = get_healthz(address, name + b": " + b"a" * (HEADER_BYTES - len(name)) + b"\r\n")

    assert answer.status == 200, answer.body


def test_many_small_headers_over_the_total_bound_are_refused_with_431(
    address: tuple[str, int],
) -> None:
    fields = b"".join(b"X-Field-%d: %s\r\n" % (n, b"v" * 100) for n in range(60))

    answer = get_healthz(address, fields)

    assert answer.status == 431
    assert "head" in answer.json()["detail"]


def test_a_huge_header_streamed_is_refused_with_431_before_it_ends(
    address: tuple[str, int],
) -> None:
    """Unbounded, the server read all 64 MiB and then answered; bounded, it answers
    while the client is still sending."""
    sent, data = 0, b""
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: ")
        while sent < 64 * 1024 * 1024 and not data:
            try:
                sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 65536
            sock.setblocking(False)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
                sock.settimeout(DEADLINE_S)
        if not data:
            data = sock.recv(65536)
        assert closed_within(sock, DEADLINE_S)

    assert data.startswith(b"HTTP/1.1 431 "), data
    assert sent < 64 * 1024 * 1024
    assert get_healthz(address).status == 200


def test_a_head_sent_a_line_at_a_time_too_slowly_gets_408_at_the_deadline(
    address: tuple[str, int],
) -> None:
    with connect(address) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        sock.settimeout(TIMEOUT_S / 5)
        data = b""
        while not data and time.monotonic() - started < DEADLINE_S:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - started

    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b'"code": "request_timeout"' in data
    assert TIMEOUT_S * 0.9 <= elapsed < DEADLINE_S


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(
    address: tuple[str, int],
) -> None:
    with connect(address) as sock:
        started = time.monotonic()
        answer = read_answer(sock)
        elapsed = time.monotonic() - started

    assert answer.status == 408
    assert answer.closed
    assert TIMEOUT_S * 0.9 <= elapsed < DEADLINE_S


def test_a_body_sent_a_byte_at_a_time_too_slowly_gets_408_and_records_nothing(
    address: tuple[str, int], db: Database
) -> None:
    body = json.dumps({"name": "Ada", "email": "ada@example.com"}).encode()
    with connect(address) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 100)
        )
        sock.settimeout(TIMEOUT_S / 5)
        data = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if data:
                break
        sock.settimeout(DEADLINE_S)
        if not data:
            data = sock.recv(65536)
        elapsed = time.monotonic() - started

    assert data.startswith(b"HTTP/1.1 408 "), data
    assert TIMEOUT_S * 0.9 <= elapsed < DEADLINE_S
    assert db.connection().execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_a_whole_json_body_short_of_its_declared_length_is_never_acted_on(
    address: tuple[str, int], db: Database
) -> None:
    """The bytes that came parse as a sign-up; the body is cut off, so nothing is made."""
    body = json.dumps({"name": "Ada", "email": "ada@example.com"}).encode()
    with connect(address) as sock:
        sock.sendall(
            b"POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body) + 3, body)
        )
        answer = read_answer(sock)

    assert answer.status == 408
    assert answer.closed
    assert db.connection().execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_a_kept_alive_connection_serves_request_after_request_within_the_bounds(
    address: tuple[str, int],
) -> None:
    body = json.dumps({"name": "Ada", "email": "ada@example.com"}).encode()
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        first = read_answer(sock)
        sock.sendall(
            b"POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        second = read_answer(sock)

    assert (first.status, first.closed) == (200, False)
    assert second.status == 201, second.body
