"""The job lifecycle: create, claim, complete, fail, heartbeat, progress, cancel, retry, priority, reads.

Every state change is one statement (CTEs carry the history row, DLQ audit row and dependent release), run
in a transaction confined to the caller's organization. Events are published only after commit.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from asyncpg.pgproto.pgproto import UUID as PgUUID

from .. import metrics
from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import BadRequest, Conflict, InvalidJson, LeaseExpired, NotFound, SpooledError, ValidationFailed
from .inserts import nulls_as_none

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


# A JSON string escape for U+0000: a backslash that is not itself escaped, then u0000.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def check_storable_json(value: msgspec.Raw | None, field: str) -> None:
    """Reject JSON that PostgreSQL's jsonb cannot hold (it would fail the statement as a server error).

    Raw values are passed through undecoded, so invalid UTF-8 and `\\u0000` reach this point untouched."""
    if value is None:
        return
    data = bytes(value)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("Request body is not valid UTF-8 JSON", details=[
            {"field": field, "message": "invalid UTF-8", "code": "invalid_json"}]) from None
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):
        raise ValidationFailed(field, "must not contain the NUL character (\\u0000)", rule="invalid")


def _unstorable(field: str) -> ValidationFailed:
    return ValidationFailed(field, "holds a value PostgreSQL cannot store (e.g. a number out of range)",
                            rule="invalid")


def backoff_delay_secs(
    retry_count: int, base: int, cap: int, jitter: float = 0.0, draw: float = 0.0
) -> float:
    """The retry delay of semantics.md §4, in seconds: min(base * 2^n, cap), plus jitter j * draw * delay
    (draw in [0, 1)) still capped. fail_job computes the same in SQL, inside the statement that requeues."""
    delay = min(float(cap), float(base) * 2.0 ** min(retry_count, 32))
    return min(float(cap), delay + draw * jitter * delay)


def new_job_ids(n: int) -> list[uuid.UUID]:
    """`n` random (version 4) job ids from one draw of the system's random source.

    They are asyncpg's own UUID type, the one it returns for `uuid` columns: a `uuid.UUID` whose
    construction, `str()` and hashing are several times cheaper, which a 100-job bulk create notices."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    return [PgUUID(bytes(raw[i:i + 16])) for i in range(0, 16 * n, 16)]


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
    check_storable_json(job.payload, "payload")
    check_storable_json(job.tags, "tags")


class _LostRace(Exception):
    """A concurrent request with the same idempotency key inserted first (rolls back what this one did)."""


async def create_job(
    core: Core, principal: Principal, job: NewJob, *, queue_max_len: int = 100
) -> tuple[uuid.UUID, bool]:
    """Create a job, or return the existing one for a repeated idempotency key (created=False).

    `queue_max_len`: REST allows 100 characters in a queue name, gRPC 255 (grpc.md §3)."""
    validate_new_job(job, queue_max_len=queue_max_len)
    if job.completion_webhook is not None and core.settings.is_production:
        # The outgoing-URL rules of semantics.md §15 (https only, public addresses) apply to callbacks too.
        from .webhooks import TargetPolicy  # webhooks imports this module

        await TargetPolicy(core.settings).validate(job.completion_webhook, "completion_webhook")
    principal.require_queue(job.queue_name)
    core.quotas.check_payload(principal, raw_size(job.payload))
    job_id = uuid.uuid4()
    settings = core.settings
    insert_args = (
        principal.org_id, job.queue_name, job_id, job.payload, job.max_retries, job.priority,
        job.timeout_seconds, job.tags, job.scheduled_at, job.expires_at, job.parent_job_id,
        job.completion_webhook, job.completion_webhook_secret, job.idempotency_key, None,
        settings.queue_default_max_retries, settings.queue_default_timeout_secs,
    )
    try:
        if job.parent_job_id is None and core.quotas.uncapped_jobs(principal):
            # The common case: no caps to check and nothing else to write, so one statement does it all.
            row = await core.inserts.insert(insert_args)
            if row is not None:
                core.quotas.note_created(principal, 1)
        else:
            async with core.db.tenant(principal.org_id) as conn:
                if job.idempotency_key is not None:
                    existing = await conn.fetchrow(Q.find_job_by_idempotency_key, principal.org_id,
                                                   job.idempotency_key)
                    if existing is not None:
                        return existing["id"], False
                await core.quotas.reserve_jobs(conn, principal, 1)
                await core.quotas.check_new_queue(conn, principal, job.queue_name)
                deps_met: bool | None = None
                if job.parent_job_id is not None:
                    deps_met = await _check_parent(conn, principal, job)
                row = await conn.fetchrow(Q.insert_job, *insert_args[:14], deps_met, *insert_args[15:])
                if row is None:
                    raise _LostRace  # a replay consumes no quota: undo this request's reservation
                if job.parent_job_id is not None:
                    await conn.execute(Q.insert_parent_edge, principal.org_id, job_id, job.parent_job_id)
    except _LostRace:
        row = None
    except asyncpg.DataError:
        raise _unstorable("payload") from None
    if row is None:
        # A concurrent request with the same key won the insert; its row is visible to a new statement.
        async with core.db.tenant(principal.org_id) as conn:
            existing = await conn.fetchrow(
                Q.find_job_by_idempotency_key, principal.org_id, job.idempotency_key
            )
        if existing is None:  # pragma: no cover - the winner rolled back; the client may retry
            raise Conflict("A job with this idempotency key is being created; retry the request")
        return existing["id"], False
    _after_create(core, principal.org_id, job.queue_name, [(job_id, row["status"], row["priority"])])
    return job_id, True


