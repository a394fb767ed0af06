from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from api.deps import CurrentUser, ServicesDep
from api.routes._docs import problems
from api.schemas import EventData, EventPublic, ListPage
from shared.enums import EventType
from shared.event_feed import EventPage, read_events

router = APIRouter(tags=["events"], responses=problems(401))

_KNOWN = ", ".join(EventType)


def _event_types(value: str | None) -> frozenset[EventType] | None:
    if value is None:
        return None
    names = value.split(",")
    unknown = [name for name in names if name not in EventType.__members__.values()]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}: known are {_KNOWN}")
    return frozenset(EventType(name) for name in names)


def _known_types(value: str | None) -> str | None:
    _event_types(value)
    return value


After = Annotated[
    str | None,
    Query(max_length=100, description="`next_cursor` of a page: the events after it."),
]
Types = Annotated[
    str | None,
    Query(
        max_length=1000,
        description=f"Comma-separated event types to keep (all when omitted): {_KNOWN}.",
        examples=["payment.completed,payment.failed"],
    ),
    AfterValidator(_known_types),
]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Wait = Annotated[
    float, Query(ge=0, le=30, description="Seconds to wait for an event when there is none.")
]


@router.get("/events", responses=problems(422))
async def list_events(
    user: CurrentUser,
    services: ServicesDep,
    after: After = None,
    types: Types = None,
    limit: Limit = 50,
    wait: Wait = 0,
) -> ListPage[EventPublic]:
    """The caller's events, oldest first, after the cursor. Keep `next_cursor` and ask
    again: every event comes once, in commit order. `wait` long-polls for the next."""
    wanted = _event_types(types)
    deadline = time.monotonic() + wait
    page = await _read(services, user.id, after, limit, wanted)
    while not page.data and (left := deadline - time.monotonic()) > 0:
        if services.waiter.released:
            break
        await services.waiter.wait_for_events(user.id, page.position, left)
        page = await _read(services, user.id, after, limit, wanted)
    return ListPage(
        data=[
            EventPublic(
                id=event.id,
                type=event.type,
                created_at=event.created_at,
                data=EventData(object=event.object),
            )
            for event in page.data
        ],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


async def _read(
    services: ServicesDep,
    user_id: str,
    after: str | None,
    limit: int,
    types: frozenset[EventType] | None,
) -> EventPage:
    return await services.db.read_from_event_loop(
        read_events, services.db, user_id, after=after, limit=limit, types=types
    )
