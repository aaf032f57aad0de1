"""Job dependencies (rest.md §7, semantics.md §9): read a job's edges, add edges to a waiting job.

Edge changes of one organization are serialized by an advisory lock, so the cycle check (a recursive walk
over the existing edges) cannot be raced by a concurrent addition. Self edges and cycle-closing edges are
skipped silently.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..db.queries import Q
from . import jobs
from .auth import Principal
from .context import Core
from .errors import Conflict, NotFound, ValidationFailed

MODES = ("all", "any")


def _dep(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "job_id": str(r["job_id"]),
        "queue_name": r["queue_name"],
        "status": r["status"],
        "completed": r["status"] == "completed",
    }


async def _edges(
    conn: asyncpg.Connection, principal: Principal, job_id: uuid.UUID, query: str
) -> list[dict[str, Any]]:
    rows = await conn.fetch(query, job_id, principal.org_id)
    return [_dep(r) for r in rows if principal.can_access(r["queue_name"])]


async def get_dependencies(core: Core, principal: Principal, job_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.get_job, job_id, principal.org_id)
        if row is None or not principal.can_access(row["queue_name"]):
            raise NotFound()
        dependencies = await _edges(conn, principal, job_id, Q.job_dependency_list)
        dependents = await _edges(conn, principal, job_id, Q.job_dependent_list)
    job = jobs.job_to_wire(row)
    return {
        "job_id": job["id"],
        "status": job["status"],
        "dependency_mode": job["dependency_mode"],
        "dependencies_met": job["dependencies_met"],
        "job": job,
        "dependencies": dependencies,
        "dependents": dependents,
    }


async def add_dependencies(
    core: Core, principal: Principal, job_id: uuid.UUID, depends_on: list[Any], mode: str = "all"
) -> dict[str, Any]:
    """Make `job_id` wait for `depends_on` (1..100 job ids of the organization) under `mode`."""
    if mode not in MODES:
        raise ValidationFailed("dependency_mode", "must be 'all' or 'any'", rule="enum")
    if not 1 <= len(depends_on) <= 100:
        raise ValidationFailed("depends_on", "must contain 1..100 job ids", rule="length")
    wanted: list[uuid.UUID] = []
    for value in depends_on:
        if not isinstance(value, str):
            raise ValidationFailed("depends_on", "must contain job ids (strings)", rule="type")
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise NotFound(f"Job {value} not found") from None
        if parsed not in wanted:
            wanted.append(parsed)
    async with core.db.tenant(principal.org_id) as conn:
        await conn.execute(Q.lock_dependency_edges, principal.org_id)
        target = await conn.fetchrow(Q.dependency_target, job_id, principal.org_id)
        if target is None or not principal.can_access(target["queue_name"]):
            raise NotFound()
        found = {
            r["id"]: r["queue_name"]
            for r in await conn.fetch(Q.dependency_candidates, principal.org_id, wanted)
        }
        for dep in wanted:
            if dep not in found or not principal.can_access(found[dep]):
                raise NotFound(f"Job {dep} not found")
        if target["status"] not in ("pending", "scheduled"):
            raise Conflict(
                f"Dependencies can only be added to pending or scheduled jobs (status {target['status']})"
            )
        added = int(await conn.fetchval(Q.add_dependency_edges, principal.org_id, job_id, wanted))
        gate = await conn.fetchrow(Q.recompute_dependencies_met, principal.org_id, job_id, mode)
        dependencies = await _edges(conn, principal, job_id, Q.job_dependency_list)
    met = bool(gate["dependencies_met"])
    if met:
        core.wakeups.notify(principal.org_id, gate["queue_name"])
    return {
        "job_id": str(job_id),
        "success": True,
        "dependencies_added": added,
        "added_count": added,
        "added": added,
        "dependencies_met": met,
        "dependencies": dependencies,
    }
