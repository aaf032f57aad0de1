"""Usage reports (semantics.md §12): what an organization uses against its plan, and warnings near a cap.

Schedules, workflows and outgoing webhooks are counted once their tables exist (later migrations add them);
until then they count 0.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from ..db.queries import Q
from .plans import PlanLimits, wire_tier

# UsageInfo key -> the PlanLimits field that caps it.
RESOURCES: tuple[tuple[str, str], ...] = (
    ("jobs_today", "max_jobs_per_day"),
    ("active_jobs", "max_active_jobs"),
    ("queues", "max_queues"),
    ("workers", "max_workers"),
    ("api_keys", "max_api_keys"),
    ("schedules", "max_schedules"),
    ("workflows", "max_workflows"),
    ("webhooks", "max_webhooks"),
)
LABELS = {
    "jobs_today": "Jobs today",
    "active_jobs": "Active jobs",
    "queues": "Queues",
    "workers": "Workers",
    "api_keys": "API keys",
    "schedules": "Schedules",
    "workflows": "Active workflows",
    "webhooks": "Webhooks",
}


@dataclass(frozen=True)
class OptionalTables:
    schedules: bool
    workflows: bool
    webhooks: bool


_known: OptionalTables | None = None


async def optional_tables(conn: asyncpg.Connection) -> OptionalTables:
    """Which later-feature tables exist. Remembered once all exist (migrations only ever add them)."""
    global _known
    if _known is not None:
        return _known
    row = await conn.fetchrow(Q.optional_tables)
    found = OptionalTables(bool(row["schedules"]), bool(row["workflows"]), bool(row["webhooks"]))
    if found.schedules and found.workflows and found.webhooks:
        _known = found
    return found


def today() -> date:
    return datetime.now(UTC).date()


async def usage_counts(conn: asyncpg.Connection, org_id: uuid.UUID) -> dict[str, int]:
    """Every counter of UsageInfo for one organization, read in the caller's transaction."""
    tables = await optional_tables(conn)
    schedules = 0
    schedule_queues: list[str] = []
    if tables.schedules:
        row = await conn.fetchrow(Q.usage_schedules, org_id)
        schedules, schedule_queues = int(row["n"]), list(row["queues"] or [])
    row = await conn.fetchrow(Q.usage_counts, org_id, today(), schedule_queues)
    counts = {k: int(row[k]) for k in ("jobs_today", "active_jobs", "queues", "workers", "api_keys")}
    counts["schedules"] = schedules
    counts["workflows"] = int(await conn.fetchval(Q.usage_workflows, org_id)) if tables.workflows else 0
    counts["webhooks"] = int(await conn.fetchval(Q.usage_webhooks, org_id)) if tables.webhooks else 0
    return counts


def usage_item(current: int, limit: int | None) -> dict[str, Any]:
    if limit is None:
        return {"current": current, "limit": None, "percentage": None, "is_disabled": False}
    if limit == 0:
        return {"current": current, "limit": 0, "percentage": None, "is_disabled": True}
    return {
        "current": current,
        "limit": limit,
        "percentage": round(current * 100.0 / limit, 2),
        "is_disabled": False,
    }


def warnings(limits: PlanLimits, counts: dict[str, int]) -> list[dict[str, Any]]:
    """A warning at ≥ 50 % of a cap on `free`, ≥ 80 % elsewhere; `critical` once the cap is reached."""
    threshold = 50.0 if limits.tier == "free" else 80.0
    found = []
    for resource, field in RESOURCES:
        limit = getattr(limits, field)
        if not limit:
            continue
        current = counts.get(resource, 0)
        percent = current * 100.0 / limit
        if percent < threshold:
            continue
        severity = "critical" if percent >= 100.0 else "warning"
        if severity == "critical":
            message = (
                f"{LABELS[resource]} limit reached ({current}/{limit}) on the {limits.display_name} plan"
            )
        else:
            message = (
                f"{LABELS[resource]} at {percent:.0f}% of the {limits.display_name} plan limit "
                f"({current}/{limit})"
            )
        found.append({"resource": resource, "message": message, "severity": severity})
    return found


def usage_info(
    limits: PlanLimits, counts: dict[str, int], *, stored_tier: str, admin: bool
) -> dict[str, Any]:
    """UsageInfo (rest.md §3): tenant routes show `enterprise` for `unlimited`; admin, the stored tier."""
    return {
        "plan": stored_tier if admin else wire_tier(stored_tier),
        "plan_display_name": limits.display_name,
        "limits": limits.to_dict(),
        "usage": {
            resource: usage_item(counts.get(resource, 0), getattr(limits, field))
            for resource, field in RESOURCES
        },
        "warnings": warnings(limits, counts),
    }


# --- the dashboard's numbers (GET /dashboard) ------------------------------------------------------------


def like_patterns(queues: tuple[str, ...]) -> list[str]:
    """A scoped key's queue globs (`*` only) as SQL LIKE patterns."""
    escaped = (q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for q in queues)
    return [q.replace("*", "%") for q in escaped]


async def dashboard_numbers(
    conn: asyncpg.Connection, org_id: uuid.UUID, queues: tuple[str, ...] | None
) -> dict[str, Any]:
    """Jobs, queues, workers and the last hour of one organization (within a scoped key's queues)."""
    scope = None if queues is None else like_patterns(queues)
    jobs = await conn.fetchrow(Q.dashboard_jobs, org_id, scope)
    queue_rows = await conn.fetch(Q.dashboard_queues, org_id, scope)
    workers = await conn.fetchrow(Q.dashboard_workers, org_id, scope)

    def ms(value: Any) -> float | None:
        return None if value is None else round(float(value), 3)

    return {
        "jobs": {
            "total": int(jobs["total"]),
            "pending": int(jobs["pending"]),
            "processing": int(jobs["processing"]),
            "completed_24h": int(jobs["completed_24h"]),
            "failed_24h": int(jobs["failed_24h"]),
            "deadletter": int(jobs["deadletter"]),
            "avg_wait_time_ms": ms(jobs["avg_wait_ms"]),
            "avg_processing_time_ms": ms(jobs["avg_processing_ms"]),
        },
        "queues": [
            {
                "name": r["name"],
                "pending": int(r["pending"]),
                "processing": int(r["processing"]),
                "paused": bool(r["paused"]),
            }
            for r in queue_rows
        ],
        "workers": {
            "total": int(workers["total"]),
            "healthy": int(workers["healthy"]),
            "unhealthy": int(workers["total"]) - int(workers["healthy"]),
        },
        "recent_activity": {
            "jobs_created_1h": int(jobs["created_1h"]),
            "jobs_completed_1h": int(jobs["completed_1h"]),
            "jobs_failed_1h": int(jobs["failed_1h"]),
        },
    }
