"""The job lifecycle: create, claim, complete, fail, heartbeat, progress, cancel, retry, priority, reads.

Every state change is one statement (CTEs carry the history row, DLQ audit row and dependent release), run
in a transaction confined to the caller's organization. Events are published only after commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from .. import metrics
from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import BadRequest, Conflict, LeaseExpired, NotFound, ValidationFailed

STATUSES = ("pending", "scheduled", "processing", "completed", "failed", "deadletter", "cancelled")
TERMINAL = ("completed", "deadletter", "cancelled")
NULL_JSON = msgspec.Raw(b"null")


def ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def raw_size(value: msgspec.Raw) -> int:
    return len(bytes(value))


def as_raw(value: Any) -> msgspec.Raw:
    if isinstance(value, msgspec.Raw):
        return value
    return msgspec.Raw(msgspec.json.encode(value))


# --- create ---------------------------------------------------------------------------------------------


@dataclass
class NewJob:
    queue_name: str
    payload: msgspec.Raw
    priority: int = 0
    max_retries: int | None = None
    timeout_seconds: int | None = None
    scheduled_at: datetime | None = None
    expires_at: datetime | None = None
    tags: msgspec.Raw | None = None
    parent_job_id: uuid.UUID | None = None
    completion_webhook: str | None = None
    completion_webhook_secret: str | None = None
    idempotency_key: str | None = None


def validate_new_job(job: NewJob, *, queue_max_len: int = 100) -> None:
    v.queue_name(job.queue_name, max_len=queue_max_len)
    v.int_range(job.priority, "priority", -100, 100)
    v.opt_int_range(job.max_retries, "max_retries", 0, 100)
    v.opt_int_range(job.timeout_seconds, "timeout_seconds", 1, 86400)
    if job.idempotency_key is not None:
        v.text(job.idempotency_key, "idempotency_key", 1, 255)
    if job.tags is not None and raw_size(job.tags) > 65536:
        raise ValidationFailed("tags", "must be at most 64 KB serialized", rule="length")
    if job.tags is not None:
        first = bytes(job.tags).lstrip()[:1]
        if first not in (b"{", b"[", b"n"):
            raise ValidationFailed("tags", "must be an object or an array", rule="type")
        if first == b"n":
            job.tags = None
    if job.completion_webhook is not None:
        v.http_url(job.completion_webhook, "completion_webhook")
    if job.completion_webhook_secret is not None:
        v.text(job.completion_webhook_secret, "completion_webhook_secret", 1, 255)


async def create_job(core: Core, principal: Principal, job: NewJob) -> tuple[uuid.UUID, bool]:
    """Create a job, or return the existing one for a repeated idempotency key (created=False)."""
    validate_new_job(job)
    principal.require_queue(job.queue_name)
    core.quotas.check_payload(principal, raw_size(job.payload))
    job_id = uuid.uuid4()
    settings = core.settings
    async with core.db.tenant(principal.org_id) as conn:
        if job.idempotency_key is not None:
            existing = await conn.fetchrow(Q.find_job_by_idempotency_key, principal.org_id, job.idempotency_key)
            if existing is not None:
                return existing["id"], False
        await core.quotas.reserve_jobs(conn, principal, 1)
        await core.quotas.check_new_queue(conn, principal, job.queue_name)
        deps_met: bool | None = None
        if job.parent_job_id is not None:
            deps_met = await _check_parent(conn, principal, job)
        row = await conn.fetchrow(
            Q.insert_job, principal.org_id, job.queue_name, job_id, job.payload, job.max_retries, job.priority,
            job.timeout_seconds, job.tags, job.scheduled_at, job.expires_at, job.parent_job_id,
            job.completion_webhook, job.completion_webhook_secret, job.idempotency_key, deps_met,
            settings.queue_default_max_retries, settings.queue_default_timeout_secs,
        )
        if row is not None and job.parent_job_id is not None:
            await conn.execute(
                "INSERT INTO job_dependencies (organization_id, job_id, depends_on_job_id) VALUES ($1, $2, $3)",
                principal.org_id, job_id, job.parent_job_id,
            )
    if row is None:
        # A concurrent request with the same key won the insert; its row is visible to a new statement.
        async with core.db.tenant(principal.org_id) as conn:
            existing = await conn.fetchrow(Q.find_job_by_idempotency_key, principal.org_id, job.idempotency_key)
        if existing is None:  # pragma: no cover - the winner rolled back; the client may retry
            raise Conflict("A job with this idempotency key is being created; retry the request")
        return existing["id"], False
    _after_create(core, principal.org_id, job.queue_name, [(job_id, row["status"], row["priority"])])
    return job_id, True


async def _check_parent(conn: asyncpg.Connection, principal: Principal, job: NewJob) -> bool:
    parent = await conn.fetchrow(
        "SELECT queue_name, status FROM jobs WHERE id = $1 AND organization_id = $2",
        job.parent_job_id, principal.org_id,
    )
    if parent is None or parent["queue_name"] != job.queue_name:
        raise ValidationFailed("parent_job_id", "must be a job of the same organization and queue",
                               rule="invalid")
    return bool(parent["status"] == "completed")


def _after_create(core: Core, org_id: uuid.UUID, queue: str, created: list[tuple[uuid.UUID, str, int]]) -> None:
    if not created:
        return
    metrics.JOBS_ENQUEUED.inc(len(created))
    if any(status == "pending" for _, status, _ in created):
        core.wakeups.notify(org_id, queue)
    for job_id, status, priority in created:
        core.bus.publish(org_id, "JobCreated",
                         {"job_id": str(job_id), "queue_name": queue, "priority": priority, "status": status})


@dataclass
class BulkItem:
    payload: msgspec.Raw
    priority: int | None = None
    idempotency_key: str | None = None
    scheduled_at: datetime | None = None


async def bulk_create_jobs(
    core: Core,
    principal: Principal,
    queue_name: str,
    items: list[BulkItem],
    *,
    default_priority: int = 0,
    default_max_retries: int | None = None,
    default_timeout_seconds: int | None = None,
) -> dict[str, Any]:
    """Create up to 100 jobs of one queue in one statement; per-item failures are reported, not raised."""
    v.queue_name(queue_name)
    if not 1 <= len(items) <= 100:
        raise ValidationFailed("jobs", "must contain 1..100 jobs", rule="length")
    v.int_range(default_priority, "default_priority", -100, 100)
    v.opt_int_range(default_max_retries, "default_max_retries", 0, 100)
    v.opt_int_range(default_timeout_seconds, "default_timeout_seconds", 1, 86400)
    principal.require_queue(queue_name)
    failed: list[dict[str, Any]] = []
    good: list[tuple[int, BulkItem]] = []
    cap = core.quotas
    for index, item in enumerate(items):
        try:
            priority = default_priority if item.priority is None else item.priority
            v.int_range(priority, f"jobs[{index}].priority", -100, 100)
            item.priority = priority
            if item.idempotency_key is not None:
                v.text(item.idempotency_key, f"jobs[{index}].idempotency_key", 1, 255)
            cap.check_payload(principal, raw_size(item.payload))
        except Exception as exc:  # per-item validation: reported in `failed`
            failed.append({"index": index, "error": getattr(exc, "message", str(exc))})
            continue
        good.append((index, item))

    succeeded: list[dict[str, Any]] = []
    created_rows: list[tuple[uuid.UUID, str, int]] = []
    if good:
        # Duplicate keys inside one batch collapse to the first index.
        first_by_key: dict[str, int] = {}
        unique: list[tuple[int, BulkItem, uuid.UUID]] = []
        dup_of: dict[int, int] = {}
        for index, item in good:
            key = item.idempotency_key
            if key is not None and key in first_by_key:
                dup_of[index] = first_by_key[key]
                continue
            if key is not None:
                first_by_key[key] = index
            unique.append((index, item, uuid.uuid4()))
        async with core.db.tenant(principal.org_id) as conn:
            keys = [i.idempotency_key for _, i, _ in unique if i.idempotency_key is not None]
            existing: dict[str, uuid.UUID] = {}
            if keys:
                for r in await conn.fetch(Q.find_jobs_by_idempotency_keys, principal.org_id, keys):
                    existing[r["idempotency_key"]] = r["id"]
            to_insert = [(i, it, jid) for i, it, jid in unique if it.idempotency_key not in existing]
            if to_insert:
                await cap.reserve_jobs(conn, principal, len(to_insert))
                await cap.check_new_queue(conn, principal, queue_name)
                rows = await conn.fetch(
                    Q.bulk_insert_jobs, principal.org_id, queue_name,
                    [jid for _, _, jid in to_insert],
                    [it.payload for _, it, _ in to_insert],
                    [it.priority for _, it, _ in to_insert],
                    [it.idempotency_key for _, it, _ in to_insert],
                    [it.scheduled_at for _, it, _ in to_insert],
                    default_max_retries, default_timeout_seconds,
                    core.settings.queue_default_max_retries, core.settings.queue_default_timeout_secs,
                )
                inserted = {r["id"]: r["status"] for r in rows}
                missing_keys = [it.idempotency_key for _, it, jid in to_insert
                                if jid not in inserted and it.idempotency_key is not None]
                if missing_keys:  # lost a race with a concurrent insert of the same key
                    for r in await conn.fetch(Q.find_jobs_by_idempotency_keys, principal.org_id, missing_keys):
                        existing[r["idempotency_key"]] = r["id"]
            else:
                inserted = {}
        result_by_index: dict[int, tuple[uuid.UUID, bool]] = {}
        for index, item, jid in unique:
            if jid in inserted:
                result_by_index[index] = (jid, True)
                created_rows.append((jid, inserted[jid], int(item.priority or 0)))
            else:
                result_by_index[index] = (existing[item.idempotency_key or ""], False)
        for index, first in dup_of.items():
            result_by_index[index] = (result_by_index[first][0], False)
        for index in sorted(result_by_index):
            job_id, created = result_by_index[index]
            succeeded.append({"index": index, "job_id": str(job_id), "created": created})
    _after_create(core, principal.org_id, queue_name, created_rows)
    failed.sort(key=lambda f: int(f["index"]))
    return {
        "succeeded": succeeded,
        "failed": failed,
        "total": len(items),
        "success_count": len(succeeded),
        "failure_count": len(failed),
    }


# --- the worker protocol ----------------------------------------------------------------------------------


async def claim_jobs(
    core: Core, principal: Principal, queue_name: str, worker_id: str, limit: int, lease_secs: int
) -> list[asyncpg.Record]:
    """Claim up to `limit` jobs (one statement, skip-locked). Empty when nothing is eligible."""
    async with core.db.tenant(principal.org_id, custom_plan=True) as conn:
        rows = await conn.fetch(Q.claim_jobs, principal.org_id, queue_name, limit, worker_id, float(lease_secs))
    for r in rows:
        core.bus.status_change(principal.org_id, r["id"], queue_name, r["old_status"], "processing")
    return rows


async def classify_lease_miss(
    conn: asyncpg.Connection, principal: Principal, job_id: uuid.UUID, worker_id: str, lease_id: str | None
) -> Exception:
    """Why a fenced worker call matched no row: the contract's LEASE_EXPIRED / CONFLICT / NOT_FOUND."""
    row = await conn.fetchrow(Q.lease_state, job_id, principal.org_id, worker_id, lease_id or "")
    if row is None or not principal.can_access(row["queue_name"]):
        return NotFound("Job not found or not authorized")
    mine = row["assigned_worker_id"] == worker_id
    if row["status"] in TERMINAL and mine:
        return Conflict(f"Job is already {row['status']}")
    if row["status"] == "processing" and mine:
        if lease_id is None or str(row["lease_id"]) != lease_id:
            return LeaseExpired("Lease does not match the job's current lease")
        if not row["lease_live"]:
            return LeaseExpired("Lease expired")
    if row["held_before"]:
        return LeaseExpired("Lease expired: the job was requeued")
    return NotFound("Job not found or not authorized")


