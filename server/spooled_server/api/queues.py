"""REST: queues (rest.md §9)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put

from ..core import queues as svc
from .http import authenticate, core_of, json_response, no_content, query_bool, query_int, read_json


class QueueConfigBody(msgspec.Struct):
    max_retries: int | None = None
    default_timeout: int | None = None
    rate_limit: int | None = None
    enabled: bool | None = None
    settings: dict[str, Any] | None = None
    retry_backoff_base_secs: int | None = None
    retry_backoff_max_secs: int | None = None
    queue_name: Any = None  # accepted and ignored: the path names the queue


class PauseBody(msgspec.Struct):
    reason: str | None = None


@get("/api/v1/queues", operation_id="list_queues")
async def list_queues(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    limit = query_int(request, "limit", 100, 1, 100)
    offset = query_int(request, "offset", 0, 0, 2**31 - 1)
    return json_response(await svc.list_queues(core_of(request), principal, limit=limit, offset=offset))


@get("/api/v1/queues/{name:str}", operation_id="get_queue")
async def get_queue(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.get_queue(core_of(request), principal, name))


async def _update_config(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, QueueConfigBody)
    config = await svc.update_queue_config(
        core_of(request),
        principal,
        name,
        max_retries=body.max_retries,
        default_timeout=body.default_timeout,
        rate_limit=body.rate_limit,
        enabled=body.enabled,
        settings=body.settings,
        retry_backoff_base_secs=body.retry_backoff_base_secs,
        retry_backoff_max_secs=body.retry_backoff_max_secs,
    )
    return json_response(config)


@put("/api/v1/queues/{name:str}/config", operation_id="update_queue_config")
async def update_queue_config(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    return await _update_config(request, name)


@put("/api/v1/queues/{name:str}", operation_id="update_queue_config_alias")
async def update_queue_config_alias(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    return await _update_config(request, name)


@get("/api/v1/queues/{name:str}/stats", operation_id="get_queue_stats")
async def get_queue_stats(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.queue_stats(core_of(request), principal, name))


@post("/api/v1/queues/{name:str}/pause", operation_id="pause_queue")
async def pause_queue(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, PauseBody, optional=True)
    return json_response(await svc.pause_queue(core_of(request), principal, name, body.reason))


@post("/api/v1/queues/{name:str}/resume", operation_id="resume_queue")
async def resume_queue(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.resume_queue(core_of(request), principal, name))


@delete("/api/v1/queues/{name:str}", operation_id="delete_queue", status_code=204)
async def delete_queue(request: Request[Any, Any, Any], name: str) -> Response[None]:
    principal = await authenticate(request)
    await svc.delete_queue(core_of(request), principal, name, delete_jobs=query_bool(request, "delete_jobs"))
    return no_content()


ROUTES = [
    list_queues,
    get_queue,
    update_queue_config,
    update_queue_config_alias,
    get_queue_stats,
    pause_queue,
    resume_queue,
    delete_queue,
]