async def _check_parent(conn: asyncpg.Connection, principal: Principal, job: NewJob) -> bool:
    parent = await conn.fetchrow(Q.lock_parent_job, job.parent_job_id, principal.org_id)
    if parent is None or parent["queue_name"] != job.queue_name:
        raise ValidationFailed("parent_job_id", "must be a job of the same organization and queue",
                               rule="invalid")
    return bool(parent["status"] == "completed")


def _after_create(
    core: Core, org_id: uuid.UUID, queue: str, created: list[tuple[uuid.UUID, str, int]]
) -> None:
    if not created:
        return
    metrics.JOBS_ENQUEUED.inc(len(created))
    if any(status == "pending" for _, status, _ in created):
        core.wakeups.notify(org_id, queue)
    if not core.bus.wanted(org_id, "JobCreated"):
        return
    for job_id, status, priority in created:
        core.bus.publish(org_id, "JobCreated",
                         {"job_id": str(job_id), "queue_name": queue, "priority": priority, "status": status})


@dataclass
class BulkItem:
    payload: msgspec.Raw
    priority: int | None = None
    idempotency_key: str | None = None
    scheduled_at: datetime | str | None = None  # a string is parsed per item (a bad one fails only that item)


BULK_RACE_ROUNDS = 3


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
    payload_cap = cap.payload_cap(principal)
    for index, item in enumerate(items):
        try:
            priority = default_priority if item.priority is None else item.priority
            v.int_range(priority, f"jobs[{index}].priority", -100, 100)
            item.priority = priority
            if item.idempotency_key is not None:
                v.text(item.idempotency_key, f"jobs[{index}].idempotency_key", 1, 255)
            if isinstance(item.scheduled_at, str):
                item.scheduled_at = v.timestamp(item.scheduled_at, f"jobs[{index}].scheduled_at")
            check_storable_json(item.payload, f"jobs[{index}].payload")
            size = raw_size(item.payload)
            if size > payload_cap:
                cap.check_payload(principal, size)  # raises the plan's or the server's error
        except SpooledError as exc:  # per-item validation: reported in `failed`
            failed.append({"index": index, "error": exc.message})
            continue
        good.append((index, item))

    succeeded: list[dict[str, Any]] = []
    created_rows: list[tuple[uuid.UUID, str, int]] = []
    if good:
        # Duplicate keys inside one batch collapse to the first index.
        first_by_key: dict[str, int] = {}
        dup_of: dict[int, int] = {}
        firsts: list[tuple[int, BulkItem]] = []
        for index, item in good:
            key = item.idempotency_key
            if key is not None and key in first_by_key:
                dup_of[index] = first_by_key[key]
                continue
            if key is not None:
                first_by_key[key] = index
            firsts.append((index, item))
        unique = [(index, item, job_id) for (index, item), job_id in zip(firsts, new_job_ids(len(firsts)),
                                                                          strict=True)]
        keys = [i.idempotency_key for _, i, _ in unique if i.idempotency_key is not None]
        settings = core.settings

        def columns(rows: list[tuple[int, BulkItem, uuid.UUID]]) -> tuple[Any, ...]:
            """insert_jobs's parameters after the organization (a column with no value at all is NULL)."""
            n = len(rows)
            return (
                queue_name, [jid for _, _, jid in rows], [it.payload for _, it, _ in rows],
                None if default_max_retries is None else [default_max_retries] * n,
                [it.priority for _, it, _ in rows],
                None if default_timeout_seconds is None else [default_timeout_seconds] * n,
                None,  # tags
                nulls_as_none([it.scheduled_at for _, it, _ in rows]),
                None, None, None,  # expires_at, completion webhook and its secret
                [it.idempotency_key for _, it, _ in rows] if keys else None,
                True,  # dependencies_met: a bulk job has no parent
                settings.queue_default_max_retries, settings.queue_default_timeout_secs,
            )

        uncapped = cap.uncapped_jobs(principal)
        existing: dict[str, uuid.UUID] = {}
        inserted: dict[uuid.UUID, str] = {}
        if uncapped:
            # No quota to charge: insert in one round trip; an element skipped for its key replays the job
            # that holds the key (committed by the time the insert returns, as for a single create).
            try:
                rows = await core.db.hot(principal.org_id, "insert_jobs", principal.org_id, *columns(unique))
            except asyncpg.DataError:
                raise _unstorable("payload") from None
            inserted = {r["id"]: r["status"] for r in rows}
            replayed = [it.idempotency_key for _, it, jid in unique if jid not in inserted]
            if replayed:
                async with core.db.tenant(principal.org_id) as conn:
                    for r in await conn.fetch(Q.find_jobs_by_idempotency_keys, principal.org_id, replayed):
                        existing[r["idempotency_key"]] = r["id"]
                if len(existing) < len(replayed):  # pragma: no cover - the winner rolled back
                    raise Conflict("Concurrent requests are creating jobs with these idempotency keys; "
                                   "retry the request")
        for round_ in range(0 if uncapped else BULK_RACE_ROUNDS):
            existing = {}
            inserted = {}
            try:
                async with core.db.tenant(principal.org_id) as conn:
                    if keys:
                        for r in await conn.fetch(Q.find_jobs_by_idempotency_keys, principal.org_id, keys):
                            existing[r["idempotency_key"]] = r["id"]
                    to_insert = [(i, it, jid) for i, it, jid in unique if it.idempotency_key not in existing]
                    if to_insert:
                        await cap.reserve_jobs(conn, principal, len(to_insert))
                        await cap.check_new_queue(conn, principal, queue_name)
                        rows = await conn.fetch(Q.insert_jobs, principal.org_id, *columns(to_insert))
                        inserted = {r["id"]: r["status"] for r in rows}
                        if len(inserted) < len(to_insert):
                            # A concurrent request inserted some of these keys after the lookup. Undo this
                            # round (its quota charge included) and look again: the winners are committed.
                            raise _LostRace
                break
            except _LostRace:
                if round_ == BULK_RACE_ROUNDS - 1:
                    raise Conflict("Concurrent requests are creating jobs with these idempotency keys; "
                                   "retry the request") from None
            except asyncpg.DataError:
                raise _unstorable("payload") from None
        if uncapped and inserted:
            cap.note_created(principal, len(inserted))
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
    rows = await core.db.hot(principal.org_id, "claim_jobs", principal.org_id, queue_name, limit, worker_id,
                             float(lease_secs))
    if rows and core.bus.wanted(principal.org_id, "JobStatusChange"):
        for r in rows:
            core.bus.status_change(principal.org_id, r["id"], queue_name, r["old_status"], "processing")
    if any(r["workflow_id"] is not None for r in rows):
        from . import workflows

        await workflows.mark_running(core, principal.org_id, rows)
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