def _lease_uuid(lease_id: str | None) -> uuid.UUID | None:
    return v.try_uuid(lease_id) if lease_id else None


async def complete_job(
    core: Core, principal: Principal, job_id: uuid.UUID, worker_id: str, lease_id: str | None,
    result: msgspec.Raw | None,
) -> asyncpg.Record:
    if result is not None and raw_size(result) > core.settings.queue_max_payload_size_bytes:
        core.quotas.check_payload(principal, raw_size(result))
    lease = _lease_uuid(lease_id)
    async with core.db.tenant(principal.org_id) as conn:
        row = None
        if lease is not None:
            row = await conn.fetchrow(Q.complete_job, job_id, principal.org_id, worker_id, lease, result)
        if row is None:
            raise await classify_lease_miss(conn, principal, job_id, worker_id, lease_id)
    after_complete(core, principal.org_id, row, result)
    return row


def after_complete(core: Core, org_id: uuid.UUID, row: asyncpg.Record, result: msgspec.Raw | None) -> None:
    metrics.JOBS_COMPLETED.inc()
    duration_ms: float | None = None
    if row["started_at"] is not None and row["completed_at"] is not None:
        seconds = (row["completed_at"] - row["started_at"]).total_seconds()
        metrics.JOB_DURATION.observe(seconds)
        duration_ms = round(seconds * 1000, 3)
    queue = row["queue_name"]
    core.bus.status_change(org_id, row["id"], queue, "processing", "completed")
    core.bus.publish(org_id, "JobCompleted", {"job_id": str(row["id"]), "queue_name": queue,
                                               "duration_ms": duration_ms, "result": result or NULL_JSON})
    if row["released_queues"]:
        core.wakeups.notify_many(org_id, row["released_queues"])


