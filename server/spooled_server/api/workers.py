"""REST: the worker registry (rest.md §10)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post

from ..core import validation as v
from ..core import workers as svc
from ..core.errors import NotFound, ValidationFailed
from .http import authenticate, core_of, json_response, no_content, query_int, read_json


class RegisterWorkerBody(msgspec.Struct):
    queue_name: str
    hostname: str
    worker_id: str | None = None
    worker_type: str | None = None
    max_concurrency: int = 5
    metadata: dict[str, Any] | None = None
    version: str | None = None


class HeartbeatWorkerBody(msgspec.Struct):
    current_jobs: int
    status: str | None = None
    metadata: dict[str, Any] | None = None


@post("/api/v1/workers/register", operation_id="register_worker")
async def register_worker(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, RegisterWorkerBody)
    if body.worker_id is not None:
        v.text(body.worker_id, "worker_id", 1, 128, v.WORKER_ID)
    v.int_range(body.max_concurrency, "max_concurrency", 1, 100)
    result = await svc.register_worker(
        core_of(request),
        principal,
        worker_id=body.worker_id,
        queue_name=body.queue_name,
        hostname=body.hostname,
        worker_type=body.worker_type,
        max_concurrency=body.max_concurrency,
        metadata=body.metadata,
        version=body.version,
    )
    return json_response(result, 201)


@get("/api/v1/workers", operation_id="list_workers")
async def list_workers(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    limit = query_int(request, "limit", 100, 1, 100)
    offset = query_int(request, "offset", 0, 0, 2**31 - 1)
    return json_response(await svc.list_workers(core_of(request), principal, limit=limit, offset=offset))


@get("/api/v1/workers/{worker_id:str}", operation_id="get_worker")
async def get_worker(request: Request[Any, Any, Any], worker_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.get_worker(core_of(request), principal, worker_id))


@post("/api/v1/workers/{worker_id:str}/heartbeat", operation_id="heartbeat_worker")
async def heartbeat_worker(request: Request[Any, Any, Any], worker_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, HeartbeatWorkerBody)
    v.int_range(body.current_jobs, "current_jobs", 0, 1000)
    if body.status is not None and body.status not in svc.WORKER_STATUSES:
        raise ValidationFailed("status", "must be one of healthy, degraded, draining, offline", rule="enum")
    acknowledged, should_drain = await svc.heartbeat_worker(
        core_of(request),
        principal,
        worker_id,
        current_jobs=body.current_jobs,
        status=body.status,
        metadata=body.metadata,
    )
    if not acknowledged:
        raise NotFound()
    return json_response({"acknowledged": True, "should_drain": should_drain})


async def _deregister(request: Request[Any, Any, Any], worker_id: str) -> Response[None]:
    principal = await authenticate(request)
    released = await svc.deregister_worker(core_of(request), principal, worker_id)
    if released is None:
        raise NotFound()
    return no_content()


@post("/api/v1/workers/{worker_id:str}/deregister", operation_id="deregister_worker", status_code=204)
async def deregister_worker(request: Request[Any, Any, Any], worker_id: str) -> Response[None]:
    return await _deregister(request, worker_id)


@delete("/api/v1/workers/{worker_id:str}", operation_id="deregister_worker_delete", status_code=204)
async def deregister_worker_delete(request: Request[Any, Any, Any], worker_id: str) -> Response[None]:
    return await _deregister(request, worker_id)


@post("/api/v1/workers/{worker_id:str}/drain", operation_id="drain_worker")
async def drain_worker(request: Request[Any, Any, Any], worker_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.drain_worker(core_of(request), principal, worker_id))


ROUTES = [
    register_worker,
    list_workers,
    get_worker,
    heartbeat_worker,
    deregister_worker,
    deregister_worker_delete,
    drain_worker,
]
