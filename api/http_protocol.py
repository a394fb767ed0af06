"""uvicorn's httptools protocol, with bounds on a request's head and deadlines for it.

uvicorn bounds neither the size of a request's head nor how long it and the body may
take to arrive (it only closes a keep-alive connection left idle): httptools gathers a
header value of any size, and a client that sends a byte now and then holds its
connection for ever. This subclass refuses a header field over ``max_header_bytes`` or
a head over ``max_head_bytes`` with ``431``, and cuts off a head that takes longer than
``header_timeout_s`` or a body longer than ``body_timeout_s`` with ``408``; both then
close the connection. The application never sees such a request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int
    max_head_bytes: int
    header_timeout_s: float
    body_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            settings.max_header_bytes,
            settings.max_head_bytes,
            settings.header_timeout_s,
            settings.body_timeout_s,
        )


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head that is over its bound."""


def bounded_protocol(limits: ServerLimits) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``, bound to ``limits``."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One connection. While a head is being read, ``_head_bytes`` counts what arrived
    of it; one deadline at a time runs: the head's, then the body's."""

    limits: ServerLimits

    _in_head = True
    _head_bytes = 0
    """Bytes read while a head was incomplete (a read may hold the body's start too)."""
    _head_seen = 0
    """The request line and header fields parsed so far."""
    _head_refusal: str | None = None
    _refused = False
    """Answered ``408`` or ``431``: what the client still sends is dropped."""
    _dropped = 0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # From connecting: a connection that never sends a byte is cut off too.
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._head_refusal is not None:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._head_refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        # httptools holds a header field until it is whole: bound what it holds so far.
        if self._in_head and self._head_bytes > self.limits.max_head_bytes:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._head_too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_seen = 0
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._head_seen += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > self.limits.max_header_bytes:
            self._stop_head(f"a header field is larger than {self.limits.max_header_bytes} bytes")
        # A whole head may come in one read: count it exactly, field by field, too.
        self._head_seen += len(name) + len(value) + 4
        if self._head_seen > self.limits.max_head_bytes:
            self._stop_head(self._head_too_large())
        super().on_header(name, value)

    def _stop_head(self, refusal: str) -> None:
        """Stops the parser: ``feed_data`` raises, and ``data_received`` answers ``431``."""
        self._head_refusal = refusal
        raise _HeadTooLarge(refusal)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def _head_too_large(self) -> str:
        return f"the request head is larger than {self.limits.max_head_bytes} bytes"

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # Answering the request before this one: close once that answer is out.
            cycle.keep_alive = False
            return
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, "the request head took too long to arrive")

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.pipeline:
            # Reading waits for the answers before this request's: not the client's fault.
            self._arm(self.limits.body_timeout_s, self._body_timed_out)
            return
        cycle = self.cycle
        if cycle.response_started:
            self.transport.close()
            return
        # The application waits for the rest of the body: it gets a disconnect instead,
        # and whatever it answers then is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, "the request body took too long to arrive")

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        """A problem answer written straight to the client, then the connection closed."""
        self._disarm()
        if self.transport.is_closing():
            return
        code = _CODES[status]
        body = json.dumps(
            {
                "type": f"urn:p2p:problem:{code}",
                "title": status.phrase,
                "status": status.value,
                "detail": detail,
                "code": code,
            }
        ).encode()
        head = [f"HTTP/1.1 {status.value} {status.phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/problem+json",
            b"content-length: " + str(len(body)).encode(),
            b"cache-control: no-store",
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        # Closing with unread bytes would reset the connection, and the client could lose
        # the answer: say we are done, then read and drop what still comes for a moment.
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)


# How long, and how much of, a refused connection is read (and dropped) before it is
# closed: long enough for the answer to be on its way, short of a client's whole flood.
_LINGER_S = 1.0
_LINGER_BYTES = 1024 * 1024

_CODES = {
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "headers_too_large",
    HTTPStatus.REQUEST_TIMEOUT: "request_timeout",
}