@dataclass
class FailOutcome:
    will_retry: bool
    retry_count: int
    next_retry_at: datetime | None
    delay_secs: int


async def fail_job(
    core: Core, principal: Principal, job_id: uuid.UUID, worker_id: str, lease_id: str | None, error: str,
    *, retry: bool = True,
) -> FailOutcome:
    lease = _lease_uuid(lease_id)
    s = core.settings
    async with core.db.tenant(principal.org_id) as conn:
        row = None
        if lease is not None:
            row = await conn.fetchrow(
                Q.fail_job, job_id, principal.org_id, worker_id, lease, error, retry,
                s.retry_backoff_base_secs, s.retry_backoff_max_secs, s.retry_jitter,
            )
        if row is None:
            raise await classify_lease_miss(conn, principal, job_id, worker_id, lease_id)
        now = await conn.fetchval("SELECT now()")
    after_fail(core, principal.org_id, row, error)
    delay = 0
    if row["will_retry"] and row["scheduled_at"] is not None:
        delay = max(0, round((row["scheduled_at"] - now).total_seconds()))
    return FailOutcome(
        will_retry=bool(row["will_retry"]),
        retry_count=int(row["retry_count"]),
        next_retry_at=row["scheduled_at"] if row["will_retry"] else None,
        delay_secs=delay,
    )


