"""``p2p api`` and ``p2p dev`` run the bounded HTTP server: a huge header is ``431``, a
head that dribbles in is ``408``, and other clients are served meanwhile."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx

from tests.e2e.harness import Api, Stack

DEADLINE_S = 10.0


def _answer_to(api: Api, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", api.port), timeout=DEADLINE_S) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return sock.recv(65536)


def _assert_bounded(api: Api) -> None:
    huge = _answer_to(api, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2**20)
    started = time.monotonic()
    endless = _answer_to(api, b"GET /healthz HTTP/1.1\r\nHost: t\r\n")

    assert huge.startswith(b"HTTP/1.1 431 "), huge[:200]
    assert endless.startswith(b"HTTP/1.1 408 "), endless[:200]
    assert time.monotonic() - started < DEADLINE_S
    assert httpx.get(f"{api.url}/healthz", timeout=DEADLINE_S).status_code == 200


def test_p2p_dev_refuses_a_megabyte_header_and_cuts_off_a_head_that_never_ends(
    dev_stack: Stack,
) -> None:
    dev_stack.overrides.update(P2P_HEADER_TIMEOUT_S="0.5")
    _assert_bounded(dev_stack.start_dev())


def test_p2p_api_refuses_a_megabyte_header_and_cuts_off_a_head_that_never_ends(
    stack: Stack,
) -> None:
    stack.overrides.update(P2P_HEADER_TIMEOUT_S="0.5")
    _assert_bounded(stack.start_api())
