"""The FastAPI application, built by ``create_app`` from settings and a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api import problems
from api.deps import Services
from api.metrics import ApiMetrics
from api.middleware import AuthenticationMiddleware, BodyMiddleware, MetricsMiddleware
from api.routes import accounts, health, payments, users
from api.waiter import PaymentWaiter
from shared.committer import GroupCommitter
from shared.db import Database
from shared.settings import Settings
from worker.queue import SettlementQueue


def create_app(
    settings: Settings,
    db: Database,
    queue: SettlementQueue,
    *,
    worker_metrics: CollectorRegistry | None = None,
) -> FastAPI:
    """The API over ``db``, waking the worker through ``queue``. The caller owns both.
    ``worker_metrics`` is served on ``/metrics`` too (``p2p dev``: one process, one port)."""
    metrics = ApiMetrics(queue, also=worker_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        waiter = PaymentWaiter(db)
        writer = GroupCommitter(db)
        app.state.services = Services(settings, db, writer, queue, waiter, metrics)
        polling = asyncio.create_task(waiter.run(), name="p2p-long-poll")
        try:
            yield
        finally:
            polling.cancel()
            with suppress(asyncio.CancelledError):
                await polling
            writer.close()

    app = FastAPI(
        title="P2P payment processor",
        version="1.0.0",
        description="Submit a transfer, get `202` and a payment id, poll until it settles.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    problems.install(app)
    for module in (users, accounts, payments, health):
        app.include_router(module.router)
    # Added last is outermost: metrics see every answer, the size limit comes before
    # authentication, and authentication before FastAPI reads the body.
    app.add_middleware(AuthenticationMiddleware, db=db)
    app.add_middleware(BodyMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _describe_truthfully(app, settings)
    return app


def _describe_truthfully(app: FastAPI, settings: Settings) -> None:
    """Errors are problem+json, amounts are capped by the setting, auth is Bearer."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for name in ("DepositCreate", "TransferCreate"):
            schemas[name]["properties"]["amount"]["maximum"] = settings.max_amount
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                if path not in {"/users", "/healthz", "/readyz", "/metrics"}:
                    operation["security"] = [{"bearer": []}]
                for status, answer in operation["responses"].items():
                    if int(status) >= 400:
                        answer["content"] = {
                            problems.PROBLEM_JSON: {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