def after_fail(core: Core, org_id: uuid.UUID, row: asyncpg.Record, error: str) -> None:
    metrics.JOBS_FAILED.inc()
    queue = row["queue_name"]
    new_status = "pending" if row["will_retry"] else "deadletter"
    if row["will_retry"]:
        metrics.JOBS_RETRIED.inc()
    else:
        metrics.JOBS_DEADLETTERED.inc()
    core.bus.status_change(org_id, row["id"], queue, "processing", new_status)
    core.bus.publish(org_id, "JobFailed", {"job_id": str(row["id"]), "queue_name": queue, "error": error,
                                            "retry_count": row["retry_count"], "will_retry": row["will_retry"]})


async def heartbeat_job(
    core: Core, principal: Principal, job_id: uuid.UUID, worker_id: str, lease_id: str | None, lease_secs: int
) -> datetime:
    lease = _lease_uuid(lease_id)
    async with core.db.tenant(principal.org_id) as conn:
        expires = None
        if lease is not None:
            expires = await conn.fetchval(Q.heartbeat_job, job_id, principal.org_id, worker_id, lease,
                                          float(lease_secs))
        if expires is None:
            raise await classify_lease_miss(conn, principal, job_id, worker_id, lease_id)
    return expires  # type: ignore[no-any-return]


