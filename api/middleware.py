"""Pure ASGI middleware: body size limit and authentication.

Authentication runs before FastAPI reads the body, so no request without a valid key
gets past ``401``, not even to a ``422``.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import KEY_REQUIRED, problem
from shared import logs
from shared.db import Database
from shared.records import User
from shared.users import authenticate, key_id_of

DOCS_ASSETS = "/docs/assets"
"""Where the files of ``/docs`` and ``/redoc`` are served."""
PUBLIC_PATHS = frozenset(
    {
        "/users",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)


class BodyMiddleware:
    """Refuses a body over ``max_bytes`` (``413``, declared or streamed) and a body that
    is not declared JSON (``415``), before anything else reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and not _declares_json(scope):
            unsupported = problem(
                415,
                "unsupported_media_type",
                "the body must be JSON: Content-Type: application/json",
            )
            await unsupported(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the body is larger than {self.max_bytes} bytes"
        await problem(413, "payload_too_large", detail)(scope, receive, send)


class AuthenticationMiddleware:
    """Puts the caller's ``User`` in ``request.state.user`` and the id of the key it used
    in ``request.state.api_key_id``, or answers ``401``.

    The key is looked up on every request, so a revoked key is refused at once by every
    API process. On SQLite the lookup runs right here on the event loop: it is one
    indexed read on this thread's connection, which in WAL mode never waits for a
    writer, and costs less than handing it to a thread. On PostgreSQL it is a round trip
    that may wait for a pooled connection, so it runs on a thread.
    """

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(DOCS_ASSETS + "/"):
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        user = None if token is None else await self._authenticate(token)
        if token is None or user is None:
            response = problem(
                401, "unauthorized", KEY_REQUIRED, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["user"] = user
        state["api_key_id"] = key_id_of(token)
        logs.bind(user_id=user.id)
        await self.app(scope, receive, send)

    async def _authenticate(self, token: str) -> User | None:
        if self.db.dialect.local_reads:
            return authenticate(self.db, token)
        return await anyio.to_thread.run_sync(authenticate, self.db, token)


def _declares_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type = bytes(value).split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return False


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
