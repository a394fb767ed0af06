from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import ServicesDep
from api.problems import problem
from api.routes._docs import problems
from api.schemas import Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=problems(503))
async def readyz(services: ServicesDep) -> Readiness | JSONResponse:
    """The database and the broker can be reached; `503` names what cannot."""
    checks: dict[str, str] = {}
    for name, check in (
        ("database", lambda: services.db.connection().execute("SELECT 1").fetchone()),
        ("broker", services.queue.ping),
    ):
        try:
            await anyio.to_thread.run_sync(check)
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"unreachable: {type(error).__name__}"
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return problem(503, "not_ready", f"unreachable: {', '.join(failing)}", checks=checks)
    return Readiness(status="ready", checks=checks)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition."""
    text = await anyio.to_thread.run_sync(services.metrics.exposition)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
