"""REST: incoming webhooks that become jobs (rest.md §14); verification and job creation: core/ingest.py.

Signatures are checked over the exact bytes received, so the body is read raw (up to 6 MiB on these routes)
and parsed only after the credential matched.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post

from ..core import ingest as svc
from ..core import validation as v
from ..core.errors import ValidationFailed
from .http import (
    authenticate_unrestricted,
    core_of,
    json_response,
    limit_public,
    query_int,
    raw_body,
    read_json,
)

MAX_BODY_BYTES = 6 * 1024 * 1024


class CustomIngestBody(msgspec.Struct):
    queue_name: str
    payload: msgspec.Raw
    event_type: str | None = None
    idempotency_key: str | None = None
    priority: int = 0


def _headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


async def _body(request: Request[Any, Any, Any]) -> bytes:
    """The raw body, at most MAX_BODY_BYTES (413). It is read in full (the app caps bodies at 8 MiB) before it
    is refused: a sender still writing when the connection closes would see a reset instead of the 413."""
    await request.body()
    return await raw_body(request, max_bytes=MAX_BODY_BYTES)


@post("/api/v1/webhooks/{org_id:str}/custom", operation_id="ingest_custom", status_code=200)
async def ingest_custom(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    core = core_of(request)
    await limit_public(request)
    await _body(request)
    gate = await svc.open_gate(core, org_id, "custom", _headers(request))
    async with svc.audited(core, gate):
        svc.verify_custom(gate)
        body = await read_json(request, CustomIngestBody, max_bytes=MAX_BODY_BYTES)
        if body.event_type is not None:
            gate.event_type = v.text(body.event_type, "event_type", 0, 100, svc.EVENT_TYPE)
        queue = svc.choose_queue(gate, body.queue_name, None)
        v.int_range(body.priority, "priority", -100, 100)
        result = await svc.accept(
            core,
            gate,
            queue=queue,
            payload=body.payload,
            idempotency_key=body.idempotency_key,
            priority=body.priority,
        )
    return json_response(result)


@post("/api/v1/webhooks/{org_id:str}/github", operation_id="ingest_github", status_code=200)
async def ingest_github(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    core = core_of(request)
    await limit_public(request)
    body = await _body(request)
    headers = _headers(request)
    gate = await svc.open_gate(core, org_id, "github", headers)
    gate.event_type = headers.get("x-github-event", "").strip()
    async with svc.audited(core, gate):
        svc.verify_github(gate, body)
        event = svc.github_event(gate)
        svc.parse_json(body)
        queue = svc.choose_queue(gate, f"github-{event}", request.query_params.get("queue"))
        if event == "ping":
            result = await svc.ignore(core, gate)
        else:
            delivery = headers.get("x-github-delivery", "").strip()
            result = await svc.accept(
                core,
                gate,
                queue=queue,
                payload=msgspec.Raw(body),
                idempotency_key=f"github:{delivery}" if delivery else None,
            )
    return json_response(result)


@post("/api/v1/webhooks/{org_id:str}/stripe", operation_id="ingest_stripe", status_code=200)
async def ingest_stripe(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    core = core_of(request)
    await limit_public(request)
    body = await _body(request)
    gate = await svc.open_gate(core, org_id, "stripe", _headers(request))
    async with svc.audited(core, gate):
        svc.verify_stripe(gate, body)
        event_id, event_type = svc.stripe_event(gate, svc.parse_json(body))
        queue = svc.choose_queue(
            gate, "stripe-" + event_type.replace(".", "-"), request.query_params.get("queue")
        )
        result = await svc.accept(
            core, gate, queue=queue, payload=msgspec.Raw(body), idempotency_key=f"stripe:{event_id}"
        )
    return json_response(result)


@post("/api/v1/webhooks/{org_id:str}/shopify", operation_id="ingest_shopify", status_code=200)
async def ingest_shopify(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    core = core_of(request)
    await limit_public(request)
    body = await _body(request)
    headers = _headers(request)
    gate = await svc.open_gate(core, org_id, "shopify", headers)
    gate.event_type = headers.get("x-shopify-topic", "").strip()
    async with svc.audited(core, gate):
        svc.verify_shopify(gate, body)
        topic = svc.shopify_topic(gate)
        svc.parse_json(body)
        queue = svc.choose_queue(
            gate, "shopify-" + topic.replace("/", "-"), request.query_params.get("queue")
        )
        webhook_id = (
            headers.get("x-shopify-webhook-id", "").strip() or headers.get("x-shopify-event-id", "").strip()
        )
        result = await svc.accept(
            core,
            gate,
            queue=queue,
            payload=msgspec.Raw(body),
            idempotency_key=f"shopify:{webhook_id}" if webhook_id else None,
        )
    return json_response(result)


@get("/api/v1/webhooks/deliveries", operation_id="list_ingest_deliveries")
async def list_ingest_deliveries(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    params = request.query_params
    since_raw = params.get("since")
    since = None
    if since_raw:
        since = v.timestamp(since_raw, "since")
    queue = params.get("queue_name") or params.get("queue")
    if queue is not None and not queue:
        raise ValidationFailed("queue_name", "must not be empty", rule="length")
    rows = await svc.list_audit(
        core_of(request),
        principal,
        status=params.get("status"),
        since=since,
        queue=queue,
        limit=query_int(request, "limit", 50, 1, 100),
        offset=query_int(request, "offset", 0, 0, 2**31 - 1),
    )
    return json_response(rows)


ROUTES = [ingest_custom, ingest_github, ingest_stripe, ingest_shopify, list_ingest_deliveries]
