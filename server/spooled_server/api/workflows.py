"""REST: workflows (rest.md §12)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post

from ..core import workflows as svc
from .http import authenticate, core_of, json_response, path_uuid, query_int, read_json


class WorkflowJobBody(msgspec.Struct):
    key: Any
    queue_name: Any
    payload: msgspec.Raw
    depends_on: list[Any] | None = None
    dependency_mode: Any = "all"
    priority: int | None = 0
    max_retries: int | None = None
    timeout_seconds: int | None = None
    expires_at: str | None = None


class CreateWorkflowBody(msgspec.Struct):
    name: Any
    jobs: list[WorkflowJobBody]
    description: str | None = None
    metadata: msgspec.Raw = msgspec.field(default_factory=lambda: svc.NULL_JSON)


@post("/api/v1/workflows", operation_id="create_workflow")
async def create_workflow(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, CreateWorkflowBody)
    workflow = svc.NewWorkflow(
        name=body.name,
        description=body.description,
        metadata=body.metadata,
        jobs=[
            svc.WorkflowJobSpec(
                key=j.key,
                queue_name=j.queue_name,
                payload=j.payload,
                depends_on=j.depends_on or [],
                dependency_mode=j.dependency_mode,
                priority=j.priority,
                max_retries=j.max_retries,
                timeout_seconds=j.timeout_seconds,
                expires_at=j.expires_at,
            )
            for j in body.jobs
        ],
    )
    # 200, as the reference answers (its OpenAPI text says 201).
    return json_response(await svc.create_workflow(core_of(request), principal, workflow))


@get("/api/v1/workflows", operation_id="list_workflows")
async def list_workflows(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    limit = query_int(request, "limit", 50, 1, 100)
    offset = query_int(request, "offset", 0, 0, 2**31 - 1)
    status = request.query_params.get("status") or None
    return json_response(await svc.list_workflows(core_of(request), principal, status, limit, offset))


@get("/api/v1/workflows/{workflow_id:str}", operation_id="get_workflow")
async def get_workflow(request: Request[Any, Any, Any], workflow_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.get_workflow(core_of(request), principal, path_uuid(workflow_id)))


@post("/api/v1/workflows/{workflow_id:str}/cancel", operation_id="cancel_workflow")
async def cancel_workflow(request: Request[Any, Any, Any], workflow_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.cancel_workflow(core_of(request), principal, path_uuid(workflow_id)))


@post("/api/v1/workflows/{workflow_id:str}/retry", operation_id="retry_workflow")
async def retry_workflow(request: Request[Any, Any, Any], workflow_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.retry_workflow(core_of(request), principal, path_uuid(workflow_id)))


@get("/api/v1/workflows/{workflow_id:str}/jobs", operation_id="list_workflow_jobs")
async def list_workflow_jobs(request: Request[Any, Any, Any], workflow_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.list_workflow_jobs(core_of(request), principal, path_uuid(workflow_id)))


@get("/api/v1/workflows/{workflow_id:str}/jobs/status", operation_id="get_workflow_jobs_status")
async def get_workflow_jobs_status(request: Request[Any, Any, Any], workflow_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.workflow_jobs_status(core_of(request), principal, path_uuid(workflow_id)))


@get("/api/v1/workflows/{workflow_id:str}/jobs/{job_id:str}", operation_id="get_workflow_job")
async def get_workflow_job(request: Request[Any, Any, Any], workflow_id: str, job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(
        await svc.get_workflow_job(core_of(request), principal, path_uuid(workflow_id), path_uuid(job_id))
    )


ROUTES = [
    create_workflow,
    list_workflows,
    get_workflow,
    cancel_workflow,
    retry_workflow,
    list_workflow_jobs,
    get_workflow_jobs_status,
    get_workflow_job,
]