async def report_progress(
    core: Core, principal: Principal, job_id: uuid.UUID, worker_id: str | None, lease_id: str | None,
    percent: float, message: str | None,
) -> None:
    async with core.db.tenant(principal.org_id) as conn:
        if worker_id is None and lease_id is None:
            row = await conn.fetchrow(Q.progress_job_unfenced, job_id, principal.org_id, percent, message)
            if row is None:
                state = await conn.fetchrow("SELECT status, queue_name FROM jobs WHERE id = $1 AND organization_id = $2",
                                            job_id, principal.org_id)
                if state is None or not principal.can_access(state["queue_name"]):
                    raise NotFound()
                raise Conflict(f"Job is not processing (status {state['status']})")
            worker = row["assigned_worker_id"]
        else:
            lease = _lease_uuid(lease_id)
            row = None
            if lease is not None and worker_id is not None:
                row = await conn.fetchrow(Q.progress_job, job_id, principal.org_id, worker_id, lease, percent,
                                          message)
            if row is None:
                raise await classify_lease_miss(conn, principal, job_id, worker_id or "", lease_id)
            worker = worker_id
    core.bus.publish(principal.org_id, "JobProgress", {
        "job_id": str(job_id), "queue_name": row["queue_name"], "worker_id": worker,
        "percent": percent, "message": message,
    })


# --- operator actions -----------------------------------------------------------------------------------


async def _visible_job(conn: asyncpg.Connection, principal: Principal, job_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(Q.get_job, job_id, principal.org_id)
    if row is None or not principal.can_access(row["queue_name"]):
        raise NotFound()
    return row


async def get_job(core: Core, principal: Principal, job_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        row = await _visible_job(conn, principal, job_id)
    return job_to_wire(row)


async def cancel_job(core: Core, principal: Principal, job_id: uuid.UUID) -> None:
    async with core.db.tenant(principal.org_id) as conn:
        await _visible_job(conn, principal, job_id)
        row = await conn.fetchrow(Q.cancel_job, job_id, principal.org_id)
        if row is None:
            raise Conflict("Job cannot be cancelled (not in pending or scheduled state)")
    core.bus.status_change(principal.org_id, job_id, row["queue_name"], row["old_status"], "cancelled")


async def retry_job(core: Core, principal: Principal, job_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        current = await _visible_job(conn, principal, job_id)
        rows = await retry_rows(core, conn, principal, [job_id])
        if not rows:
            raise Conflict(f"Job cannot be retried from status {current['status']}")
        job = await conn.fetchrow(Q.get_job, job_id, principal.org_id)
    after_retry(core, principal.org_id, rows)
    return job_to_wire(job)


async def retry_rows(
    core: Core, conn: asyncpg.Connection, principal: Principal, ids: list[uuid.UUID]
) -> list[asyncpg.Record]:
    limits = core.quotas.limits(principal)
    if limits.max_active_jobs is not None:
        active = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE organization_id = $1 AND status IN ('pending','scheduled','processing')",
            principal.org_id,
        )
        if active + len(ids) > limits.max_active_jobs:
            from .quotas import quota_error

            raise quota_error("active_jobs", int(active), limits.max_active_jobs, limits)
    rows = await conn.fetch(Q.retry_jobs, principal.org_id, ids)
    if rows:
        await conn.execute(Q.regate_dependents, principal.org_id, [r["id"] for r in rows])
    return list(rows)


def after_retry(core: Core, org_id: uuid.UUID, rows: list[asyncpg.Record]) -> None:
    queues = set()
    for r in rows:
        queues.add(r["queue_name"])
        core.bus.status_change(org_id, r["id"], r["queue_name"], r["old_status"], "pending")
    core.wakeups.notify_many(org_id, queues)


async def boost_priority(core: Core, principal: Principal, job_id: uuid.UUID, priority: Any) -> dict[str, Any]:
    v.int_range(priority, "priority", -100, 100)
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.set_priority, job_id, principal.org_id, priority)
        if row is None or not principal.can_access(row["queue_name"]):
            raise NotFound("Job not found or not in pending or scheduled state")
    return {"job_id": str(row["id"]), "old_priority": row["old_priority"], "new_priority": row["new_priority"]}


async def job_stats(core: Core, principal: Principal, queue_name: str | None) -> dict[str, int]:
    scope = None if principal.unrestricted else list(principal.queues)
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.job_stats, principal.org_id, queue_name, scope)
    counts = dict.fromkeys(STATUSES, 0)
    for r in rows:
        if r["status"] in counts:
            counts[r["status"]] = int(r["n"])
    counts["total"] = sum(counts[s] for s in STATUSES)
    return counts


