"""A route's answer written straight from its model.

FastAPI validates a returned model against ``response_model`` once more and encodes it
in Python; a route that has just built the model from a record needs neither, and a
submit is the route where that cost shows.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response


def answer(model: BaseModel, status: int, headers: dict[str, str]) -> Response:
    return Response(
        model.model_dump_json(), status_code=status, headers=headers, media_type="application/json"
    )
