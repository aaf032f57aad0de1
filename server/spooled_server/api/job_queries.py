"""REST: the job list, job dependencies and the dead-letter queue (rest.md §5 GET /jobs, §7, §8)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post

from ..core import dependencies as deps
from ..core import dlq
from ..core import job_queries as svc
from ..core.errors import ShapeInvalid
from .http import authenticate, core_of, json_response, path_uuid, read_json


class AddDependenciesBody(msgspec.Struct):
    depends_on: list[Any] | None = None
    dependency_job_ids: list[Any] | None = None
    depends_on_job_ids: list[Any] | None = None
    dependency_mode: str | None = None
    dependency_type: str | None = None


class RetryDlqBody(msgspec.Struct):
    job_ids: list[Any] | None = None
    queue_name: str | None = None
    limit: int = 100


class PurgeDlqBody(msgspec.Struct):
    confirm: bool | None = None
    queue_name: str | None = None
    job_ids: list[Any] | None = None
    older_than: str | None = None
    older_than_days: int | None = None
    limit: int = 10000


def _more(flag: bool) -> str:
    return "true" if flag else "false"


@get("/api/v1/jobs", operation_id="list_jobs")
async def list_jobs(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    params = request.query_params.get
    filters = svc.filters_from_query(params)
    page = svc.page_from_query(params)
    rows, total = await svc.list_jobs(core_of(request), principal, filters, page)
    more = page.offset + len(rows) < total
    return json_response(rows, headers={"X-Total-Count": str(total), "X-Has-More": _more(more)})


@get("/api/v1/jobs/{job_id:str}/dependencies", operation_id="get_job_dependencies")
async def get_job_dependencies(request: Request[Any, Any, Any], job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await deps.get_dependencies(core_of(request), principal, path_uuid(job_id)))


@post("/api/v1/jobs/{job_id:str}/dependencies", operation_id="add_job_dependencies")
async def add_job_dependencies(request: Request[Any, Any, Any], job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    target = path_uuid(job_id)
    body = await read_json(request, AddDependenciesBody)
    ids = next(
        (x for x in (body.depends_on, body.dependency_job_ids, body.depends_on_job_ids) if x is not None),
        None,
    )
    if ids is None:
        raise ShapeInvalid("depends_on", "is required", rule="missing_field")
    mode = body.dependency_mode or body.dependency_type or "all"
    return json_response(await deps.add_dependencies(core_of(request), principal, target, ids, mode))


@get("/api/v1/jobs/dlq", operation_id="list_dlq_jobs")
async def list_dlq_jobs(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    params = request.query_params.get
    filters = svc.filters_from_query(params, with_status=False)
    page = svc.page_from_query(params)
    rows, more = await dlq.list_dlq(core_of(request), principal, filters, page)
    return json_response(rows, headers={"X-Has-More": _more(more)})


@post("/api/v1/jobs/dlq/retry", operation_id="retry_dlq_jobs")
async def retry_dlq_jobs(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, RetryDlqBody, optional=True)
    result = await dlq.retry_dlq(
        core_of(request), principal, job_ids=body.job_ids, queue_name=body.queue_name, limit=body.limit
    )
    return json_response(result)


@post("/api/v1/jobs/dlq/purge", operation_id="purge_dlq_jobs")
async def purge_dlq_jobs(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, PurgeDlqBody, optional=True)
    result = await dlq.purge_dlq(
        core_of(request),
        principal,
        confirm=body.confirm,
        queue_name=body.queue_name,
        job_ids=body.job_ids,
        older_than=body.older_than,
        older_than_days=body.older_than_days,
        limit=body.limit,
    )
    return json_response(result)


ROUTES = [
    list_jobs,
    get_job_dependencies,
    add_job_dependencies,
    list_dlq_jobs,
    retry_dlq_jobs,
    purge_dlq_jobs,
]