def _scope(principal: Principal) -> list[str] | None:
    """The key's queue scope as regexes for the statements' guards (None: unrestricted)."""
    from .queues import scope_regexes  # queues imports this module

    return scope_regexes(principal)


def _lease_uuid(lease_id: str | None) -> uuid.UUID | None:
    return v.try_uuid(lease_id) if lease_id else None


async def complete_job(
    core: Core, principal: Principal, job_id: uuid.UUID, worker_id: str, lease_id: str | None,
    result: msgspec.Raw | None,
) -> asyncpg.Record:
    if result is not None and raw_size(result) > core.settings.queue_max_payload_size_bytes:
        core.quotas.check_payload(principal, raw_size(result))
    check_storable_json(result, "result")
    lease = _lease_uuid(lease_id)
    row = None
    if lease is not None:
        try:
            rows = await core.db.hot(principal.org_id, "complete_job", job_id, principal.org_id, worker_id,
                                     lease, result, _scope(principal))
        except asyncpg.DataError:
            raise _unstorable("result") from None
        row = rows[0] if rows else None
    if row is None:
        async with core.db.tenant(principal.org_id) as conn:
            raise await classify_lease_miss(conn, principal, job_id, worker_id, lease_id)
    after_complete(core, principal.org_id, row, result)
    if row["waiting_dependents"] or row["workflow_id"] is not None:
        from . import workflows

        await workflows.after_settled(core, principal.org_id, [row])
    return row


