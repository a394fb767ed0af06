"""``api.server.serve``: the settings every HTTP server of ours runs with."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from api import server
from api.http_protocol import BoundedHttpToolsProtocol, ServerLimits


@pytest.fixture
def switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_serve_runs_uvicorn_as_configured_with_a_short_gil_switch_interval(
    monkeypatch: pytest.MonkeyPatch, switch_interval: None
) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(server._Server, "run", lambda self, sockets=None: ran.append(self))
    sys.setswitchinterval(0.005)

    limits = ServerLimits(
        max_header_bytes=1000, max_head_bytes=4000, header_timeout_s=1.5, body_timeout_s=2.5
    )
    server.serve(FastAPI(), "127.0.0.1", 0, limits)

    assert sys.getswitchinterval() == pytest.approx(server.GIL_SWITCH_INTERVAL_S)
    (uvicorn_server,) = ran
    config = uvicorn_server.config
    assert (config.loop, config.access_log) == ("uvloop", False)
    assert issubclass(config.http, BoundedHttpToolsProtocol)
    assert config.http.limits == limits
    assert config.timeout_graceful_shutdown == server.GRACEFUL_SHUTDOWN_S
