"""Workflows (rest.md §12, semantics.md §9): DAGs of jobs created in one transaction, released as their
dependencies complete, cancelled downstream when a dependency fails, finalized when nothing is left to run.

Release and cascade happen right after the transaction that finished a job (`after_complete`,
`after_deadletter`, `after_cancel`, called by core/jobs.py), each in a short transaction of its own. Running
them after the commit, with fresh snapshots, is what makes them race-free: when two parents of one job finish
at the same moment, neither completing statement sees the other's change, but whichever hook runs last sees
both. Workflow counters and status are recomputed under the workflow's row lock for the same reason. A 10 s
sweep (`sweep`) repeats all three across organizations as a safety net (crashes, lease-expiry dead-letters).
Lock order is always jobs first, then the workflow row.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import BadRequest, Conflict, NotFound, ValidationFailed
from .jobs import _after_create, check_storable_json, raw_size, ts
from .quotas import quota_error

log = logging.getLogger(__name__)

NULL_JSON = msgspec.Raw(b"null")
MAX_JOBS = 100
WORKFLOW_NAME = re.compile(r"^[\w ().-]+$")
JOB_KEY = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
MAX_CASCADE_LEVELS = 10_000  # a DAG cannot be deeper than its job count; this only bounds a broken graph


# --- create ----------------------------------------------------------------------------------------------


@dataclass
class WorkflowJobSpec:
    key: Any
    queue_name: Any
    payload: msgspec.Raw
    depends_on: list[Any] = field(default_factory=list)
    dependency_mode: Any = "all"
    priority: Any = 0
    max_retries: Any = None
    timeout_seconds: Any = None
    expires_at: Any = None


@dataclass
class NewWorkflow:
    name: Any
    jobs: list[WorkflowJobSpec]
    description: Any = None
    metadata: msgspec.Raw | None = None


@dataclass
class _CleanJob:
    key: str
    queue_name: str
    payload: msgspec.Raw
    depends_on: list[str]
    mode: str
    priority: int
    max_retries: int | None
    timeout_seconds: int | None
    expires_at: datetime | None


def _find_cycle(jobs: list[_CleanJob]) -> list[str] | None:
    """A dependency cycle as a list of keys (first key repeated at the end), or None."""
    deps = {j.key: j.depends_on for j in jobs}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(key: str) -> list[str] | None:
        state[key] = 1
        path.append(key)
        for parent in deps[key]:
            if state.get(parent) == 1:
                return [*path[path.index(parent) :], parent]
            if parent not in state:
                found = visit(parent)
                if found:
                    return found
        path.pop()
        state[key] = 2
        return None

    for job in jobs:
        if job.key not in state:
            found = visit(job.key)
            if found:
                return found
    return None


def validate_workflow(
    core: Core, principal: Principal, wf: NewWorkflow
) -> tuple[str, str | None, list[_CleanJob]]:
    name = v.text(wf.name, "name", 1, 255)
    if not WORKFLOW_NAME.match(name):
        raise ValidationFailed(
            "name", "may contain only letters, digits, spaces, '_', '-', '.', '(' and ')'", rule="pattern"
        )
    description = v.opt_text(wf.description, "description", 0, 1000)
    if wf.metadata is not None:
        kind = bytes(wf.metadata).lstrip()[:1]
        if kind not in (b"{", b"n"):
            raise ValidationFailed("metadata", "must be an object", rule="type")
        if raw_size(wf.metadata) > 65536:
            raise ValidationFailed("metadata", "must be at most 64 KB serialized", rule="length")
        check_storable_json(wf.metadata, "metadata")
    if not 1 <= len(wf.jobs) <= MAX_JOBS:
        raise ValidationFailed("jobs", f"must contain 1..{MAX_JOBS} jobs", rule="length")
    clean: list[_CleanJob] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(wf.jobs):
        at = f"jobs[{i}]"
        if not isinstance(spec.key, str) or not JOB_KEY.match(spec.key):
            raise ValidationFailed(
                f"{at}.key", "must be 1-100 characters of A-Z, a-z, 0-9, '_' and '-'", rule="pattern"
            )
        if spec.key in seen:
            raise ValidationFailed(
                f"{at}.key", f"duplicate key '{spec.key}' (also jobs[{seen[spec.key]}])", rule="duplicate"
            )
        seen[spec.key] = i
        queue = v.queue_name(spec.queue_name, f"{at}.queue_name")
        principal.require_queue(queue)
        mode = spec.dependency_mode if spec.dependency_mode is not None else "all"
        if mode not in ("all", "any"):
            raise ValidationFailed(f"{at}.dependency_mode", "must be 'all' or 'any'", rule="enum")
        depends = spec.depends_on if spec.depends_on is not None else []
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise ValidationFailed(f"{at}.depends_on", "must be a list of job keys", rule="type")
        if len(set(depends)) != len(depends):
            raise ValidationFailed(f"{at}.depends_on", "lists a key twice", rule="duplicate")
        core.quotas.check_payload(principal, raw_size(spec.payload))
        check_storable_json(spec.payload, f"{at}.payload")
        clean.append(
            _CleanJob(
                key=spec.key,
                queue_name=queue,
                payload=spec.payload,
                depends_on=list(depends),
                mode=mode,
                priority=v.int_range(
                    spec.priority if spec.priority is not None else 0, f"{at}.priority", -100, 100
                ),
                max_retries=v.opt_int_range(spec.max_retries, f"{at}.max_retries", 0, 100),
                timeout_seconds=v.opt_int_range(spec.timeout_seconds, f"{at}.timeout_seconds", 1, 86400),
                expires_at=v.opt_timestamp(spec.expires_at, f"{at}.expires_at"),
            )
        )
    for i, job in enumerate(clean):
        for parent in job.depends_on:
            if parent == job.key:
                raise ValidationFailed(
                    f"jobs[{i}].depends_on", f"job '{job.key}' cannot depend on itself", rule="cycle"
                )
            if parent not in seen:
                raise ValidationFailed(
                    f"jobs[{i}].depends_on", f"unknown job key '{parent}'", rule="unknown_key"
                )
    cycle = _find_cycle(clean)
    if cycle:
        raise ValidationFailed("jobs", "dependency cycle: " + " -> ".join(reversed(cycle)), rule="cycle")
    return name, description, clean


async def create_workflow(core: Core, principal: Principal, wf: NewWorkflow) -> dict[str, Any]:
    if core.quotas.limits(principal).max_workflows == 0:
        await core.quotas.check_count(principal, "workflows", "max_workflows", 0)  # FEATURE_DISABLED
    name, description, jobs = validate_workflow(core, principal, wf)
    workflow_id = uuid.uuid4()
    ids = {j.key: uuid.uuid4() for j in jobs}
    s = core.settings
    async with core.db.tenant(principal.org_id) as conn:
        limits = core.quotas.limits(principal)
        if limits.max_workflows is not None:
            await conn.execute(Q.lock_workflow_quota, principal.org_id)
            open_count = int(await conn.fetchval(Q.count_open_workflows, principal.org_id))
            await core.quotas.check_count(principal, "workflows", "max_workflows", open_count)
        await core.quotas.reserve_jobs(conn, principal, len(jobs))
        metadata = wf.metadata if wf.metadata is not None and bytes(wf.metadata).strip() != b"null" else None
        await conn.execute(
            Q.insert_workflow, workflow_id, principal.org_id, name, description, metadata, len(jobs)
        )
        rows = await conn.fetch(
            Q.insert_workflow_jobs,
            principal.org_id,
            workflow_id,
            [ids[j.key] for j in jobs],
            [j.key for j in jobs],
            [j.queue_name for j in jobs],
            [j.payload for j in jobs],
            [j.priority for j in jobs],
            [j.max_retries for j in jobs],
            [j.timeout_seconds for j in jobs],
            [j.expires_at for j in jobs],
            [j.mode for j in jobs],
            [not j.depends_on for j in jobs],
            s.queue_default_max_retries,
            s.queue_default_timeout_secs,
        )
        children = [ids[j.key] for j in jobs for _ in j.depends_on]
        parents = [ids[p] for j in jobs for p in j.depends_on]
        if children:
            await conn.execute(Q.insert_workflow_edges, principal.org_id, children, parents)
    by_queue: dict[str, list[tuple[uuid.UUID, str, int]]] = defaultdict(list)
    for r in rows:
        by_queue[r["queue_name"]].append((r["id"], r["status"], r["priority"]))
    for queue, created in by_queue.items():
        _after_create(core, principal.org_id, queue, created)
    _kick_webhooks(core)
    return {
        "workflow_id": str(workflow_id),
        "job_ids": [{"key": j.key, "job_id": str(ids[j.key])} for j in jobs],
        "status": "pending",
    }


# --- release, cascade, finalization ----------------------------------------------------------------------


def _kick_webhooks(core: Core) -> None:
    # Deliveries were committed with the change (outbox); let this replica's dispatcher send them now.
    wake = getattr(getattr(core, "webhooks", None), "wake", None)
    if callable(wake):
        wake()


async def _cascade(
    conn: asyncpg.Connection, org_id: uuid.UUID | None, parents: list[uuid.UUID] | None
) -> list[asyncpg.Record]:
    """Cancel everything downstream of failed dependencies, level by level, in this transaction."""
    cancelled: list[asyncpg.Record] = []
    frontier: list[uuid.UUID] | None = parents
    for _ in range(MAX_CASCADE_LEVELS):
        if frontier is not None and not frontier:
            break
        rows = await conn.fetch(Q.cascade_cancel, org_id, frontier)
        if not rows:
            break
        cancelled.extend(rows)
        frontier = [r["id"] for r in rows]
    return cancelled


async def _refresh(
    conn: asyncpg.Connection, org_id: uuid.UUID, workflow_ids: Iterable[uuid.UUID]
) -> list[asyncpg.Record]:
    changed = []
    for wf in sorted(set(workflow_ids)):
        await conn.execute(Q.lock_workflow, wf, org_id)
        row = await conn.fetchrow(Q.refresh_workflow, wf, org_id)
        if row is not None:
            changed.append(row)
    return changed


def _publish_changes(
    core: Core,
    released: Iterable[asyncpg.Record],
    cancelled: Iterable[asyncpg.Record],
    changed_workflows: Iterable[asyncpg.Record],
) -> None:
    woken: set[tuple[Any, str]] = set()
    for r in released:
        woken.add((r["organization_id"], r["queue_name"]))
    for org, queue in woken:
        core.wakeups.notify(org, queue)
    any_outbox = False
    for r in cancelled:
        any_outbox = True
        core.bus.status_change(r["organization_id"], r["id"], r["queue_name"], r["old_status"], "cancelled")
    for w in changed_workflows:
        if w["status"] in ("completed", "failed") and w["old_status"] != w["status"]:
            any_outbox = True
    if any_outbox:
        _kick_webhooks(core)


async def after_complete(
    core: Core,
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    workflow_id: uuid.UUID | None,
    *,
    waiting_dependents: bool = True,
) -> None:
    """After a completion committed: open dependents the completing statement could not see as ready, and
    bring the workflow's counters and status up to date."""
    async with core.db.tenant(org_id) as conn:
        released = await conn.fetch(Q.release_dependents, org_id, [job_id]) if waiting_dependents else []
        wfs = {workflow_id} if workflow_id is not None else set()
        wfs.update(r["workflow_id"] for r in released if r["workflow_id"] is not None)
        changed = await _refresh(conn, org_id, wfs)
    _publish_changes(core, released, [], changed)