def after_complete(core: Core, org_id: uuid.UUID, row: asyncpg.Record, result: msgspec.Raw | None,
                   events: tuple[bool, bool] | None = None) -> None:
    """Metrics, events and wake-ups after a completion committed. `events`: whether JobStatusChange and
    JobCompleted events are wanted, when the caller already asked (once for a whole batch)."""
    metrics.JOBS_COMPLETED.inc()
    duration_ms: float | None = None
    if row["started_at"] is not None and row["completed_at"] is not None:
        seconds = (row["completed_at"] - row["started_at"]).total_seconds()
        metrics.JOB_DURATION.observe(seconds)
        duration_ms = round(seconds * 1000, 3)
    queue = row["queue_name"]
    status_events, completed_events = events or completion_events(core, org_id)
    if status_events:
        core.bus.status_change(org_id, row["id"], queue, "processing", "completed")
    if completed_events:
        core.bus.publish(org_id, "JobCompleted", {"job_id": str(row["id"]), "queue_name": queue,
                                                   "duration_ms": duration_ms, "result": result or NULL_JSON})
    if row["released_queues"]:
        core.wakeups.notify_many(org_id, row["released_queues"])
    if row.get("completion_webhook") is not None and core.webhooks is not None:
        core.webhooks.wake()  # the completion callback row committed with the job: send it now


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
    row = None
    if lease is not None:
        rows = await core.db.hot(
            principal.org_id, "fail_job", job_id, principal.org_id, worker_id, lease, error, retry,
            s.retry_backoff_base_secs, s.retry_backoff_max_secs, s.retry_jitter, _scope(principal),
        )
        row = rows[0] if rows else None
    if row is None:
        async with core.db.tenant(principal.org_id) as conn:
            raise await classify_lease_miss(conn, principal, job_id, worker_id, lease_id)
    now = datetime.now(UTC)
    after_fail(core, principal.org_id, row, error)
    if not row["will_retry"]:
        from . import workflows

        await workflows.after_settled(core, principal.org_id, [row])  # failure cascade (transition 12)
    delay = 0
    if row["will_retry"] and row["scheduled_at"] is not None:
        delay = max(0, round((row["scheduled_at"] - now).total_seconds()))
    return FailOutcome(
        will_retry=bool(row["will_retry"]),
        retry_count=int(row["retry_count"]),
        next_retry_at=row["scheduled_at"] if row["will_retry"] else None,
        delay_secs=delay,
    )


def completion_events(core: Core, org_id: uuid.UUID) -> tuple[bool, bool]:
    return core.bus.wanted(org_id, "JobStatusChange"), core.bus.wanted(org_id, "JobCompleted")


def after_fail(core: Core, org_id: uuid.UUID, row: asyncpg.Record, error: str) -> None:
    metrics.JOBS_FAILED.inc()
    queue = row["queue_name"]
    new_status = "pending" if row["will_retry"] else "deadletter"
    if row["will_retry"]:
        metrics.JOBS_RETRIED.inc()
    else:
        metrics.JOBS_DEADLETTERED.inc()
    core.bus.status_change(org_id, row["id"], queue, "processing", new_status)
    core.bus.publish(org_id, "JobFailed", {
        "job_id": str(row["id"]), "queue_name": queue, "error": error,
        "retry_count": row["retry_count"], "will_retry": row["will_retry"]})


async def heartbeat_job(
    core: Core, principal: Principal, job_id: uuid.UUID, worker_id: str, lease_id: str | None, lease_secs: int
) -> datetime:
    lease = _lease_uuid(lease_id)
    expires = None
    if lease is not None:
        rows = await core.db.hot(principal.org_id, "heartbeat_job", job_id, principal.org_id, worker_id,
                                 lease, float(lease_secs), _scope(principal))
        expires = rows[0]["lease_expires_at"] if rows else None
    if expires is None:
        async with core.db.tenant(principal.org_id) as conn:
            raise await classify_lease_miss(conn, principal, job_id, worker_id, lease_id)
    return expires  # type: ignore[no-any-return]


