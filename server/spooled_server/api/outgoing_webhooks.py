"""REST: outgoing webhooks (rest.md §13). Delivery rules live in core/webhooks.py."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put

from ..core import webhooks as svc
from .http import (
    authenticate_unrestricted,
    core_of,
    json_response,
    no_content,
    path_uuid,
    query_int,
    read_json,
)


class CreateWebhookBody(msgspec.Struct):
    name: str
    url: str
    events: list[str]
    secret: str | None = None
    enabled: bool = True


class UpdateWebhookBody(msgspec.Struct):
    name: str | msgspec.UnsetType = msgspec.UNSET
    url: str | msgspec.UnsetType = msgspec.UNSET
    events: list[str] | msgspec.UnsetType = msgspec.UNSET
    # Omitted keeps the secret, null clears it, a string replaces it.
    secret: str | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


@get("/api/v1/outgoing-webhooks", operation_id="list_outgoing_webhooks")
async def list_outgoing_webhooks(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.list_webhooks(core_of(request), principal))


@post("/api/v1/outgoing-webhooks", operation_id="create_outgoing_webhook")
async def create_outgoing_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    body = await read_json(request, CreateWebhookBody)
    created = await svc.create_webhook(
        core_of(request),
        principal,
        name=body.name,
        url=body.url,
        events=body.events,
        secret=body.secret,
        enabled=body.enabled,
    )
    return json_response(created, 201)


@get("/api/v1/outgoing-webhooks/{webhook_id:str}", operation_id="get_outgoing_webhook")
async def get_outgoing_webhook(request: Request[Any, Any, Any], webhook_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.get_webhook(core_of(request), principal, path_uuid(webhook_id)))


@put("/api/v1/outgoing-webhooks/{webhook_id:str}", operation_id="update_outgoing_webhook")
async def update_outgoing_webhook(request: Request[Any, Any, Any], webhook_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    target = path_uuid(webhook_id)
    body = await read_json(request, UpdateWebhookBody)
    updated = await svc.update_webhook(
        core_of(request),
        principal,
        target,
        name=body.name,
        url=body.url,
        events=body.events,
        secret=body.secret,
        enabled=body.enabled,
    )
    return json_response(updated)


@delete("/api/v1/outgoing-webhooks/{webhook_id:str}", operation_id="delete_outgoing_webhook", status_code=204)
async def delete_outgoing_webhook(request: Request[Any, Any, Any], webhook_id: str) -> Response[None]:
    principal = await authenticate_unrestricted(request)
    await svc.delete_webhook(core_of(request), principal, path_uuid(webhook_id))
    return no_content()


@post("/api/v1/outgoing-webhooks/{webhook_id:str}/test", operation_id="test_outgoing_webhook")
async def test_outgoing_webhook(request: Request[Any, Any, Any], webhook_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.test_webhook(core_of(request), principal, path_uuid(webhook_id)))


@get("/api/v1/outgoing-webhooks/{webhook_id:str}/deliveries", operation_id="list_webhook_deliveries")
async def list_webhook_deliveries(request: Request[Any, Any, Any], webhook_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    rows = await svc.list_deliveries(
        core_of(request),
        principal,
        path_uuid(webhook_id),
        request.query_params.get("status"),
        query_int(request, "limit", 100, 1, 100),
        query_int(request, "offset", 0, 0, 2**31 - 1),
    )
    return json_response(rows)


async def _retry(request: Request[Any, Any, Any], webhook_id: str, delivery_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(
        await svc.retry_delivery(core_of(request), principal, path_uuid(webhook_id), path_uuid(delivery_id))
    )


@post(
    "/api/v1/outgoing-webhooks/{webhook_id:str}/retry/{delivery_id:str}",
    operation_id="retry_webhook_delivery",
    status_code=200,
)
async def retry_webhook_delivery(
    request: Request[Any, Any, Any], webhook_id: str, delivery_id: str
) -> Response[bytes]:
    return await _retry(request, webhook_id, delivery_id)


@post(
    "/api/v1/outgoing-webhooks/{webhook_id:str}/deliveries/{delivery_id:str}/retry",
    operation_id="retry_webhook_delivery_alias",
    status_code=200,
)
async def retry_webhook_delivery_alias(
    request: Request[Any, Any, Any], webhook_id: str, delivery_id: str
) -> Response[bytes]:
    return await _retry(request, webhook_id, delivery_id)


ROUTES = [
    list_outgoing_webhooks,
    create_outgoing_webhook,
    get_outgoing_webhook,
    update_outgoing_webhook,
    delete_outgoing_webhook,
    test_outgoing_webhook,
    list_webhook_deliveries,
    retry_webhook_delivery,
    retry_webhook_delivery_alias,
]