async def after_deadletter(
    core: Core, org_id: uuid.UUID, job_ids: list[uuid.UUID], workflow_ids: Iterable[uuid.UUID | None] = ()
) -> None:
    """After jobs were dead-lettered: cancel everything downstream (transition 12), then refresh workflows."""
    async with core.db.tenant(org_id) as conn:
        cancelled = await _cascade(conn, org_id, job_ids)
        wfs = {w for w in workflow_ids if w is not None}
        wfs.update(r["workflow_id"] for r in cancelled if r["workflow_id"] is not None)
        changed = await _refresh(conn, org_id, wfs)
    _publish_changes(core, [], cancelled, changed)


async def after_cancel(
    core: Core, org_id: uuid.UUID, job_id: uuid.UUID, workflow_id: uuid.UUID | None
) -> None:
    """A cancelled job counts as a failed dependency (§9): same cascade as a dead-letter."""
    try:
        await after_deadletter(core, org_id, [job_id], [workflow_id])
    except Exception:  # the cancel stands; the 10 s sweep repeats this work
        log.warning("post-cancel dependency work failed", exc_info=True)


async def mark_running(core: Core, org_id: uuid.UUID, rows: Iterable[asyncpg.Record]) -> None:
    """After a claim: workflows whose first job was claimed start running (workflow jobs only)."""
    wfs = {r["workflow_id"] for r in rows if r["workflow_id"] is not None}
    if not wfs:
        return
    try:
        async with core.db.tenant(org_id) as conn:
            await conn.execute(Q.workflows_mark_running, org_id, sorted(wfs))
    except Exception:  # the claim stands; the sweep brings the status up to date
        log.warning("could not mark workflows running", exc_info=True)