async def report_progress(
    core: Core, principal: Principal, job_id: uuid.UUID, worker_id: str | None, lease_id: str | None,
    percent: float, message: str | None,
) -> None:
    async with core.db.tenant(principal.org_id) as conn:
        if worker_id is None and lease_id is None:
            row = await conn.fetchrow(Q.progress_job_unfenced, job_id, principal.org_id, percent, message,
                                      _scope(principal))
            if row is None:
                state = await conn.fetchrow(
                    "SELECT status, queue_name FROM jobs WHERE id = $1 AND organization_id = $2",
                    job_id, principal.org_id,
                )
                if state is None or not principal.can_access(state["queue_name"]):
                    raise NotFound()
                raise Conflict(f"Job is not processing (status {state['status']})")
            worker = row["assigned_worker_id"]
        else:
            lease = _lease_uuid(lease_id)
            row = None
            if lease is not None and worker_id is not None:
                row = await conn.fetchrow(Q.progress_job, job_id, principal.org_id, worker_id, lease, percent,
                                          message, _scope(principal))
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
    from . import workflows

    await workflows.after_cancel(core, principal.org_id, job_id, row["workflow_id"])


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
            "SELECT count(*) FROM jobs WHERE organization_id = $1"
            " AND status IN ('pending','scheduled','processing')",
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


async def boost_priority(
    core: Core, principal: Principal, job_id: uuid.UUID, priority: Any
) -> dict[str, Any]:
    v.int_range(priority, "priority", -100, 100)
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.set_priority, job_id, principal.org_id, priority)
        if row is None or not principal.can_access(row["queue_name"]):
            raise NotFound("Job not found or not in pending or scheduled state")
    return {"job_id": str(row["id"]), "old_priority": row["old_priority"],
            "new_priority": row["new_priority"]}


async def job_stats(core: Core, principal: Principal, queue_name: str | None) -> dict[str, int]:
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.job_stats, principal.org_id, queue_name, _scope(principal))
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
        {"id": str(r["id"]), "status": r["status"], "queue_name": r["queue_name"],
         "retry_count": r["retry_count"], "created_at": ts(r["created_at"]),
         "completed_at": ts(r["completed_at"])}
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
        {"id": str(r["id"]), "job_id": str(r["job_id"]), "event_type": r["event_type"],
         "worker_id": r["worker_id"], "details": r["details"] if r["details"] is not None else None,
         "created_at": ts(r["created_at"])}
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


# --- batched settlements (gRPC streams) -------------------------------------------------------------------


@dataclass
class Settlement:
    """One complete or fail request of a worker stream, fenced by its own worker and lease."""

    job_id: uuid.UUID
    worker_id: str
    lease_id: str | None
    result: msgspec.Raw | None = None  # complete
    error: str = ""  # fail
    retry: bool = True  # fail: False dead-letters at once


SETTLE_RETRIES = 3


async def _settle_batch(core: Core, principal: Principal, items: list[Settlement], statement: str,
                        args: Any) -> tuple[dict[uuid.UUID, asyncpg.Record], dict[int, Exception]]:
    """Run one batched settlement statement (a hot function: one round trip); then classify every item it
    missed. A miss was not changed by the statement, so reading its state afterwards tells why."""
    rows: list[asyncpg.Record] = []
    for attempt in range(SETTLE_RETRIES):
        try:
            rows = await core.db.hot(principal.org_id, statement, principal.org_id, *args) if args[0] else []
            break
        except asyncpg.DeadlockDetectedError:
            # Row locks are taken in join order; a concurrent sweep may lock the same rows in another order.
            if attempt == SETTLE_RETRIES - 1:
                raise
    done = {r["id"]: r for r in rows}
    misses: dict[int, Exception] = {}
    if len(done) < len(items):
        async with core.db.tenant(principal.org_id) as conn:
            for index, item in enumerate(items):
                if item.job_id not in done:
                    misses[index] = await classify_lease_miss(conn, principal, item.job_id, item.worker_id,
                                                              item.lease_id)
    return done, misses


