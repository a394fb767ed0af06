"""The event stream and ``wait``, against fake servers that answer the contract's way:
``GET /events`` and ``GET /payments/{id}?wait=``; test_events_against_the_api.py
runs the stream against the real service."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from p2p_client import AsyncClient, Client, Event
from tests.client.support import API_KEY, PAYMENT, FakeTime, served

JSON = dict[str, Any]
TYPES = ("payment.created", "payment.completed", "deposit.created")


def event(number: int) -> JSON:
    return {
        "id": f"evt_{number:04d}",
        "type": TYPES[number % len(TYPES)],
        "created_at": f"2026-12-01T13:05:{number:02d}Z",
        "data": {"object": {"number": number}},
    }


class Feed:
    """``GET /events`` as the contract has it: oldest first, after an opaque cursor,
    ``limit`` (default 50), ``types`` (comma-separated), ``wait``. Events are
    ``arriving`` two at a time, each while a long-poll waits on a caught-up feed."""

    def __init__(self, count: int, arriving: int = 0) -> None:
        self.events = [event(n) for n in range(count)]
        self.arriving = [event(n) for n in range(count, count + arriving)]
        self.asked: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/events", self.page)])

    async def page(self, request: Request) -> JSONResponse:
        params = dict(request.query_params)
        self.asked.append(params)
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        after = int(params["after"].removeprefix("cur_")) if "after" in params else -1
        limit = int(params.get("limit", "50"))
        wanted = set(params["types"].split(",")) if "types" in params else set(TYPES)
        later = self._after(after, wanted)
        if not later and "wait" in params and self.arriving:
            self.events += self.arriving[:2]
            del self.arriving[:2]
            later = self._after(after, wanted)
        data = later[:limit]
        last = int(data[-1]["id"].removeprefix("evt_")) if data else after
        body = {
            "data": data,
            "has_more": len(later) > limit,
            "next_cursor": None if last < 0 else f"cur_{last}",
        }
        return JSONResponse(body)

    def _after(self, after: int, wanted: set[str]) -> list[JSON]:
        return [
            e
            for e in self.events
            if int(e["id"].removeprefix("evt_")) > after and e["type"] in wanted
        ]


def ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


def test_the_stream_follows_cursors_page_by_page_and_resumes_where_it_stood() -> None:
    feed = Feed(7)
    with served(feed.app) as url, Client(url, API_KEY) as client:
        stream = client.events(limit=3)
        seen = list(stream)
        feed.events += [event(7), event(8)]
        resumed = list(client.events(after=stream.cursor, limit=3))

    assert ids(seen) == [f"evt_{n:04d}" for n in range(7)]
    assert [e.object["number"] for e in seen] == list(range(7))
    assert stream.cursor == "cur_6"
    assert ids(resumed) == ["evt_0007", "evt_0008"]
    assert [asked.get("after") for asked in feed.asked] == [None, "cur_2", "cur_5", "cur_6"]


def test_the_cursor_moves_past_a_page_as_its_last_event_is_handed_out() -> None:
    feed = Feed(6)
    with served(feed.app) as url, Client(url, API_KEY) as client:
        stream = client.events(limit=3)
        events = iter(stream)
        cursors = []
        for _ in range(4):
            next(events)
            cursors.append(stream.cursor)

    assert cursors == [None, None, "cur_2", "cur_2"]


def test_types_are_asked_for_comma_separated() -> None:
    feed = Feed(9)
    with served(feed.app) as url, Client(url, API_KEY) as client:
        seen = list(client.events(types=["payment.completed", "deposit.created"]))

    assert {e.type for e in seen} == {"payment.completed", "deposit.created"}
    assert len(seen) == 6
    assert feed.asked[0]["types"] == "payment.completed,deposit.created"


def test_with_wait_the_async_stream_long_polls_for_events_that_arrive_later() -> None:
    feed = Feed(1, arriving=4)

    async def scenario() -> list[Event]:
        transport = httpx.ASGITransport(app=feed.app)
        async with AsyncClient("http://testserver", API_KEY, transport=transport) as client:
            seen = []
            async for item in client.events(wait=5):
                seen.append(item)
                if len(seen) == 5:
                    break
            return seen

    seen = asyncio.run(scenario())

    assert ids(seen) == [f"evt_{n:04d}" for n in range(5)]
    assert {asked["wait"] for asked in feed.asked} == {"5"}
    assert len(feed.asked) == 3


def test_without_wait_a_caught_up_stream_ends() -> None:
    feed = Feed(0, arriving=2)
    with served(feed.app) as url, Client(url, API_KEY) as client:
        assert list(client.events()) == []

    assert feed.asked == [{}]


class HeldPayment:
    """``GET /payments/{id}?wait=``: holds each long-poll its whole ``wait`` (on the fake
    clock), answering ``pending`` until the ``settle_after``-th request."""

    def __init__(self, time: FakeTime, settle_after: int | None = None) -> None:
        self.time = time
        self.settle_after = settle_after
        self.waits: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        wait = request.url.params.get("wait")
        self.waits.append(wait)
        self.time.elapsed += float(wait or 0)
        settled = self.settle_after is not None and len(self.waits) >= self.settle_after
        status = "completed" if settled else "pending"
        return httpx.Response(200, json={**PAYMENT, "status": status})


def waiting_client(server: HeldPayment, time: FakeTime) -> Client:
    transport = httpx.MockTransport(server)
    return Client("http://p2p.test", API_KEY, transport=transport, clock=time.clock)


def test_wait_long_polls_in_steps_of_at_most_30_s_until_its_timeout() -> None:
    time = FakeTime()
    server = HeldPayment(time)

    payment = waiting_client(server, time).wait("pay_1", timeout=70)

    assert payment.status == "pending"
    assert not payment.settled
    assert server.waits == ["30", "30", "10"]


def test_wait_returns_as_soon_as_the_payment_is_settled() -> None:
    time = FakeTime()
    server = HeldPayment(time, settle_after=2)

    payment = waiting_client(server, time).wait("pay_1", timeout=300)

    assert payment.status == "completed"
    assert server.waits == ["30", "30"]


def test_waits_outside_what_the_service_takes_are_refused_before_sending() -> None:
    server = HeldPayment(FakeTime())
    client = waiting_client(server, FakeTime())

    with pytest.raises(ValueError, match="wait"):
        client.get_payment("pay_1", wait=31)
    with pytest.raises(ValueError, match="wait"):
        client.events(wait=0)

    assert server.waits == []