async def after_settled(core: Core, org_id: uuid.UUID, rows: Iterable[asyncpg.Record]) -> None:
    """After completions or failures committed (rows of complete_job / fail_job and their batch forms):
    release what the statement could not, cascade dead-letters, refresh workflows. Jobs with neither
    dependents nor a workflow cost nothing here."""
    dead: list[uuid.UUID] = []
    dead_wfs: set[uuid.UUID] = set()
    try:
        for r in rows:
            keys = r.keys()
            if "will_retry" in keys:  # a failure
                if not r["will_retry"]:
                    dead.append(r["id"])
                    if r["workflow_id"] is not None:
                        dead_wfs.add(r["workflow_id"])
                continue
            waiting = bool(r["waiting_dependents"]) if "waiting_dependents" in keys else True
            if waiting or r["workflow_id"] is not None:
                await after_complete(core, org_id, r["id"], r["workflow_id"], waiting_dependents=waiting)
        if dead:
            await after_deadletter(core, org_id, dead, dead_wfs)
    except Exception:  # the settlement stands; the 10 s sweep repeats this work
        log.warning("post-settlement dependency work failed", exc_info=True)


async def sweep(core: Core) -> dict[str, int]:
    """The 10 s safety net, all organizations: release, cascade (all levels), finalize stranded workflows."""
    async with core.db.maintenance() as conn:
        released = await conn.fetch(Q.release_dependents, None, None)
        cancelled = await _cascade(conn, None, None)
    by_org: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for r in [*released, *cancelled]:
        if r["workflow_id"] is not None:
            by_org[r["organization_id"]].add(r["workflow_id"])
    async with core.db.maintenance(transaction=False) as conn:
        for r in await conn.fetch(Q.stranded_workflows, 500):
            by_org[r["organization_id"]].add(r["id"])
    changed: list[asyncpg.Record] = []
    for org, wfs in by_org.items():
        async with core.db.maintenance_for(org) as conn:
            changed.extend(await _refresh(conn, org, wfs))
    _publish_changes(core, released, cancelled, changed)
    if released or cancelled or changed:
        log.info(
            "dependency sweep: %d released, %d cancelled, %d workflows updated",
            len(released),
            len(cancelled),
            len(changed),
        )
    return {"released": len(released), "cancelled": len(cancelled), "workflows": len(changed)}


