"""What the client tests share: an ASGI app served over real HTTP for the sync client,
its lifespan run for the async one, a clock that moves only when the client sleeps, and
a fake server (an ``httpx.MockTransport`` handler) answering a script of answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from p2p_client import AsyncClient, Client

START_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.up.set()


@contextmanager
def served(app: ASGIApp) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, on a thread; yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, loop="asyncio", http="h11", log_config=None, access_log=False, lifespan="on"
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        assert server.up.wait(START_TIMEOUT_S), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        listener.close()


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[None]:
    """The app's lifespan (startup, then shutdown), which ``httpx.ASGITransport`` skips."""
    async with app.router.lifespan_context(app):
        yield


def email(name: str) -> str:
    """An address of its own, so that no test's sign-up collides with another's."""
    return f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"


def signed_up(base_url: str, name: str = "Ada") -> Client:
    """A new user's client on the API at ``base_url``."""
    with Client(base_url) as anonymous:
        new = anonymous.create_user(name, email(name))
    return Client(base_url, new.api_key)


@asynccontextmanager
async def async_signed_up(app: Starlette, name: str = "Bob") -> AsyncIterator[AsyncClient]:
    """A new user's ``AsyncClient`` on ``app`` through httpx's ASGI transport, with the
    app's lifespan running."""
    transport = httpx.ASGITransport(app=app)
    async with running(app):
        async with AsyncClient("http://testserver", transport=transport) as anonymous:
            new = await anonymous.create_user(name, email(name))
        async with AsyncClient("http://testserver", new.api_key, transport=transport) as client:
            yield client


class FakeTime:
    """A monotonic and a wall clock that move only when the client sleeps, and the sleeps."""

    def __init__(self, wall: float = 1_800_000_000.0) -> None:
        self.elapsed = 0.0
        self.wall_start = wall
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.elapsed

    def wall_clock(self) -> float:
        return self.wall_start + self.elapsed

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.elapsed += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


# What the fake servers answer with.
API_KEY = "p2p_" + "ab" * 32
CREATED_AT = "2026-12-01T13:05:57.675835Z"
PAYMENT = {
    "id": "pay_1",
    "from_account_id": "acc_a",
    "to_account_id": "acc_b",
    "amount": 2500,
    "currency": "EUR",
    "description": None,
    "status": "pending",
    "failure_code": None,
    "failure_detail": None,
    "created_at": CREATED_AT,
    "completed_at": None,
}
ACCOUNT = {
    "id": "acc_a",
    "user_id": "usr_1",
    "currency": "EUR",
    "balance": 0,
    "pending_out": 0,
    "status": "active",
    "created_at": CREATED_AT,
    "updated_at": CREATED_AT,
}

Answer = Callable[[httpx.Request], httpx.Response]


def problem(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"type": f"urn:p2p:problem:{code}", "title": "x", "status": status, "detail": code}
    return httpx.Response(
        status,
        json={**body, "code": code},
        headers={"content-type": "application/problem+json", **headers},
    )


class FakeServer:
    """Answers each request with the next of ``answers``, and keeps the requests."""

    def __init__(self, *answers: Answer | httpx.Response) -> None:
        self._answers: Iterator[Answer | httpx.Response] = iter(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self._answers)
        return answer if isinstance(answer, httpx.Response) else answer(request)

    @property
    def keys(self) -> list[str | None]:
        return [request.headers.get("idempotency-key") for request in self.requests]