async def complete_jobs(core: Core, principal: Principal, items: list[Settlement]) -> list[Exception | None]:
    """Complete many jobs in one statement with per-job fencing. One outcome per item, in order: None when
    the job was completed, else the error `complete_job` would have raised. Ids must be unique."""
    outcomes: list[Exception | None] = [None] * len(items)
    batch: list[tuple[int, Settlement, uuid.UUID]] = []
    hard_cap = core.settings.queue_max_payload_size_bytes
    for index, item in enumerate(items):
        try:
            if item.result is not None and raw_size(item.result) > hard_cap:
                core.quotas.check_payload(principal, raw_size(item.result))
            check_storable_json(item.result, "result")
        except Exception as exc:
            outcomes[index] = exc
            continue
        batch.append((index, item, _lease_uuid(item.lease_id) or _NO_LEASE))
    if not batch:
        return outcomes
    args = ([i.job_id for _, i, _ in batch], [i.worker_id for _, i, _ in batch],
            [lease for _, _, lease in batch], [i.result for _, i, _ in batch], _scope(principal))
    done, misses = await _settle_batch(core, principal, [i for _, i, _ in batch], "complete_jobs_batch", args)
    for position, miss in misses.items():
        outcomes[batch[position][0]] = miss
    events = completion_events(core, principal.org_id)
    for _, item, _ in batch:
        row = done.get(item.job_id)
        if row is not None:
            after_complete(core, principal.org_id, row, item.result, events)
    follow_up = [r for r in done.values() if r["waiting_dependents"] or r["workflow_id"] is not None]
    if follow_up:
        from . import workflows

        await workflows.after_settled(core, principal.org_id, follow_up)
    return outcomes


async def fail_jobs(
    core: Core, principal: Principal, items: list[Settlement]
) -> list[FailOutcome | Exception]:
    """Fail many jobs in one statement with per-job fencing (the rules of `fail_job` per item). One outcome
    per item, in order. Ids must be unique."""
    s = core.settings
    leases = [_lease_uuid(i.lease_id) or _NO_LEASE for i in items]
    args = ([i.job_id for i in items], [i.worker_id for i in items], leases, [i.error for i in items],
            [i.retry for i in items], s.retry_backoff_base_secs, s.retry_backoff_max_secs, s.retry_jitter,
            _scope(principal))
    done, misses = await _settle_batch(core, principal, items, "fail_jobs_batch", args)
    outcomes: list[FailOutcome | Exception] = []
    for index, item in enumerate(items):
        row = done.get(item.job_id)
        if row is None:
            outcomes.append(misses[index])
            continue
        after_fail(core, principal.org_id, row, item.error)
        outcomes.append(FailOutcome(
            will_retry=bool(row["will_retry"]),
            retry_count=int(row["retry_count"]),
            next_retry_at=row["scheduled_at"] if row["will_retry"] else None,
            delay_secs=int(row["delay_secs"]),
        ))
    dead = [r for r in done.values() if not r["will_retry"]]
    if dead:
        from . import workflows

        await workflows.after_settled(core, principal.org_id, dead)  # failure cascade (transition 12)
    return outcomes


# A lease that no job has: a missing or malformed lease still goes through the statement (and misses).
_NO_LEASE = uuid.UUID(int=0)


async def release_jobs(core: Core, org_id: uuid.UUID, worker_id: str, job_ids: list[uuid.UUID]) -> int:
    """Transition 10 for claimed jobs that never reached their worker (a stream broke before delivery):
    back to pending at once, lease and worker cleared, no retry used. Returns how many were released."""
    if not job_ids:
        return 0
    async with core.db.tenant(org_id) as conn:
        rows = await conn.fetch(Q.release_worker_jobs, org_id, worker_id, job_ids)
    for r in rows:
        core.bus.status_change(org_id, r["id"], r["queue_name"], "processing", "pending")
    core.wakeups.notify_many(org_id, {r["queue_name"] for r in rows})
    return len(rows)


async def queue_stats(core: Core, principal: Principal, queue_name: str) -> dict[str, int]:
    """Counts by status of one queue, `total`, and `max_age_ms` (age of the oldest pending job, 0 if none)."""
    principal.require_queue(queue_name)
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.queue_stats_with_age, principal.org_id, queue_name)
    return {k: int(row[k]) for k in ("pending", "scheduled", "processing", "completed", "failed",
                                      "deadletter", "total", "max_age_ms")}
