"""How every HTTP server of ours runs: the one uvicorn configuration."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from api.app import release_long_polls
from api.http_protocol import ServerLimits, bounded_protocol

# How long a stopping server lets requests in flight finish before cancelling them.
# Long-polls are answered at once, so only a submit waiting on its commit is left.
GRACEFUL_SHUTDOWN_S = 10

# An API process runs three threads on one GIL: the event loop, the group committer and
# the sender. The committer lets the GIL go at every SQLite call and must then win it back
# from a busy loop, which by default may keep it 5 ms; the requests of its group wait
# meanwhile. 1 ms gave 5-10 % more submits in alternating runs here.
GIL_SWITCH_INTERVAL_S = 0.001


class _Server(uvicorn.Server):
    """uvicorn, except that SIGTERM and SIGINT end ``serve`` instead of the process, and
    that long-polls in flight are answered as soon as shutting down begins.

    uvicorn shuts down gracefully (stops accepting, lets requests in flight finish, then
    runs the lifespan's shutdown, which drains the group committer), then raises the
    signal again with the default handler back in place, which kills the process before
    the caller can stop what it started beside the server (the worker in ``p2p dev``,
    the enqueue thread, the database).
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        release_long_polls(self._app)
        await super().shutdown(sockets)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def serve(
    app: FastAPI,
    host: str,
    port: int,
    limits: ServerLimits,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then return: uvloop, httptools bounded by ``limits``
    (``api.http_protocol``); no access log and no logging setup of uvicorn's own
    (``api.request_context`` writes the access lines, and uvicorn's loggers go through
    ``shared.logs`` like every other).

    ``sock``: a socket already listening (``p2p api --processes``), instead of binding
    ``host:port``."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    server = make_server(app, host, port, limits)
    server.run(sockets=None if sock is None else [sock])


def make_server(app: FastAPI, host: str, port: int, limits: ServerLimits) -> uvicorn.Server:
    """The server ``serve`` runs, not yet started."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=bounded_protocol(limits),
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return _Server(config, app)
