"""REST: jobs and the worker protocol (rest.md §5, §6)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.response.base import ASGIResponse

from ..core import jobs as svc
from ..core import validation as v
from ..core.errors import ShapeInvalid
from .http import (
    authenticate,
    core_of,
    hot_json,
    json_response,
    no_content,
    path_uuid,
    query_int,
    read_json,
)


class CreateJobBody(msgspec.Struct):
    queue_name: str
    payload: msgspec.Raw
    priority: int | None = None  # an explicit null means the default, as for the other optional fields
    max_retries: int | None = None
    timeout_seconds: int | None = None
    scheduled_at: str | None = None
    expires_at: str | None = None
    tags: msgspec.Raw = msgspec.field(default_factory=lambda: svc.NULL_JSON)
    parent_job_id: str | None = None
    completion_webhook: str | None = None
    completion_webhook_secret: str | None = None
    idempotency_key: str | None = None


class BulkJobBody(msgspec.Struct):
    payload: msgspec.Raw
    priority: int | None = None
    idempotency_key: str | None = None
    scheduled_at: str | None = None


class BulkCreateBody(msgspec.Struct):
    queue_name: str
    jobs: list[BulkJobBody]
    default_priority: int = 0
    default_max_retries: int | None = None
    default_timeout_seconds: int | None = None


class ClaimBody(msgspec.Struct):
    queue_name: str
    worker_id: str
    limit: int = 1
    lease_duration_secs: int | None = None
    wait_secs: float | None = None


class CompleteBody(msgspec.Struct):
    worker_id: str
    lease_id: str | None = None
    result: msgspec.Raw = msgspec.field(default_factory=lambda: svc.NULL_JSON)


class FailBody(msgspec.Struct):
    worker_id: str
    error: str
    lease_id: str | None = None


class HeartbeatBody(msgspec.Struct):
    worker_id: str
    lease_duration_secs: int
    lease_id: str | None = None


class ProgressBody(msgspec.Struct):
    worker_id: str | None = None
    lease_id: str | None = None
    percent: float | None = None
    progress: float | None = None
    message: str | None = None


class PriorityBody(msgspec.Struct):
    priority: int


MAX_CLAIM_WAIT_SECS = 30.0
# A long-poll answers (possibly empty) before the 30 s request timeout would turn it into a 408.
LONG_POLL_CEILING_SECS = 25.0


@post("/api/v1/jobs", operation_id="create_job")
async def create_job(request: Request[Any, Any, Any]) -> ASGIResponse:
    principal = await authenticate(request)
    body = await read_json(request, CreateJobBody)
    job = svc.NewJob(
        queue_name=body.queue_name,
        payload=body.payload,
        priority=0 if body.priority is None else body.priority,
        max_retries=body.max_retries,
        timeout_seconds=body.timeout_seconds,
        scheduled_at=v.opt_timestamp(body.scheduled_at, "scheduled_at"),
        expires_at=v.opt_timestamp(body.expires_at, "expires_at"),
        tags=None if bytes(body.tags).strip() == b"null" else body.tags,
        parent_job_id=(
            None if body.parent_job_id is None else v.parse_uuid(body.parent_job_id, "parent_job_id")
        ),
        completion_webhook=body.completion_webhook,
        completion_webhook_secret=body.completion_webhook_secret,
        idempotency_key=body.idempotency_key,
    )
    job_id, created = await svc.create_job(core_of(request), principal, job)
    return hot_json({"id": str(job_id), "created": created}, 201 if created else 200)


@post("/api/v1/jobs/bulk", operation_id="bulk_create_jobs")
async def bulk_create_jobs(request: Request[Any, Any, Any]) -> ASGIResponse:
    principal = await authenticate(request)
    body = await read_json(request, BulkCreateBody)
    items = [
        # scheduled_at stays a string here: core parses it per item, so a bad one fails only its item.
        svc.BulkItem(payload=j.payload, priority=j.priority, idempotency_key=j.idempotency_key,
                     scheduled_at=j.scheduled_at)
        for j in body.jobs
    ]
    result = await svc.bulk_create_jobs(
        core_of(request), principal, body.queue_name, items,
        default_priority=body.default_priority,
        default_max_retries=body.default_max_retries,
        default_timeout_seconds=body.default_timeout_seconds,
    )
    return hot_json(result)


@get("/api/v1/jobs/{job_id:str}", operation_id="get_job")
async def get_job(request: Request[Any, Any, Any], job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.get_job(core_of(request), principal, path_uuid(job_id)))


@delete("/api/v1/jobs/{job_id:str}", operation_id="cancel_job", status_code=204)
async def cancel_job(request: Request[Any, Any, Any], job_id: str) -> Response[None]:
    principal = await authenticate(request)
    await svc.cancel_job(core_of(request), principal, path_uuid(job_id))
    return no_content()


@post("/api/v1/jobs/{job_id:str}/retry", operation_id="retry_job")
async def retry_job(request: Request[Any, Any, Any], job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.retry_job(core_of(request), principal, path_uuid(job_id)))


@put("/api/v1/jobs/{job_id:str}/priority", operation_id="boost_job_priority")
async def boost_job_priority(request: Request[Any, Any, Any], job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, PriorityBody)
    return json_response(
        await svc.boost_priority(core_of(request), principal, path_uuid(job_id), body.priority)
    )


@get("/api/v1/jobs/stats", operation_id="get_job_stats")
async def get_job_stats(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    queue = request.query_params.get("queue_name") or request.query_params.get("queue")
    return json_response(await svc.job_stats(core_of(request), principal, queue))


@get("/api/v1/jobs/status", operation_id="get_jobs_batch_status")
async def get_jobs_batch_status(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.batch_status(core_of(request), principal, request.query_params.get("ids")))


@get("/api/v1/jobs/{job_id:str}/history", operation_id="get_job_history")
async def get_job_history(request: Request[Any, Any, Any], job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    ascending = (request.query_params.get("order_dir") or "asc").lower() != "desc"
    limit = query_int(request, "limit", 100, 1, 500)
    offset = query_int(request, "offset", 0, 0, 2**31 - 1)
    rows, more = await svc.job_history(core_of(request), principal, path_uuid(job_id), ascending, limit,
                                       offset)
    return json_response(rows, headers={"X-Has-More": "true" if more else "false"})


# --- worker protocol ---------------------------------------------------------------------------------------


def _claimed(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "queue_name": row["queue_name"],
        "payload": row["payload"] if row["payload"] is not None else svc.NULL_JSON,
        "retry_count": row["retry_count"],
        "max_retries": row["max_retries"],
        "timeout_seconds": row["timeout_seconds"],
        "lease_expires_at": svc.ts(row["lease_expires_at"]),
        "lease_id": str(row["lease_id"]),
    }


@post("/api/v1/jobs/claim", operation_id="claim_jobs")
async def claim_jobs(request: Request[Any, Any, Any]) -> ASGIResponse:
    principal = await authenticate(request)
    body = await read_json(request, ClaimBody)
    core = core_of(request)
    queue = v.queue_name(body.queue_name)
    v.text(body.worker_id, "worker_id", 1, 255)
    limit = v.int_range(body.limit, "limit", 1, 100)
    lease = core.settings.worker_lease_duration_secs
    if body.lease_duration_secs is not None:
        lease = v.int_range(body.lease_duration_secs, "lease_duration_secs", 5, 3600)
    wait = 0.0
    if body.wait_secs is not None:
        wait = v.number_range(body.wait_secs, "wait_secs", 0, MAX_CLAIM_WAIT_SECS)
    principal.require_queue(queue)
    rows = await _claim_or_wait(core, principal, queue, body.worker_id, limit, lease,
                                min(wait, LONG_POLL_CEILING_SECS))
    return hot_json({"jobs": [_claimed(r) for r in rows]})


async def _claim_or_wait(core: Any, principal: Any, queue: str, worker_id: str, limit: int, lease: int,
                         wait: float) -> list[Any]:
    """Claim; with a wait, hold the request until jobs arrive (an enqueue wakes it) or the wait ends.

    The wake-up is armed before each claim attempt: an enqueue that commits after the claim's snapshot but
    before an empty answer is seen would otherwise be missed until the fallback poll."""
    deadline = time.monotonic() + wait
    poll = float(core.settings.worker_fallback_poll_interval_secs)
    while True:
        remaining = deadline - time.monotonic()
        armed: asyncio.Task[bool] | None = None
        if remaining > 0:
            armed = asyncio.ensure_future(core.wakeups.wait(principal.org_id, queue, min(remaining, poll)))
            await asyncio.sleep(0)  # one loop turn: the waiter registers itself before the claim runs
        try:
            rows: list[Any] = await svc.claim_jobs(core, principal, queue, worker_id, limit, lease)
        except BaseException:
            if armed is not None:
                armed.cancel()
            raise
        if rows or armed is None:
            if armed is not None:
                armed.cancel()
            return rows
        await armed


@post("/api/v1/jobs/{job_id:str}/complete", operation_id="complete_job")
async def complete_job(request: Request[Any, Any, Any], job_id: str) -> ASGIResponse:
    principal = await authenticate(request)
    body = await read_json(request, CompleteBody)
    await svc.complete_job(core_of(request), principal, path_uuid(job_id), body.worker_id, body.lease_id,
                           body.result)
    return hot_json({"success": True})


@post("/api/v1/jobs/{job_id:str}/fail", operation_id="fail_job")
async def fail_job(request: Request[Any, Any, Any], job_id: str) -> ASGIResponse:
    principal = await authenticate(request)
    body = await read_json(request, FailBody)
    v.text(body.error, "error", 1, 2048)
    outcome = await svc.fail_job(core_of(request), principal, path_uuid(job_id), body.worker_id,
                                 body.lease_id, body.error)
    return hot_json({"success": True, "will_retry": outcome.will_retry,
                     "retry_count": outcome.retry_count, "next_retry_at": svc.ts(outcome.next_retry_at)})


@post("/api/v1/jobs/{job_id:str}/heartbeat", operation_id="heartbeat_job")
async def heartbeat_job(request: Request[Any, Any, Any], job_id: str) -> ASGIResponse:
    principal = await authenticate(request)
    body = await read_json(request, HeartbeatBody)
    lease = v.int_range(body.lease_duration_secs, "lease_duration_secs", 5, 3600)
    expires = await svc.heartbeat_job(core_of(request), principal, path_uuid(job_id), body.worker_id,
                                      body.lease_id, lease)
    return hot_json({"success": True, "lease_expires_at": svc.ts(expires)})


@post("/api/v1/jobs/{job_id:str}/progress", operation_id="report_job_progress")
async def report_job_progress(request: Request[Any, Any, Any], job_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, ProgressBody)
    percent = body.percent if body.percent is not None else body.progress
    if percent is None:  # a missing required field: the body has the wrong shape (422)
        raise ShapeInvalid("percent", "is required", rule="missing_field")
    percent = v.number_range(percent, "percent", 0, 100)
    if body.message is not None:
        v.text(body.message, "message", 0, 1000)
    await svc.report_progress(core_of(request), principal, path_uuid(job_id), body.worker_id, body.lease_id,
                              percent, body.message)
    return json_response({"success": True})


ROUTES = [
    create_job, bulk_create_jobs, get_job, cancel_job, retry_job, boost_job_priority, get_job_stats,
    get_jobs_batch_status, get_job_history, claim_jobs, complete_job, fail_job, heartbeat_job,
    report_job_progress,
]