async def batch_status(core: Core, principal: Principal, ids_param: str | None) -> list[dict[str, Any]]:
    raw_ids = [p.strip() for p in (ids_param or "").split(",") if p.strip()]
    if len(raw_ids) > 100:
        raise BadRequest("ids: at most 100 ids per request")
    ids = [u for u in (v.try_uuid(p) for p in raw_ids) if u is not None]
    if not ids:
        return []
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.jobs_batch_status, principal.org_id, ids)
    return [
        {"id": str(r["id"]), "status": r["status"], "queue_name": r["queue_name"], "retry_count": r["retry_count"],
         "created_at": ts(r["created_at"]), "completed_at": ts(r["completed_at"])}
        for r in rows if principal.can_access(r["queue_name"])
    ]


async def job_history(
    core: Core, principal: Principal, job_id: uuid.UUID, ascending: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], bool]:
    async with core.db.tenant(principal.org_id) as conn:
        await _visible_job(conn, principal, job_id)
        rows = await conn.fetch(Q.job_history, job_id, principal.org_id, ascending, limit + 1, offset)
    more = len(rows) > limit
    return [
        {"id": str(r["id"]), "job_id": str(r["job_id"]), "event_type": r["event_type"], "worker_id": r["worker_id"],
         "details": r["details"] if r["details"] is not None else None, "created_at": ts(r["created_at"])}
        for r in rows[:limit]
    ], more


def job_to_wire(r: asyncpg.Record) -> dict[str, Any]:
    def s(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "id": str(r["id"]),
        "organization_id": str(r["organization_id"]),
        "queue_name": r["queue_name"],
        "status": r["status"],
        "payload": r["payload"] if r["payload"] is not None else NULL_JSON,
        "result": r["result"] if r["result"] is not None else NULL_JSON,
        "retry_count": r["retry_count"],
        "max_retries": r["max_retries"],
        "last_error": r["last_error"],
        "created_at": ts(r["created_at"]),
        "updated_at": ts(r["updated_at"]),
        "scheduled_at": ts(r["scheduled_at"]),
        "started_at": ts(r["started_at"]),
        "completed_at": ts(r["completed_at"]),
        "expires_at": ts(r["expires_at"]),
        "priority": r["priority"],
        "tags": r["tags"] if r["tags"] is not None else NULL_JSON,
        "timeout_seconds": r["timeout_seconds"],
        "parent_job_id": s(r["parent_job_id"]),
        "completion_webhook": r["completion_webhook"],
        "assigned_worker_id": r["assigned_worker_id"],
        "lease_id": s(r["lease_id"]),
        "lease_expires_at": ts(r["lease_expires_at"]),
        "idempotency_key": r["idempotency_key"],
        "workflow_id": s(r["workflow_id"]),
        "dependency_mode": r["dependency_mode"],
        "dependencies_met": True if r["dependencies_met"] is None else bool(r["dependencies_met"]),
        "progress": r["progress"],
        "progress_message": r["progress_message"],
        "progress_updated_at": ts(r["progress_updated_at"]),
    }
