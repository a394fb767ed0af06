"""How every HTTP server of ours runs: the one uvicorn configuration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


class _Server(uvicorn.Server):
    """uvicorn, except that SIGTERM and SIGINT end ``serve`` instead of the process.

    uvicorn shuts down gracefully, then raises the signal again with the default handler
    back in place, which kills the process before the caller can stop what it started
    beside the server (the worker in ``p2p dev``, the enqueue thread, the database).
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then return: uvloop, httptools; no access log and
    no logging setup of uvicorn's own (``api.request_context`` writes the access lines,
    and uvicorn's loggers go through ``shared.logs`` like every other)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
    )
    _Server(config).run()
