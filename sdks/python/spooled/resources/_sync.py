# Generated from _async.py by sdks/python/scripts/unasync.py - do not edit.
# Change _async.py and run `python sdks/python/scripts/unasync.py`.
"""Resources of :class:`~spooled.SpooledClient`: one class per API area.

This file is the source of truth for the resources; ``_sync.py`` is produced from it by
``scripts/unasync.py`` (a test fails when the two drift apart), so the sync and async clients always offer
the same methods with the same arguments.

Every method takes keyword arguments, or a dict as its first positional argument (keywords win), and
returns the generated model for the route's response (re-exported from :mod:`spooled.types`). Every list
has a ``list_all`` twin that pages through ``limit``/``offset`` until the server has no more.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .. import _models as m
from .._generated.api.admin import (
    admin_create_api_key,
    admin_create_organization,
    admin_delete_organization,
    admin_get_organization,
    admin_get_stats,
    admin_list_organizations,
    admin_list_plans,
    admin_reset_usage,
    admin_update_organization,
)
from .._generated.api.api_keys import (
    create_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
    update_api_key,
)
from .._generated.api.auth import get_me, login, logout, refresh_token, validate_token
from .._generated.api.dashboard import get_dashboard
from .._generated.api.dependencies import add_job_dependencies, get_job_dependencies
from .._generated.api.dlq import list_dlq_jobs, purge_dlq_jobs, retry_dlq_jobs
from .._generated.api.health import health, liveness, readiness
from .._generated.api.ingest import ingest_custom, list_ingest_deliveries
from .._generated.api.jobs import (
    boost_job_priority,
    bulk_create_jobs,
    cancel_job,
    create_job,
    get_job,
    get_job_history,
    get_job_stats,
    get_jobs_batch_status,
    list_jobs,
    retry_job,
)
from .._generated.api.metrics import metrics
from .._generated.api.organizations import (
    check_slug,
    clear_webhook_token,
    create_organization,
    delete_organization,
    generate_slug,
    get_organization,
    get_organization_usage,
    get_webhook_token,
    list_organization_members,
    list_organizations,
    regenerate_webhook_token,
    update_organization,
)
from .._generated.api.outgoing_webhooks import (
    create_outgoing_webhook,
    delete_outgoing_webhook,
    get_outgoing_webhook,
    list_outgoing_webhooks,
    list_webhook_deliveries,
    retry_webhook_delivery,
    test_outgoing_webhook,
    update_outgoing_webhook,
)
from .._generated.api.queues import (
    delete_queue,
    get_queue,
    get_queue_stats,
    list_queues,
    pause_queue,
    resume_queue,
    update_queue_config,
)
from .._generated.api.schedules import (
    create_schedule,
    delete_schedule,
    get_schedule,
    get_schedule_history,
    list_schedules,
    pause_schedule,
    preview_schedule,
    resume_schedule,
    trigger_schedule,
    update_schedule,
)
from .._generated.api.worker_protocol import (
    claim_jobs,
    complete_job,
    fail_job,
    heartbeat_job,
    report_job_progress,
)
from .._generated.api.workers import (
    deregister_worker,
    drain_worker,
    get_worker,
    heartbeat_worker,
    list_workers,
    register_worker,
)
from .._generated.api.workflows import (
    cancel_workflow,
    create_workflow,
    get_workflow,
    get_workflow_job,
    get_workflow_jobs_status,
    list_workflow_jobs,
    list_workflows,
    retry_workflow,
)
from .._generated.models import (
    AddJobDependenciesResponse,
    AdminCreateApiKeyRequest,
    AdminCreateOrganizationRequest,
    AdminCreateOrganizationResponse,
    AdminOrganization,
    AdminOrganizationDetail,
    AdminOrganizationList,
    AdminOrganizationListItem,
    AdminStats,
    AdminUpdateOrganizationRequest,
    ApiKeySummary,
    BoostJobPriorityRequest,
    BoostJobPriorityResponse,
    BulkCreateJobsRequest,
    BulkCreateJobsResponse,
    CheckSlugResponse,
    ClaimJobsRequest,
    ClaimJobsResponse,
    ClearWebhookTokenRequest,
    CompleteJobRequest,
    CreateApiKeyRequest,
    CreateApiKeyResponse,
    CreateJobRequest,
    CreateJobResponse,
    CreateOrganizationRequest,
    CreateOrganizationResponse,
    CreateOutgoingWebhookRequest,
    CreateScheduleRequest,
    CreateScheduleResponse,
    CreateWorkflowRequest,
    CreateWorkflowResponse,
    DashboardResponse,
    Delivery,
    FailJobRequest,
    FailJobResponse,
    GenerateSlugRequest,
    GenerateSlugResponse,
    HealthResponse,
    HeartbeatJobRequest,
    HeartbeatJobResponse,
    HeartbeatWorkerRequest,
    HeartbeatWorkerResponse,
    IngestCustomRequest,
    IngestDelivery,
    IngestResponse,
    Job,
    JobBatchStatus,
    JobDependenciesResponse,
    JobHistoryEntry,
    JobStats,
    JobSummary,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    MeResponse,
    Organization,
    OrganizationListItem,
    OrganizationMember,
    OutgoingWebhook,
    PauseQueueRequest,
    PauseQueueResponse,
    PlanLimits,
    PreviewScheduleResponse200,
    PurgeDlqJobsRequest,
    PurgeDlqJobsResponse,
    QueueConfig,
    QueueStats,
    QueueSummary,
    RefreshTokenRequest,
    RefreshTokenResponse,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
    ResumeQueueResponse,
    RetryDeliveryResponse,
    RetryDlqJobsRequest,
    RetryDlqJobsResponse,
    Schedule,
    ScheduleRun,
    SuccessResponse,
    TestWebhookResponse,
    TriggerScheduleResponse,
    UpdateApiKeyRequest,
    UpdateOrganizationRequest,
    UpdateOutgoingWebhookRequest,
    UpdateQueueConfigRequest,
    UpdateScheduleRequest,
    UsageInfo,
    ValidateTokenRequest,
    ValidateTokenResponse,
    WebhookTokenResponse,
    Worker,
    WorkerSummary,
    WorkflowDetail,
    WorkflowJob,
    WorkflowJobStatus,
    WorkflowResponse,
)
from .._generated.types import UNSET, Response
from .._transport import SyncTransport
from ..errors import AuthenticationError

Params = Mapping[str, Any] | None
M = TypeVar("M")


def _query(params: Params, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Query keywords for a generated call: None means "not sent"."""
    merged = dict(params or {})
    merged.update(fields)
    return {k: (UNSET if v is None else v) for k, v in merged.items()}


