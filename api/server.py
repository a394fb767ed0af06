"""How every HTTP server of ours runs: the one uvicorn configuration."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI


def serve(app: FastAPI, host: str, port: int) -> None:
    """uvicorn with uvloop and httptools; no access log (the metrics count requests)."""
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", access_log=False)
