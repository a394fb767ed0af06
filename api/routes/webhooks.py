"""Webhook endpoints: subscribe, manage, rotate the secret, read and retry deliveries."""

from __future__ import annotations

from datetime import timedelta

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from api.body import json_of, validated
from api.deps import CurrentUser, ServicesDep
from api.routes._docs import problems, takes
from api.routes.accounts import Cursor, Limit
from api.schemas import (
    ListPage,
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
    WebhookSecret,
)
from shared import webhooks
from shared.enums import EventType, WebhookEndpointStatus
from shared.settings import Settings
from shared.webhook_urls import UrlPolicy, check_target, parse_url

router = APIRouter(tags=["webhooks"], responses=problems(401))


async def _allowed_url(url: str, settings: Settings) -> str:
    """``url``, once it may be called: the rules, then (off the event loop) the
    addresses its host resolves to. The same check runs again at every delivery.

    Raises:
        WebhookUrlNotAllowed: see ``shared.webhook_urls``.
    """
    policy = UrlPolicy(settings.webhook_allow_http, settings.webhook_allow_private)
    parsed = parse_url(url, policy)
    if not policy.allow_private:
        await anyio.to_thread.run_sync(check_target, parsed, policy)
    return url


def _types(names: list[str] | None) -> list[EventType] | None:
    return None if names is None else [EventType(name) for name in names]


@router.post(
    "/webhook-endpoints",
    status_code=201,
    responses=problems(409, 413, 415, 422),
    openapi_extra=takes(WebhookEndpointCreate),
)
async def create_endpoint(
    request: Request, user: CurrentUser, services: ServicesDep
) -> WebhookEndpointCreated:
    """Subscribe a URL to the caller's events (every type when `event_types` is omitted).
    The answer holds the endpoint's signing secret, shown this once. Saving sends nothing;
    events from now on are delivered.

    `422 webhook_url_not_allowed` for a URL that may not be called;
    `409 too_many_webhook_endpoints` past `P2P_MAX_WEBHOOK_ENDPOINTS`.
    """
    body = validated(WebhookEndpointCreate, await json_of(request))
    url = await _allowed_url(body.url, services.settings)
    created = await services.write(
        webhooks.create_endpoint,
        user.id,
        url,
        event_types=_types(body.event_types),
        description=body.description,
        max_endpoints=services.settings.max_webhook_endpoints,
    )
    return WebhookEndpointCreated.model_validate(
        {
            **WebhookEndpointPublic.model_validate(created.endpoint).model_dump(),
            "secret": created.secret,
        }
    )


@router.get("/webhook-endpoints", responses=problems(422))
def list_endpoints(
    user: CurrentUser, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None
) -> ListPage[WebhookEndpointPublic]:
    """The caller's webhook endpoints, newest first; never their secrets."""
    page = webhooks.list_endpoints(services.db, user.id, limit=limit, cursor=cursor)
    return ListPage(
        data=[WebhookEndpointPublic.model_validate(e) for e in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.get("/webhook-endpoints/{endpoint_id}", responses=problems(404))
def get_endpoint(
    endpoint_id: str, user: CurrentUser, services: ServicesDep
) -> WebhookEndpointPublic:
    return WebhookEndpointPublic.model_validate(
        webhooks.get_endpoint(services.db, user.id, endpoint_id)
    )


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    responses=problems(404, 413, 415, 422),
    openapi_extra=takes(WebhookEndpointUpdate),
)
async def update_endpoint(
    endpoint_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> WebhookEndpointPublic:
    """Change the URL (checked as when created), the event types (`null`: every type) or
    the status. Enabling a disabled endpoint resumes its pending deliveries."""
    body = validated(WebhookEndpointUpdate, await json_of(request))
    url = None if body.url is None else await _allowed_url(body.url, services.settings)
    changes = webhooks.EndpointChanges(
        url=url,
        event_types=_types(body.event_types),
        all_types="event_types" in body.model_fields_set and body.event_types is None,
        status=None if body.status is None else WebhookEndpointStatus(body.status),
    )
    endpoint = await services.write(webhooks.update_endpoint, user.id, endpoint_id, changes)
    return WebhookEndpointPublic.model_validate(endpoint)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=204,
    response_class=Response,
    responses=problems(404),
)
async def delete_endpoint(endpoint_id: str, user: CurrentUser, services: ServicesDep) -> None:
    """Delete the endpoint and its delivery log: nothing more is sent to it."""
    await services.write(webhooks.delete_endpoint, user.id, endpoint_id)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", responses=problems(404))
async def rotate_secret(
    endpoint_id: str, user: CurrentUser, services: ServicesDep
) -> WebhookSecret:
    """A new secret, shown this once. For `P2P_WEBHOOK_SECRET_OVERLAP_S` deliveries carry
    a signature by the old secret too, so a receiver can switch without missing one."""
    overlap = timedelta(seconds=services.settings.webhook_secret_overlap_s)
    secret = await services.write(webhooks.rotate_secret, user.id, endpoint_id, overlap=overlap)
    return WebhookSecret(secret=secret)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", responses=problems(404, 422))
def list_deliveries(
    endpoint_id: str,
    user: CurrentUser,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[WebhookDeliveryPublic]:
    """The endpoint's deliveries, newest first, with their attempts."""
    page = webhooks.list_deliveries(services.db, user.id, endpoint_id, limit=limit, cursor=cursor)
    return ListPage(
        data=[WebhookDeliveryPublic.model_validate(d) for d in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    responses=problems(404, 409),
)
async def retry_delivery(
    endpoint_id: str, delivery_id: str, user: CurrentUser, services: ServicesDep
) -> WebhookDeliveryPublic:
    """Deliver again now, whatever the delivery's status: it is `pending` and due, and
    the worker sends it within `P2P_WEBHOOK_SWEEP_INTERVAL_S`. `409
    webhook_endpoint_disabled` while the endpoint is disabled."""
    delivery = await services.write(webhooks.retry_delivery, user.id, endpoint_id, delivery_id)
    return WebhookDeliveryPublic.model_validate(delivery)
