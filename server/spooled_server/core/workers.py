"""The worker registry (semantics.md §11): register, heartbeat, deregister, drain, reads.

The registry serves monitoring and draining; claims never need a registered worker. REST and gRPC call the
same functions. Events are published only after the transaction commits.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec

from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import Conflict, NotFound, ValidationFailed
from .jobs import ts
from .queues import scope_regexes
from .webhooks import enqueue_event

WORKER_STATUSES = ("healthy", "degraded", "draining", "offline")
MAX_METADATA_BYTES = 65536


def _metadata(value: Any, field: str = "metadata") -> msgspec.Raw | None:
    if value is None:
        return None
    if isinstance(value, msgspec.Raw):
        raw = value
        if bytes(raw).lstrip()[:1] != b"{":
            raise ValidationFailed(field, "must be an object", rule="type")
    else:
        if not isinstance(value, dict):
            raise ValidationFailed(field, "must be an object", rule="type")
        raw = msgspec.Raw(msgspec.json.encode(value))
    if len(bytes(raw)) > MAX_METADATA_BYTES:
        raise ValidationFailed(field, "must be at most 64 KB serialized", rule="length")
    return raw


async def register_worker(
    core: Core,
    principal: Principal,
    *,
    worker_id: str | None,
    queue_name: str,
    hostname: str,
    worker_type: str | None = None,
    max_concurrency: int = 5,
    metadata: dict[str, Any] | None = None,
    version: str | None = None,
    queue_max_len: int = 100,
) -> dict[str, Any]:
    """Register (or re-register) a worker. Raises Conflict when another organization owns `worker_id`,
    AccessDenied outside the key's scope, QuotaExceeded at the `workers` cap, ValidationFailed.

    An empty `worker_id` means none: the server mints a UUID. `max_concurrency` is checked against 1..1000
    here (gRPC clamps to that); REST narrows it to 1..100 before calling.
    """
    if worker_id == "":
        worker_id = None
    if worker_id is not None:
        v.text(worker_id, "worker_id", 1, 128, v.WORKER_ID)
    v.queue_name(queue_name, max_len=queue_max_len)
    v.text(hostname, "hostname", 1, 255, v.HOSTNAME)
    v.opt_text(worker_type, "worker_type", 0, 50)
    v.opt_text(version, "version", 0, 50)
    v.int_range(max_concurrency, "max_concurrency", 1, 1000)
    meta = _metadata(metadata) or msgspec.Raw(b"{}")
    principal.require_queue(queue_name)

    if worker_id is None:
        worker_id = str(uuid.uuid4())
    else:
        # Worker ids are global keys and row-level security hides other organizations' rows: ask narrowly.
        async with core.db.maintenance(transaction=False) as conn:
            owner = await conn.fetchval(Q.worker_owner, worker_id)
        if owner is not None and owner != principal.org_id:
            raise Conflict(f"Worker id '{worker_id}' is already registered by another organization")

    limits = core.quotas.limits(principal)
    async with core.db.tenant(principal.org_id) as conn:
        if limits.max_workers is not None:
            await conn.execute(Q.lock_worker_quota, principal.org_id)
            usage = await conn.fetchrow(Q.worker_quota_usage, principal.org_id, worker_id)
            if not usage["mine"]:
                await core.quotas.check_count(principal, "workers", "max_workers", int(usage["active"]))
        try:
            row = await conn.fetchrow(
                Q.upsert_worker,
                worker_id,
                principal.org_id,
                queue_name,
                hostname,
                worker_type,
                max_concurrency,
                meta,
                version,
            )
        except asyncpg.InsufficientPrivilegeError:
            row = None  # another organization registered this id between our check and the upsert
        if row is None:
            raise Conflict(f"Worker id '{worker_id}' is already registered by another organization")
        await enqueue_event(
            conn,
            principal.org_id,
            "worker.registered",
            {"worker_id": worker_id, "queue_name": queue_name, "hostname": hostname},
        )
    core.bus.publish(
        principal.org_id,
        "WorkerRegistered",
        {"worker_id": worker_id, "queue_name": queue_name, "hostname": hostname},
    )
    return {
        "id": worker_id,
        "queue_name": queue_name,
        "lease_duration_secs": core.settings.worker_lease_duration_secs,
        "heartbeat_interval_secs": core.settings.worker_heartbeat_interval_secs,
    }


async def heartbeat_worker(
    core: Core,
    principal: Principal,
    worker_id: str,
    *,
    current_jobs: int,
    status: str | None,
    metadata: dict[str, Any] | None,
) -> tuple[bool, bool]:
    """Store a heartbeat; returns (acknowledged, should_drain); (False, False) for an unknown worker or one
    outside the key's scope.

    `status` None or not a worker status means `healthy` (the gRPC rule; REST rejects bad values first).
    `metadata` None keeps the stored metadata; an object replaces it.
    """
    if status not in WORKER_STATUSES:
        status = "healthy"
    meta = _metadata(metadata)
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(
            Q.heartbeat_worker,
            worker_id,
            principal.org_id,
            max(0, int(current_jobs)),
            status,
            meta,
            scope_regexes(principal),
        )
    if row is None:
        return False, False
    should_drain = row["status"] == "draining" or bool(row["queue_blocked"])
    core.bus.publish(
        principal.org_id,
        "WorkerHeartbeat",
        {
            "worker_id": worker_id,
            "status": row["status"],
            "current_job_id": None if row["current_job_id"] is None else str(row["current_job_id"]),
        },
    )
    return True, should_drain


async def deregister_worker(core: Core, principal: Principal, worker_id: str) -> int | None:
    """Mark the worker offline and give its processing jobs back to pending without using a retry
    (transition 10). Returns how many jobs were released, or None for an unknown worker."""
    async with core.db.tenant(principal.org_id) as conn:
        worker = await conn.fetchrow(
            Q.mark_worker_offline, worker_id, principal.org_id, scope_regexes(principal)
        )
        if worker is None:
            return None
        released = await conn.fetch(Q.release_worker_jobs, principal.org_id, worker_id, None)
        await enqueue_event(
            conn,
            principal.org_id,
            "worker.deregistered",
            {"worker_id": worker_id, "queue_name": worker["queue_name"], "released_jobs": len(released)},
        )
    queues = set()
    for r in released:
        queues.add(r["queue_name"])
        core.bus.status_change(principal.org_id, r["id"], r["queue_name"], "processing", "pending")
    core.wakeups.notify_many(principal.org_id, queues)
    core.bus.publish(
        principal.org_id,
        "WorkerDeregistered",
        {
            "worker_id": worker_id,
            "queue_name": worker["queue_name"],
            "released_jobs": len(released),
        },
    )
    return len(released)


async def drain_worker(core: Core, principal: Principal, worker_id: str) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.drain_worker, worker_id, principal.org_id, scope_regexes(principal))
    if row is None:
        raise NotFound()
    return worker_to_wire(row)


async def get_worker(core: Core, principal: Principal, worker_id: str) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.get_worker, worker_id, principal.org_id, scope_regexes(principal))
    if row is None:
        raise NotFound()
    return worker_to_wire(row)


async def list_workers(
    core: Core, principal: Principal, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.list_workers, principal.org_id, scope_regexes(principal), limit, offset)
    return [
        {
            "id": r["id"],
            "queue_name": r["queue_name"],
            "hostname": r["hostname"],
            "status": r["status"],
            "current_jobs": r["current_jobs"],
            "max_concurrency": r["max_concurrency"],
            "last_heartbeat": ts(r["last_heartbeat"]),
        }
        for r in rows
    ]


def worker_to_wire(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": r["id"],
        "organization_id": str(r["organization_id"]),
        "queue_name": r["queue_name"],
        "queue_names": list(r["queue_names"] or [r["queue_name"]]),
        "hostname": r["hostname"],
        "worker_type": r["worker_type"],
        "max_concurrency": r["max_concurrency"],
        "current_jobs": r["current_jobs"],
        "status": r["status"],
        "last_heartbeat": ts(r["last_heartbeat"]),
        "metadata": r["metadata"] if r["metadata"] is not None else None,
        "version": r["version"],
        "registered_at": ts(r["registered_at"]),
        "updated_at": ts(r["updated_at"]),
    }