# --- operator actions ------------------------------------------------------------------------------------


async def _visible(conn: asyncpg.Connection, principal: Principal, workflow_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(Q.get_workflow, workflow_id, principal.org_id)
    if row is None or not _in_scope(principal, row):
        raise NotFound()
    return row


def _in_scope(principal: Principal, row: asyncpg.Record) -> bool:
    if principal.unrestricted:
        return True
    return all(principal.can_access(q) for q in (row["queues"] or []) if q is not None)


async def cancel_workflow(core: Core, principal: Principal, workflow_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        current = await _visible(conn, principal, workflow_id)
        if current["status"] == "completed":
            raise Conflict("Workflow is already completed")
        cancelled = []
        if current["status"] != "cancelled":
            cancelled = await conn.fetch(Q.cancel_workflow_jobs, workflow_id, principal.org_id)
            await conn.execute(Q.lock_workflow, workflow_id, principal.org_id)
            await conn.execute(Q.set_workflow_cancelled, workflow_id, principal.org_id)
            await conn.fetchrow(Q.refresh_workflow, workflow_id, principal.org_id)
        row = await _visible(conn, principal, workflow_id)
    for r in cancelled:
        core.bus.status_change(principal.org_id, r["id"], r["queue_name"], r["old_status"], "cancelled")
    if cancelled:
        _kick_webhooks(core)
    return workflow_to_wire(row)


async def retry_workflow(core: Core, principal: Principal, workflow_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        current = await _visible(conn, principal, workflow_id)
        if current["status"] != "failed":
            raise BadRequest(f"Workflow can only be retried from failed status (it is {current['status']})")
        limits = core.quotas.limits(principal)
        if limits.max_active_jobs is not None:
            counts = await conn.fetchrow(Q.workflow_retry_counts, workflow_id, principal.org_id)
            if counts["active"] + counts["to_retry"] > limits.max_active_jobs:
                raise quota_error("active_jobs", int(counts["active"]), limits.max_active_jobs, limits)
        retried = await conn.fetch(Q.retry_workflow_jobs, workflow_id, principal.org_id)
        await conn.execute(Q.regate_workflow_jobs, workflow_id, principal.org_id)
        await conn.execute(Q.lock_workflow, workflow_id, principal.org_id)
        await conn.fetchrow(Q.refresh_workflow, workflow_id, principal.org_id)
        row = await _visible(conn, principal, workflow_id)
    queues = set()
    for r in retried:
        queues.add(r["queue_name"])
        core.bus.status_change(principal.org_id, r["id"], r["queue_name"], r["old_status"], "pending")
    core.wakeups.notify_many(principal.org_id, queues)
    if retried:
        _kick_webhooks(core)
    return workflow_to_wire(row)


# --- reads -----------------------------------------------------------------------------------------------


def workflow_to_wire(r: asyncpg.Record) -> dict[str, Any]:
    total = int(r["total_jobs"])
    completed = int(r["completed"] or 0)
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "description": r["description"],
        "status": r["status"],
        "total_jobs": total,
        "completed_jobs": completed,
        "failed_jobs": int(r["failed"] or 0),
        "progress_percent": round(completed * 100.0 / total, 2) if total else 0.0,
        "created_at": ts(r["created_at"]),
        "started_at": ts(r["started_at"]),
        "completed_at": ts(r["completed_at"]),
        "metadata": r["metadata"] if r["metadata"] is not None else NULL_JSON,
    }


def _json(value: Any) -> Any:
    return value if value is not None else NULL_JSON


def _detail_job(j: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(j["id"]),
        "key": j["workflow_key"],
        "organization_id": str(j["organization_id"]),
        "queue": j["queue_name"],
        "job_type": "job",
        "payload": _json(j["payload"]),
        "status": j["status"],
        "priority": int(j["priority"]),
        "attempt": j["retry_count"],
        "max_retries": j["max_retries"],
        "backoff_type": "exponential",
        "timeout_ms": int(j["timeout_seconds"]) * 1000,
        "created_at": ts(j["created_at"]),
        "scheduled_at": ts(j["scheduled_at"]),
        "started_at": ts(j["started_at"]),
        "completed_at": ts(j["completed_at"]),
        "failed_at": None,
        "next_retry_at": None,
        "result": _json(j["result"]),
        "error": None
        if j["last_error"] is None
        else {"error_type": "JobError", "message": j["last_error"], "stack": None},
        "metadata": _json(j["tags"]),
        "workflow_id": str(j["workflow_id"]),
        "parent_job_id": None if j["parent_job_id"] is None else str(j["parent_job_id"]),
    }


def _workflow_job(j: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(j["id"]),
        "key": j["workflow_key"],
        "workflow_id": str(j["workflow_id"]),
        "queue_name": j["queue_name"],
        "status": j["status"],
        "payload": _json(j["payload"]),
        "result": _json(j["result"]),
        "priority": j["priority"],
        "retry_count": j["retry_count"],
        "max_retries": j["max_retries"],
        "last_error": j["last_error"],
        "depends_on": list(j["depends_on"] or []),
        "dependency_mode": j["dependency_mode"],
        "dependencies_met": True if j["dependencies_met"] is None else bool(j["dependencies_met"]),
        "progress": j["progress"],
        "created_at": ts(j["created_at"]),
        "started_at": ts(j["started_at"]),
        "completed_at": ts(j["completed_at"]),
    }


async def list_workflows(
    core: Core, principal: Principal, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        status = None  # invalid filter values are ignored, as on the job list
    async with core.db.tenant(principal.org_id) as conn:
        if principal.unrestricted:
            rows = await conn.fetch(Q.list_workflows, principal.org_id, status, limit, offset)
            return [workflow_to_wire(r) for r in rows]
        rows = await conn.fetch(Q.list_workflows, principal.org_id, status, 1_000_000, 0)
    visible = [r for r in rows if _in_scope(principal, r)]
    return [workflow_to_wire(r) for r in visible[offset : offset + limit]]


async def get_workflow(core: Core, principal: Principal, workflow_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        w = await _visible(conn, principal, workflow_id)
        jobs = await conn.fetch(Q.workflow_jobs, workflow_id, principal.org_id)
        edges = await conn.fetch(Q.workflow_edges, workflow_id, principal.org_id)
    return {
        "id": str(w["id"]),
        "organization_id": str(w["organization_id"]),
        "name": w["name"],
        "description": w["description"],
        "status": w["status"],
        "jobs": [_detail_job(j) for j in jobs],
        "dependencies": [
            {
                "parent_job_id": str(e["parent_job_id"]),
                "child_job_id": str(e["child_job_id"]),
                "dependency_type": e["dependency_mode"],
            }
            for e in edges
        ],
        "progress": {
            "total": int(w["total_jobs"]),
            "completed": int(w["completed"] or 0),
            "failed": int(w["failed"] or 0),
            "pending": int(w["pending"] or 0),
            "processing": int(w["processing"] or 0),
        },
        "created_at": ts(w["created_at"]),
        "started_at": ts(w["started_at"]),
        "completed_at": ts(w["completed_at"]),
        "metadata": _json(w["metadata"]),
    }


async def _jobs_of(core: Core, principal: Principal, workflow_id: uuid.UUID) -> list[asyncpg.Record]:
    async with core.db.tenant(principal.org_id) as conn:
        await _visible(conn, principal, workflow_id)
        return list(await conn.fetch(Q.workflow_jobs, workflow_id, principal.org_id))


async def list_workflow_jobs(
    core: Core, principal: Principal, workflow_id: uuid.UUID
) -> list[dict[str, Any]]:
    return [_workflow_job(j) for j in await _jobs_of(core, principal, workflow_id)]


async def workflow_jobs_status(
    core: Core, principal: Principal, workflow_id: uuid.UUID
) -> list[dict[str, Any]]:
    return [
        {"key": j["workflow_key"], "job_id": str(j["id"]), "status": j["status"], "progress": j["progress"]}
        for j in await _jobs_of(core, principal, workflow_id)
    ]


async def get_workflow_job(
    core: Core, principal: Principal, workflow_id: uuid.UUID, job_id: uuid.UUID
) -> dict[str, Any]:
    for j in await _jobs_of(core, principal, workflow_id):
        if j["id"] == job_id:
            return _workflow_job(j)
    raise NotFound()
