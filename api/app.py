"""The FastAPI application, built by ``create_app`` from settings and a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry

from api import problems, request_context
from api.deps import Services
from api.limiter import RateLimiter
from api.metrics import ApiMetrics
from api.middleware import DOCS_ASSETS, AuthenticationMiddleware, BodyMiddleware
from api.routes import accounts, batches, events, health, holds, payments, refunds, users, webhooks
from api.routes._lean import LeanDispatch
from api.schemas import REQUEST_BODIES
from api.waiter import Waiter
from jobs.producer import SettlementQueue
from shared.committer import GroupCommitter
from shared.settings import Settings
from shared.store import Database


def create_app(
    settings: Settings,
    db: Database,
    queue: SettlementQueue,
    *,
    shared_limits: bool = False,
    worker_metrics: CollectorRegistry | None = None,
) -> FastAPI:
    """The API over ``db``, waking the worker through ``queue``. The caller owns both.

    ``shared_limits``: rate limits (per user, and sign-ups per client address) are kept
    in Redis (``p2p api``), shared by every API
    process; otherwise in this process (``p2p dev``). ``worker_metrics`` is served on
    ``/metrics`` too (``p2p dev``: one process, one port).
    """
    metrics = ApiMetrics(queue, also=worker_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        waiter = Waiter(db)
        writer = GroupCommitter(db)
        limiter = RateLimiter.from_settings(settings, shared=shared_limits)
        signups = RateLimiter.for_sign_ups(settings, shared=shared_limits)
        app.state.services = Services(
            settings, db, writer, queue, waiter, metrics, limiter, signup_limiter=signups
        )
        polling = asyncio.create_task(waiter.run(), name="p2p-long-poll")
        try:
            async with db.event_loop_reads():
                yield
        finally:
            polling.cancel()
            with suppress(asyncio.CancelledError):
                await polling
            writer.close()
            for one in (limiter, signups):
                if one is not None:
                    await one.aclose()

    # /docs and /redoc with Swagger UI's and ReDoc's files from the installed
    # fastapi-offline package: they work where nothing outside can be reached.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
        title="P2P payment processor",
        version="1.0.0",
        description="Submit a transfer, get `202` and a payment id, poll until it settles.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    problems.install(app)
    for module in (users, accounts, payments, holds, refunds, batches, events, webhooks, health):
        app.include_router(module.router)
    # Straight on the app's router, and first: Starlette tries routes in order, and
    # finding a route through an included router costs a submit more than its write.
    app.router.routes[:0] = [payments.transfer_route, accounts.deposit_route]
    # Added last is outermost: the size limit comes before authentication, and
    # authentication before a route reads the body. Innermost, so that no middleware of
    # ours is passed by: transfers found without FastAPI's routing (api.routes._lean).
    app.add_middleware(
        LeanDispatch, routes=[payments.transfer_route], handlers=app.exception_handlers
    )
    app.add_middleware(AuthenticationMiddleware, db=db)
    app.add_middleware(BodyMiddleware, max_bytes=settings.max_body_bytes)
    # Outside all of them, and outside Starlette's own error middleware too: request ids,
    # access lines and request metrics see every answer.
    request_context.install(app, metrics)
    _describe_truthfully(app, settings)
    return app


def release_long_polls(app: FastAPI) -> None:
    """Answer every long-poll in flight now: the server is shutting down."""
    services: Services | None = getattr(app.state, "services", None)
    if services is not None:
        services.waiter.release()


_REF = "#/components/schemas/{model}"


def _describe_truthfully(app: FastAPI, settings: Settings) -> None:
    """Errors are problem+json, amounts are capped by the setting, auth is Bearer; the
    bodies ``api.body`` reads are described."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for model in REQUEST_BODIES:
            schemas[model.__name__] = model.model_json_schema(ref_template=_REF)
        for name in ("DepositCreate", "TransferCreate"):
            schemas[name]["properties"]["amount"]["maximum"] = settings.max_amount
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                if path not in {"/users", "/healthz", "/readyz", "/metrics"}:
                    operation["security"] = [{"bearer": []}]
                if "requestBody" in operation:
                    # Bytes that are not UTF-8 JSON are refused before any field is read.
                    operation["responses"].setdefault("400", {"description": "Bad Request"})
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
