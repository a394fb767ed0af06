"""Pure ASGI middleware: body size limit and authentication.

Authentication runs before FastAPI reads the body, so no request without a valid key
gets past ``401``, not even to a ``422``; nor a request of a signing key whose signature
does not verify.
"""

from __future__ import annotations

import time
import urllib.parse

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import KEY_REQUIRED, problem, problem_of
from shared import logs
from shared.errors import SignatureInvalid
from shared.signatures import SignedRequest, verify_request
from shared.store import Database
from shared.users import authenticate_key_on_loop

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
                # The client left, or was cut off (``api.http_protocol``), before its body
                # was whole: a part of a body may still parse, so nothing may act on it.
                return
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
    in ``request.state.api_key_id``, or answers ``401``. A key with ``signing: required``
    must also have signed the request, body included (``shared.signatures``), or it is
    ``401 signature_invalid`` before anything downstream sees it.

    The key is looked up on every request, so a revoked key is refused at once by every
    API process. It is one indexed read, run on the event loop without blocking it
    (``Database.fetch``).
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
        holder = None if token is None else await authenticate_key_on_loop(self.db, token)
        if holder is None:
            response = problem(
                401, "unauthorized", KEY_REQUIRED, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        if holder.signing_secret is not None:
            body, receive = await _buffered(receive)
            try:
                verify_request(
                    _signed_request(scope, body),
                    key_id=holder.key_id,
                    secret=holder.signing_secret,
                    now=time.time(),
                )
            except SignatureInvalid as error:
                await problem_of(error)(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["user"] = holder.user
        state["api_key_id"] = holder.key_id
        logs.bind(user_id=holder.user.id)
        await self.app(scope, receive, send)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (``BodyMiddleware`` has read and size-checked it), and a ``receive``
    that gives it once more, then the client's own messages."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, again


def _signed_request(scope: Scope, body: bytes) -> SignedRequest:
    headers = [
        (bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
        for name, value in scope["headers"]
    ]
    authority = next((value for name, value in headers if name == "host"), None)
    if authority is None:
        host, port = scope.get("server") or ("", None)
        authority = host if port is None else f"{host}:{port}"
    # raw_path is the path as sent, percent-encoding and all; some servers leave the
    # query on it.
    raw_path = scope.get("raw_path")
    path = (
        bytes(raw_path).split(b"?", 1)[0].decode("latin-1")
        if raw_path
        else urllib.parse.quote(scope["path"])
    )
    return SignedRequest(
        method=scope["method"],
        scheme=scope.get("scheme", "http"),
        authority=authority,
        path=path,
        query=bytes(scope.get("query_string", b"")).decode("latin-1"),
        headers=headers,
        body=body,
    )


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