def _paginate(
    fetch: Callable[[int, int], Response[Any]], cls: type[M], page_size: int, start: int = 0
) -> Iterator[M]:
    offset = start
    while True:
        response = fetch(page_size, offset)
        page = m.many(response, cls)
        for item in page:
            yield item
        if not page or not m.has_more(response, page, page_size):
            return
        offset += len(page)


class _SyncResource:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport


class Jobs(_SyncResource):
    """Jobs: create, inspect, control (rest.md §5) and the worker protocol (§6). ``jobs.dlq`` is the
    dead-letter queue."""

    def __init__(self, transport: SyncTransport) -> None:
        super().__init__(transport)
        self.dlq = DeadLetterQueue(transport)

    def create(
        self,
        params: Params = None,
        /,
        *,
        queue_name: str | None = None,
        payload: Any = None,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        scheduled_at: Any = None,
        expires_at: Any = None,
        tags: Any = None,
        parent_job_id: str | None = None,
        completion_webhook: str | None = None,
        completion_webhook_secret: str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> CreateJobResponse:
        """Enqueue one job. With an ``idempotency_key`` a replay returns the existing job
        (``created=False``), and the request is safe to retry."""
        fields = {
            "queue_name": queue_name,
            "payload": payload,
            "priority": priority,
            "max_retries": max_retries,
            "timeout_seconds": timeout_seconds,
            "scheduled_at": scheduled_at,
            "expires_at": expires_at,
            "tags": tags,
            "parent_job_id": parent_job_id,
            "completion_webhook": completion_webhook,
            "completion_webhook_secret": completion_webhook_secret,
            "idempotency_key": idempotency_key,
            **extra,
        }
        request = m.body(CreateJobRequest, params, fields)
        keyed = bool(request.to_dict().get("idempotency_key"))
        return m.one(
            self._t.call(create_job.sync_detailed, body=request, idempotent_post=keyed),
            CreateJobResponse,
        )

    def bulk_create(self, params: Params = None, /, **fields: Any) -> BulkCreateJobsResponse:
        """Enqueue up to 100 jobs in one request (``queue_name``, ``jobs=[{payload, ...}]``)."""
        request = m.body(BulkCreateJobsRequest, params, fields)
        jobs = request.to_dict().get("jobs") or []
        keyed = bool(jobs) and all(isinstance(j, dict) and j.get("idempotency_key") for j in jobs)
        return m.one(
            self._t.call(bulk_create_jobs.sync_detailed, body=request, idempotent_post=keyed),
            BulkCreateJobsResponse,
        )

    def get(self, job_id: str) -> Job:
        return m.one(self._t.call(get_job.sync_detailed, id=job_id), Job)

    def list(self, params: Params = None, /, **filters: Any) -> builtins.list[JobSummary]:
        """One page of jobs: ``queue_name``, ``status``, ``tag``, ``q``, ``job_type``, ``created_after``,
        ``created_before``, ``order_by``, ``order_dir``, ``limit``, ``offset``."""
        return m.many(self._t.call(list_jobs.sync_detailed, **_query(params, filters)), JobSummary)

    def list_all(
        self, params: Params = None, /, *, page_size: int = 100, **filters: Any
    ) -> Iterator[JobSummary]:
        query = _query(params, filters)
        start = query.pop("offset", 0) or 0
        query.pop("limit", None)

        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(list_jobs.sync_detailed, limit=limit, offset=offset, **query)

        for item in _paginate(fetch, JobSummary, page_size, start):
            yield item

    def cancel(self, job_id: str) -> None:
        self._t.call(cancel_job.sync_detailed, id=job_id)

    def retry(self, job_id: str) -> Job:
        return m.one(self._t.call(retry_job.sync_detailed, id=job_id), Job)

    def boost_priority(self, job_id: str, priority: int) -> BoostJobPriorityResponse:
        request = BoostJobPriorityRequest(priority=priority)
        return m.one(
            self._t.call(boost_job_priority.sync_detailed, id=job_id, body=request),
            BoostJobPriorityResponse,
        )

    def stats(self, queue_name: str | None = None) -> JobStats:
        return m.one(
            self._t.call(get_job_stats.sync_detailed, **_query(None, {"queue_name": queue_name})),
            JobStats,
        )

    def batch_status(self, job_ids: Sequence[str]) -> builtins.list[JobBatchStatus]:
        return m.many(
            self._t.call(get_jobs_batch_status.sync_detailed, ids=",".join(job_ids)), JobBatchStatus
        )

    def history(self, job_id: str, params: Params = None, /, **query: Any) -> builtins.list[JobHistoryEntry]:
        """One page of the job's transitions (``order_dir``, ``limit``, ``offset``)."""
        return m.many(
            self._t.call(get_job_history.sync_detailed, id=job_id, **_query(params, query)),
            JobHistoryEntry,
        )

    def history_all(
        self, job_id: str, *, order_dir: str = "asc", page_size: int = 500
    ) -> Iterator[JobHistoryEntry]:
        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(
                get_job_history.sync_detailed, id=job_id, order_dir=order_dir, limit=limit, offset=offset
            )

        for item in _paginate(fetch, JobHistoryEntry, page_size):
            yield item

    def get_dependencies(self, job_id: str) -> JobDependenciesResponse:
        return m.one(self._t.call(get_job_dependencies.sync_detailed, id=job_id), JobDependenciesResponse)

    def add_dependencies(
        self, job_id: str, params: Params = None, /, **fields: Any
    ) -> AddJobDependenciesResponse:
        """Gate a pending job on others: ``depends_on=[ids]``, ``dependency_mode="all"|"any"``."""
        return m.one(
            self._t.call(
                add_job_dependencies.sync_detailed, id=job_id, body=m.merge(params, fields, drop_none=True)
            ),
            AddJobDependenciesResponse,
        )

    # --- worker protocol (used by SpooledWorker; public for custom workers) ---------------------------

    def claim(
        self,
        queue_name: str,
        worker_id: str,
        *,
        limit: int = 1,
        lease_duration_secs: int | None = None,
        wait_secs: float | None = None,
    ) -> ClaimJobsResponse:
        """Claim up to ``limit`` jobs. ``wait_secs`` (≤ 25) long-polls: the server holds the request until a
        job is claimable or the wait ends. A claim is not retried once sent: a lost reply would strand
        its leases until they expire."""
        fields = {
            "queue_name": queue_name,
            "worker_id": worker_id,
            "limit": limit,
            "lease_duration_secs": lease_duration_secs,
            "wait_secs": wait_secs,
        }
        return m.one(
            self._t.call(claim_jobs.sync_detailed, body=m.body(ClaimJobsRequest, None, fields)),
            ClaimJobsResponse,
        )

    def complete(
        self, job_id: str, *, worker_id: str, lease_id: str | None, result: Any = None
    ) -> SuccessResponse:
        request = m.body(
            CompleteJobRequest, None, {"worker_id": worker_id, "lease_id": lease_id, "result": result}
        )
        # Completing twice is harmless (the replay gets 409 "already completed"), so this POST may retry.
        return m.one(
            self._t.call(complete_job.sync_detailed, id=job_id, body=request, idempotent_post=True),
            SuccessResponse,
        )

    def fail(self, job_id: str, *, worker_id: str, lease_id: str | None, error: str) -> FailJobResponse:
        request = m.body(FailJobRequest, None, {"worker_id": worker_id, "lease_id": lease_id, "error": error})
        # A replayed fail is fenced by lease_id (the first one ended the lease), so it never fails twice.
        return m.one(
            self._t.call(fail_job.sync_detailed, id=job_id, body=request, idempotent_post=True),
            FailJobResponse,
        )

    def heartbeat(
        self, job_id: str, *, worker_id: str, lease_id: str | None, lease_duration_secs: int
    ) -> HeartbeatJobResponse:
        request = m.body(
            HeartbeatJobRequest,
            None,
            {"worker_id": worker_id, "lease_id": lease_id, "lease_duration_secs": lease_duration_secs},
        )
        return m.one(
            self._t.call(heartbeat_job.sync_detailed, id=job_id, body=request, idempotent_post=True),
            HeartbeatJobResponse,
        )

    def progress(
        self,
        job_id: str,
        percent: float,
        message: str | None = None,
        *,
        worker_id: str | None = None,
        lease_id: str | None = None,
    ) -> SuccessResponse:
        """Report progress (0..100) of a processing job; shown on the job and sent as ``job.progress``."""
        request = m.merge(
            None,
            {"percent": percent, "message": message, "worker_id": worker_id, "lease_id": lease_id},
            drop_none=True,
        )
        return m.one(
            self._t.call(report_job_progress.sync_detailed, id=job_id, body=request, idempotent_post=True),
            SuccessResponse,
        )


class DeadLetterQueue(_SyncResource):
    """The dead-letter queue: jobs whose retries ran out (rest.md §8)."""

    def list(self, params: Params = None, /, **filters: Any) -> builtins.list[JobSummary]:
        return m.many(self._t.call(list_dlq_jobs.sync_detailed, **_query(params, filters)), JobSummary)

    def list_all(
        self, params: Params = None, /, *, page_size: int = 100, **filters: Any
    ) -> Iterator[JobSummary]:
        query = _query(params, filters)
        start = query.pop("offset", 0) or 0
        query.pop("limit", None)

        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(list_dlq_jobs.sync_detailed, limit=limit, offset=offset, **query)

        for item in _paginate(fetch, JobSummary, page_size, start):
            yield item

    def retry(self, params: Params = None, /, **fields: Any) -> RetryDlqJobsResponse:
        """Return jobs to pending: ``job_ids=[...]``, or the oldest ``limit`` of ``queue_name``."""
        request = m.body(RetryDlqJobsRequest, params, fields)
        return m.one(self._t.call(retry_dlq_jobs.sync_detailed, body=request), RetryDlqJobsResponse)

    def purge(self, params: Params = None, /, **fields: Any) -> PurgeDlqJobsResponse:
        """Delete dead-lettered jobs: narrow with ``queue_name``/``job_ids``/``older_than``, or pass
        ``confirm=True``."""
        request = m.body(PurgeDlqJobsRequest, params, fields)
        return m.one(self._t.call(purge_dlq_jobs.sync_detailed, body=request), PurgeDlqJobsResponse)


class Queues(_SyncResource):
    """Queues: configuration, stats, pause and resume (rest.md §9)."""

    def list(self, params: Params = None, /, **query: Any) -> builtins.list[QueueSummary]:
        return m.many(self._t.call(list_queues.sync_detailed, **_query(params, query)), QueueSummary)

    def list_all(self, *, page_size: int = 100) -> Iterator[QueueSummary]:
        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(list_queues.sync_detailed, limit=limit, offset=offset)

        for item in _paginate(fetch, QueueSummary, page_size):
            yield item

    def get(self, name: str) -> QueueConfig:
        return m.one(self._t.call(get_queue.sync_detailed, name=name), QueueConfig)

    def update_config(self, name: str, params: Params = None, /, **fields: Any) -> QueueConfig:
        request = m.body(UpdateQueueConfigRequest, params, fields)
        return m.one(self._t.call(update_queue_config.sync_detailed, name=name, body=request), QueueConfig)

    def stats(self, name: str) -> QueueStats:
        return m.one(self._t.call(get_queue_stats.sync_detailed, name=name), QueueStats)

    def pause(self, name: str, reason: str | None = None) -> PauseQueueResponse:
        request = PauseQueueRequest(reason=reason) if reason is not None else UNSET
        return m.one(self._t.call(pause_queue.sync_detailed, name=name, body=request), PauseQueueResponse)

    def resume(self, name: str) -> ResumeQueueResponse:
        return m.one(self._t.call(resume_queue.sync_detailed, name=name), ResumeQueueResponse)

    def delete(self, name: str, *, delete_jobs: bool = False) -> None:
        self._t.call(delete_queue.sync_detailed, name=name, delete_jobs=delete_jobs)


class Workers(_SyncResource):
    """The worker registry (rest.md §10)."""

    def register(self, params: Params = None, /, **fields: Any) -> RegisterWorkerResponse:
        request = m.body(RegisterWorkerRequest, params, fields)
        # Registering a client-chosen worker_id is an upsert, so it may be retried.
        keyed = bool(request.to_dict().get("worker_id"))
        return m.one(
            self._t.call(register_worker.sync_detailed, body=request, idempotent_post=keyed),
            RegisterWorkerResponse,
        )

    def list(self, params: Params = None, /, **query: Any) -> builtins.list[WorkerSummary]:
        return m.many(self._t.call(list_workers.sync_detailed, **_query(params, query)), WorkerSummary)

    def list_all(self, *, page_size: int = 100) -> Iterator[WorkerSummary]:
        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(list_workers.sync_detailed, limit=limit, offset=offset)

        for item in _paginate(fetch, WorkerSummary, page_size):
            yield item

    def get(self, worker_id: str) -> Worker:
        return m.one(self._t.call(get_worker.sync_detailed, id=worker_id), Worker)

    def heartbeat(self, worker_id: str, params: Params = None, /, **fields: Any) -> HeartbeatWorkerResponse:
        """``current_jobs`` (required), ``status``, ``metadata``. ``should_drain`` says: stop claiming."""
        request = m.body(HeartbeatWorkerRequest, params, fields)
        return m.one(
            self._t.call(heartbeat_worker.sync_detailed, id=worker_id, body=request, idempotent_post=True),
            HeartbeatWorkerResponse,
        )

    def deregister(self, worker_id: str) -> None:
        """Mark the worker offline; its processing jobs go back to pending without using a retry."""
        self._t.call(deregister_worker.sync_detailed, id=worker_id, idempotent_post=True)

    def drain(self, worker_id: str) -> Worker:
        return m.one(self._t.call(drain_worker.sync_detailed, id=worker_id, idempotent_post=True), Worker)


class Schedules(_SyncResource):
    """Cron schedules (rest.md §11)."""

    def create(self, params: Params = None, /, **fields: Any) -> CreateScheduleResponse:
        request = m.body(CreateScheduleRequest, params, fields)
        return m.one(self._t.call(create_schedule.sync_detailed, body=request), CreateScheduleResponse)

    def list(self, params: Params = None, /, **query: Any) -> builtins.list[Schedule]:
        return m.many(self._t.call(list_schedules.sync_detailed, **_query(params, query)), Schedule)

    def list_all(
        self, params: Params = None, /, *, page_size: int = 100, **filters: Any
    ) -> Iterator[Schedule]:
        query = _query(params, filters)

        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(list_schedules.sync_detailed, limit=limit, offset=offset, **query)

        for item in _paginate(fetch, Schedule, page_size):
            yield item

    def get(self, schedule_id: str) -> Schedule:
        return m.one(self._t.call(get_schedule.sync_detailed, id=schedule_id), Schedule)

    def update(self, schedule_id: str, params: Params = None, /, **fields: Any) -> Schedule:
        request = m.body(UpdateScheduleRequest, params, fields, drop_none=False)
        return m.one(self._t.call(update_schedule.sync_detailed, id=schedule_id, body=request), Schedule)

    def delete(self, schedule_id: str) -> None:
        self._t.call(delete_schedule.sync_detailed, id=schedule_id)

    def pause(self, schedule_id: str) -> Schedule:
        return m.one(
            self._t.call(pause_schedule.sync_detailed, id=schedule_id, idempotent_post=True),
            Schedule,
        )

    def resume(self, schedule_id: str) -> Schedule:
        return m.one(
            self._t.call(resume_schedule.sync_detailed, id=schedule_id, idempotent_post=True),
            Schedule,
        )

    def trigger(self, schedule_id: str) -> TriggerScheduleResponse:
        return m.one(self._t.call(trigger_schedule.sync_detailed, id=schedule_id), TriggerScheduleResponse)

    def preview(
        self, cron: str, *, timezone: str | None = None, count: int | None = None
    ) -> PreviewScheduleResponse200:
        """The next ``count`` fire times of a cron expression (validated like a schedule; nothing stored)."""
        query = _query(None, {"timezone": timezone, "count": count})
        return m.one(
            self._t.call(preview_schedule.sync_detailed, cron=cron, **query),
            PreviewScheduleResponse200,
        )

    def history(self, schedule_id: str, *, limit: int | None = None) -> builtins.list[ScheduleRun]:
        return m.many(
            self._t.call(
                get_schedule_history.sync_detailed, id=schedule_id, **_query(None, {"limit": limit})
            ),
            ScheduleRun,
        )


class WorkflowJobs(_SyncResource):
    """The jobs of one workflow."""

    def list(self, workflow_id: str) -> builtins.list[WorkflowJob]:
        return m.many(self._t.call(list_workflow_jobs.sync_detailed, id=workflow_id), WorkflowJob)

    def list_all(self, workflow_id: str) -> Iterator[WorkflowJob]:
        for job in self.list(workflow_id):  # the route returns every job at once (≤ 100)
            yield job

    def status(self, workflow_id: str) -> builtins.list[WorkflowJobStatus]:
        return m.many(self._t.call(get_workflow_jobs_status.sync_detailed, id=workflow_id), WorkflowJobStatus)

    def get(self, workflow_id: str, job_id: str) -> WorkflowJob:
        return m.one(self._t.call(get_workflow_job.sync_detailed, id=workflow_id, job_id=job_id), WorkflowJob)


class Workflows(_SyncResource):
    """Workflows: DAGs of jobs (rest.md §12). ``workflows.jobs`` reads their jobs."""

    def __init__(self, transport: SyncTransport) -> None:
        super().__init__(transport)
        self.jobs = WorkflowJobs(transport)

    def create(self, params: Params = None, /, **fields: Any) -> CreateWorkflowResponse:
        request = m.body(CreateWorkflowRequest, params, fields)
        return m.one(self._t.call(create_workflow.sync_detailed, body=request), CreateWorkflowResponse)

    def list(self, params: Params = None, /, **query: Any) -> builtins.list[WorkflowResponse]:
        return m.many(self._t.call(list_workflows.sync_detailed, **_query(params, query)), WorkflowResponse)

    def list_all(
        self, params: Params = None, /, *, page_size: int = 100, **filters: Any
    ) -> Iterator[WorkflowResponse]:
        query = _query(params, filters)

        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(list_workflows.sync_detailed, limit=limit, offset=offset, **query)

        for item in _paginate(fetch, WorkflowResponse, page_size):
            yield item

    def get(self, workflow_id: str) -> WorkflowDetail:
        return m.one(self._t.call(get_workflow.sync_detailed, id=workflow_id), WorkflowDetail)

    def cancel(self, workflow_id: str) -> WorkflowResponse:
        return m.one(
            self._t.call(cancel_workflow.sync_detailed, id=workflow_id, idempotent_post=True),
            WorkflowResponse,
        )

    def retry(self, workflow_id: str) -> WorkflowResponse:
        return m.one(self._t.call(retry_workflow.sync_detailed, id=workflow_id), WorkflowResponse)


class Webhooks(_SyncResource):
    """Outgoing webhooks and their deliveries (rest.md §13)."""

    def list(self) -> builtins.list[OutgoingWebhook]:
        return m.many(self._t.call(list_outgoing_webhooks.sync_detailed), OutgoingWebhook)

    def list_all(self) -> Iterator[OutgoingWebhook]:
        for hook in self.list():  # not paginated by the server
            yield hook

    def create(self, params: Params = None, /, **fields: Any) -> OutgoingWebhook:
        request = m.body(CreateOutgoingWebhookRequest, params, fields)
        return m.one(self._t.call(create_outgoing_webhook.sync_detailed, body=request), OutgoingWebhook)

    def get(self, webhook_id: str) -> OutgoingWebhook:
        return m.one(self._t.call(get_outgoing_webhook.sync_detailed, id=webhook_id), OutgoingWebhook)

    def update(self, webhook_id: str, params: Params = None, /, **fields: Any) -> OutgoingWebhook:
        """Any create field. ``secret=None`` clears the secret; leaving it out keeps it."""
        request = m.body(UpdateOutgoingWebhookRequest, params, fields, drop_none=False)
        return m.one(
            self._t.call(update_outgoing_webhook.sync_detailed, id=webhook_id, body=request),
            OutgoingWebhook,
        )

    def delete(self, webhook_id: str) -> None:
        self._t.call(delete_outgoing_webhook.sync_detailed, id=webhook_id)

    def test(self, webhook_id: str) -> TestWebhookResponse:
        return m.one(self._t.call(test_outgoing_webhook.sync_detailed, id=webhook_id), TestWebhookResponse)

    def deliveries(self, webhook_id: str, params: Params = None, /, **query: Any) -> builtins.list[Delivery]:
        return m.many(
            self._t.call(list_webhook_deliveries.sync_detailed, id=webhook_id, **_query(params, query)),
            Delivery,
        )

    def deliveries_all(
        self, webhook_id: str, *, status: str | None = None, page_size: int = 100
    ) -> Iterator[Delivery]:
        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(
                list_webhook_deliveries.sync_detailed,
                id=webhook_id,
                limit=limit,
                offset=offset,
                **_query(None, {"status": status}),
            )

        for item in _paginate(fetch, Delivery, page_size):
            yield item

    def retry_delivery(self, webhook_id: str, delivery_id: str) -> RetryDeliveryResponse:
        return m.one(
            self._t.call(retry_webhook_delivery.sync_detailed, id=webhook_id, delivery_id=delivery_id),
            RetryDeliveryResponse,
        )


class ApiKeys(_SyncResource):
    """API keys of the caller's organization (rest.md §4). Needs an unrestricted key."""

    def list(self) -> builtins.list[ApiKeySummary]:
        return m.many(self._t.call(list_api_keys.sync_detailed), ApiKeySummary)

    def list_all(self) -> Iterator[ApiKeySummary]:
        for key in self.list():  # not paginated by the server (≤ 100)
            yield key

    def create(self, params: Params = None, /, **fields: Any) -> CreateApiKeyResponse:
        """``name``, ``queues`` (empty = all), ``rate_limit``, ``expires_at``. The raw key is shown once."""
        request = m.body(CreateApiKeyRequest, params, fields)
        return m.one(self._t.call(create_api_key.sync_detailed, body=request), CreateApiKeyResponse)

    def get(self, key_id: str) -> ApiKeySummary:
        return m.one(self._t.call(get_api_key.sync_detailed, id=key_id), ApiKeySummary)

    def update(self, key_id: str, params: Params = None, /, **fields: Any) -> ApiKeySummary:
        request = m.body(UpdateApiKeyRequest, params, fields)
        return m.one(self._t.call(update_api_key.sync_detailed, id=key_id, body=request), ApiKeySummary)

    def revoke(self, key_id: str) -> None:
        self._t.call(revoke_api_key.sync_detailed, id=key_id)

    delete = revoke


class Organizations(_SyncResource):
    """Organizations (rest.md §3)."""

    def create(self, params: Params = None, /, **fields: Any) -> CreateOrganizationResponse:
        """Sign up: ``name``, ``slug``, ``billing_email``. Needs no API key (the admin key when
        registration is closed)."""
        request = m.body(CreateOrganizationRequest, params, fields)
        admin = self._t.config.admin_key
        return m.one(
            self._t.call(
                create_organization.sync_detailed,
                body=request,
                headers={"X-Admin-Key": admin} if admin else None,
            ),
            CreateOrganizationResponse,
        )

    def list(self) -> builtins.list[OrganizationListItem]:
        return m.many(self._t.call(list_organizations.sync_detailed), OrganizationListItem)

    def list_all(self) -> Iterator[OrganizationListItem]:
        for org in self.list():  # only the caller's organization
            yield org

    def get(self, org_id: str) -> Organization:
        return m.one(self._t.call(get_organization.sync_detailed, id=org_id), Organization)

    def update(self, org_id: str, params: Params = None, /, **fields: Any) -> Organization:
        request = m.body(UpdateOrganizationRequest, params, fields)
        return m.one(self._t.call(update_organization.sync_detailed, id=org_id, body=request), Organization)

    def delete(self, org_id: str) -> None:
        self._t.call(delete_organization.sync_detailed, id=org_id)

    def check_slug(self, slug: str) -> CheckSlugResponse:
        return m.one(self._t.call(check_slug.sync_detailed, slug=slug), CheckSlugResponse)

    def generate_slug(self, name: str) -> GenerateSlugResponse:
        return m.one(
            self._t.call(
                generate_slug.sync_detailed, body=GenerateSlugRequest(name=name), idempotent_post=True
            ),
            GenerateSlugResponse,
        )

    def members(self, org_id: str) -> builtins.list[OrganizationMember]:
        return m.many(self._t.call(list_organization_members.sync_detailed, id=org_id), OrganizationMember)

    def usage(self) -> UsageInfo:
        return m.one(self._t.call(get_organization_usage.sync_detailed), UsageInfo)

    def webhook_token(self) -> WebhookTokenResponse:
        return m.one(self._t.call(get_webhook_token.sync_detailed), WebhookTokenResponse)

    def regenerate_webhook_token(self) -> WebhookTokenResponse:
        return m.one(self._t.call(regenerate_webhook_token.sync_detailed), WebhookTokenResponse)

    def clear_webhook_token(self) -> WebhookTokenResponse:
        return m.one(
            self._t.call(
                clear_webhook_token.sync_detailed,
                body=ClearWebhookTokenRequest(confirm=True),
                idempotent_post=True,
            ),
            WebhookTokenResponse,
        )


class Auth(_SyncResource):
    """JWT sessions (rest.md §2)."""

    def login(self, api_key: str | None = None) -> LoginResponse:
        """Exchange an API key (default: the client's) for access and refresh tokens."""
        key = api_key or self._t.config.api_key
        if not key:
            raise AuthenticationError("login needs an API key", code="UNAUTHORIZED")
        return m.one(self._t.call(login.sync_detailed, body=LoginRequest(api_key=key)), LoginResponse)

    def refresh(self, refresh_token_value: str) -> RefreshTokenResponse:
        request = RefreshTokenRequest(refresh_token=refresh_token_value)
        return m.one(self._t.call(refresh_token.sync_detailed, body=request), RefreshTokenResponse)

    def logout(self, refresh_token_value: str | None = None) -> None:
        request = LogoutRequest(refresh_token=refresh_token_value) if refresh_token_value else UNSET
        self._t.call(logout.sync_detailed, body=request, idempotent_post=True)

    def me(self) -> MeResponse:
        """Who the client's credential is; needs a JWT access token as the client's credential."""
        return m.one(self._t.call(get_me.sync_detailed), MeResponse)

    def validate(self, token: str) -> ValidateTokenResponse:
        return m.one(
            self._t.call(
                validate_token.sync_detailed, body=ValidateTokenRequest(token=token), idempotent_post=True
            ),
            ValidateTokenResponse,
        )


class Admin(_SyncResource):
    """Operator routes (rest.md §17). Uses the client's ``admin_key`` (or ``SPOOLED_ADMIN_KEY``)."""

    def _h(self) -> dict[str, str] | None:
        key = self._t.config.admin_key
        return {"X-Admin-Key": key} if key else None

    def list_organizations(self, params: Params = None, /, **query: Any) -> AdminOrganizationList:
        return m.one(
            self._t.call(admin_list_organizations.sync_detailed, headers=self._h(), **_query(params, query)),
            AdminOrganizationList,
        )

    def list_organizations_all(
        self, params: Params = None, /, *, page_size: int = 100, **filters: Any
    ) -> Iterator[AdminOrganizationListItem]:
        query = _query(params, filters)
        offset = 0
        while True:
            page = m.one(
                self._t.call(
                    admin_list_organizations.sync_detailed,
                    headers=self._h(),
                    limit=page_size,
                    offset=offset,
                    **query,
                ),
                AdminOrganizationList,
            )
            for org in page.organizations:
                yield org
            offset += len(page.organizations)
            if not page.organizations or offset >= page.total:
                return

    list_all = list_organizations_all

    def create_organization(self, params: Params = None, /, **fields: Any) -> AdminCreateOrganizationResponse:
        request = m.body(AdminCreateOrganizationRequest, params, fields)
        return m.one(
            self._t.call(admin_create_organization.sync_detailed, body=request, headers=self._h()),
            AdminCreateOrganizationResponse,
        )

    def get_organization(self, org_id: str) -> AdminOrganizationDetail:
        return m.one(
            self._t.call(admin_get_organization.sync_detailed, id=org_id, headers=self._h()),
            AdminOrganizationDetail,
        )

    def update_organization(self, org_id: str, params: Params = None, /, **fields: Any) -> AdminOrganization:
        request = m.body(AdminUpdateOrganizationRequest, params, fields, drop_none=False)
        return m.one(
            self._t.call(admin_update_organization.sync_detailed, id=org_id, body=request, headers=self._h()),
            AdminOrganization,
        )

    def delete_organization(self, org_id: str, *, hard_delete: bool = False) -> None:
        self._t.call(
            admin_delete_organization.sync_detailed, id=org_id, hard_delete=hard_delete, headers=self._h()
        )

    def create_api_key(self, org_id: str, params: Params = None, /, **fields: Any) -> CreateApiKeyResponse:
        request = m.body(AdminCreateApiKeyRequest, params, fields)
        return m.one(
            self._t.call(admin_create_api_key.sync_detailed, id=org_id, body=request, headers=self._h()),
            CreateApiKeyResponse,
        )

    def reset_usage(self, org_id: str) -> SuccessResponse:
        return m.one(
            self._t.call(admin_reset_usage.sync_detailed, id=org_id, headers=self._h(), idempotent_post=True),
            SuccessResponse,
        )

    def stats(self) -> AdminStats:
        return m.one(self._t.call(admin_get_stats.sync_detailed, headers=self._h()), AdminStats)

    def plans(self) -> builtins.list[PlanLimits]:
        return m.many(self._t.call(admin_list_plans.sync_detailed, headers=self._h()), PlanLimits)


class Dashboard(_SyncResource):
    def get(self) -> DashboardResponse:
        return m.one(self._t.call(get_dashboard.sync_detailed), DashboardResponse)


class Health(_SyncResource):
    def get(self) -> HealthResponse:
        return m.one(self._t.call(health.sync_detailed), HealthResponse)

    def live(self) -> bool:
        self._t.call(liveness.sync_detailed)
        return True

    def ready(self) -> HealthResponse:
        return m.one(self._t.call(readiness.sync_detailed), HealthResponse)


class Metrics(_SyncResource):
    def get(self) -> str:
        """The Prometheus text exposition."""
        response = self._t.call(metrics.sync_detailed)
        return response.content.decode()


class Ingest(_SyncResource):
    """Incoming webhooks that create jobs (rest.md §14)."""

    def custom(self, org_id: str, params: Params = None, /, *, token: str, **fields: Any) -> IngestResponse:
        """Enqueue through the organization's custom webhook: ``queue_name``, ``payload``, ``event_type``,
        ``idempotency_key``, ``priority``. ``token`` is the org's ``whk_`` webhook token."""
        request = m.body(IngestCustomRequest, params, fields)
        keyed = bool(request.to_dict().get("idempotency_key"))
        return m.one(
            self._t.call(
                ingest_custom.sync_detailed,
                org_id=org_id,
                body=request,
                headers={"X-Webhook-Token": token},
                idempotent_post=keyed,
            ),
            IngestResponse,
        )

    def provider(
        self, org_id: str, provider: str, body: bytes, headers: Mapping[str, str], *, queue: str | None = None
    ) -> IngestResponse:
        """Forward a provider's delivery (``github``, ``stripe``, ``shopify``) byte for byte, with its
        signature headers: the server checks the HMAC over these exact bytes."""
        response = self._t.request(
            "POST",
            f"/api/v1/webhooks/{org_id}/{provider}",
            content=body,
            params={"queue": queue} if queue else None,
            headers={"Content-Type": "application/json", **headers},
            idempotent_post=True,
        )
        return IngestResponse.from_dict(response.json())

    def deliveries(self, params: Params = None, /, **query: Any) -> builtins.list[IngestDelivery]:
        return m.many(
            self._t.call(list_ingest_deliveries.sync_detailed, **_query(params, query)),
            IngestDelivery,
        )

    def deliveries_all(
        self, params: Params = None, /, *, page_size: int = 100, **filters: Any
    ) -> Iterator[IngestDelivery]:
        query = _query(params, filters)

        def fetch(limit: int, offset: int) -> Response[Any]:
            return self._t.call(list_ingest_deliveries.sync_detailed, limit=limit, offset=offset, **query)

        for item in _paginate(fetch, IngestDelivery, page_size):
            yield item
