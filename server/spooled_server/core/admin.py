"""The operator's surface (rest.md §17): every organization, plans, usage resets and server-wide numbers.

Admin routes run under the maintenance role (they span organizations) and show the stored plan tier,
including `unlimited` and `deleted`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import asyncpg

from ..config import Settings
from ..db.queries import Q
from . import validation as v
from .api_keys import validate_expiry, validate_name, validate_queues, validate_rate_limit
from .errors import NotFound, Unauthorized, ValidationFailed
from .jobs import STATUSES
from .orgs import (
    IssuedKey,
    create_organization,
    hard_delete,
    insert_api_key,
    json_object,
    merge_settings,
    organization_to_wire,
    validate_email,
    validate_settings,
)
from .plans import TIERS, PlanLimits
from .usage import optional_tables, today, usage_counts, usage_info

SORT_COLUMNS = ("created_at", "name", "slug", "plan_tier", "updated_at")
_INT_ONLY_LIMITS = (
    "max_payload_size_bytes",
    "rate_limit_requests_per_second",
    "rate_limit_burst",
    "job_retention_days",
    "history_retention_days",
)
LIMIT_FIELDS = tuple(f for f in PlanLimits.__dataclass_fields__ if f not in ("tier", "display_name"))


class AdminUnauthorized(Unauthorized):
    """401 with one of the admin codes: ADMIN_NOT_CONFIGURED, MISSING_ADMIN_KEY, INVALID_HEADER,
    INVALID_ADMIN_KEY."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def verify_admin_key(settings: Settings, given: str | None) -> None:
    """`X-Admin-Key` against ADMIN_API_KEY, compared as SHA-256 digests in constant time."""
    if not settings.admin_api_key:
        raise AdminUnauthorized("ADMIN_NOT_CONFIGURED", "Admin API is not configured on this server")
    if given is None:
        raise AdminUnauthorized("MISSING_ADMIN_KEY", "Missing X-Admin-Key header")
    value = given.strip()
    if not value or not value.isascii() or not value.isprintable():
        raise AdminUnauthorized("INVALID_HEADER", "X-Admin-Key header is not valid")
    expected = hashlib.sha256(settings.admin_api_key.encode()).digest()
    if not hmac.compare_digest(hashlib.sha256(value.encode()).digest(), expected):
        raise AdminUnauthorized("INVALID_ADMIN_KEY", "Invalid admin key")


def validate_tier(value: Any) -> str:
    if not isinstance(value, str) or value not in TIERS:
        raise ValidationFailed("plan_tier", f"must be one of {', '.join(TIERS)}", rule="enum")
    return value


def validate_custom_limits(value: Any) -> dict[str, Any] | None:
    """Per-organization overrides of plan fields; null or {} means none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationFailed("custom_limits", "must be an object or null", rule="type")
    for name, limit in value.items():
        field = f"custom_limits.{name}"
        if name not in LIMIT_FIELDS:
            raise ValidationFailed(field, "is not a plan limit", rule="unknown_field")
        if limit is None and name not in _INT_ONLY_LIMITS:
            continue
        v.int_range(limit, field, 0, 2**53)
    return value or None


def _org_summary(row: asyncpg.Record, usage: dict[str, int]) -> dict[str, Any]:
    from .jobs import ts

    return {
        "id": str(row["id"]),
        "name": row["name"],
        "slug": row["slug"],
        "plan_tier": row["plan_tier"],
        "billing_email": row["billing_email"],
        "created_at": ts(row["created_at"]),
        "updated_at": ts(row["updated_at"]),
        "usage": usage,
    }


async def list_organizations(
    core: Any,
    *,
    plan_tier: str | None,
    search: str | None,
    limit: int,
    offset: int,
    sort_by: str | None,
    sort_order: str | None,
) -> dict[str, Any]:
    sort = sort_by or "created_at"
    if sort not in SORT_COLUMNS:
        raise ValidationFailed("sort_by", f"must be one of {', '.join(SORT_COLUMNS)}", rule="enum")
    ascending = (sort_order or "desc").lower() == "asc"
    pattern = None
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
    await core.quotas.flush()
    async with core.db.maintenance() as conn:
        total = await conn.fetchval(Q.admin_count_organizations, plan_tier, pattern)
        rows = await conn.fetch(
            Q.admin_list_organizations, plan_tier, pattern, limit, offset, sort, ascending
        )
        ids = [r["id"] for r in rows]
        sched_orgs: list[uuid.UUID] = []
        sched_queues: list[str] = []
        if ids and (await optional_tables(conn)).schedules:
            for r in await conn.fetch(Q.admin_schedule_queues, ids):
                sched_orgs.append(r["organization_id"])
                sched_queues.append(r["queue_name"])
        usage_rows = (
            await conn.fetch(Q.admin_usage_many, ids, today(), sched_orgs, sched_queues) if ids else []
        )
    usage = {
        u["id"]: {k: int(u[k]) for k in ("jobs_today", "active_jobs", "queues", "workers", "api_keys")}
        for u in usage_rows
    }
    return {
        "organizations": [_org_summary(r, usage[r["id"]]) for r in rows],
        "total": int(total),
        "limit": limit,
        "offset": offset,
    }


async def create_org(
    core: Any,
    *,
    name: Any,
    slug: Any,
    billing_email: Any,
    plan_tier: Any,
    settings: Any,
    custom_limits: Any,
) -> tuple[asyncpg.Record, IssuedKey]:
    tier = validate_tier(plan_tier if plan_tier is not None else core.settings.default_plan)
    org_settings = None if settings is None else validate_settings(settings)
    limits = validate_custom_limits(custom_limits)
    return await create_organization(
        core.db,
        name=name,
        slug=slug,
        billing_email=billing_email,
        plan_tier=tier,
        key_kind=core.settings.key_kind,
        settings=org_settings,
        custom_limits=limits,
    )


async def _load(conn: asyncpg.Connection, org_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(Q.lock_organization if lock else Q.get_organization, org_id)
    if row is None:
        raise NotFound()
    return row


async def get_org(core: Any, org_id: uuid.UUID) -> dict[str, Any]:
    await core.quotas.flush()
    async with core.db.maintenance() as conn:
        row = await _load(conn, org_id)
        counts = await usage_counts(conn, org_id)
        totals = await conn.fetchrow(Q.admin_org_totals, org_id)
    limits = core.plans.limits(row["plan_tier"], json_object(row["custom_limits"]) or None)
    body = organization_to_wire(row, admin=True)
    body["usage_info"] = usage_info(limits, counts, stored_tier=row["plan_tier"], admin=True)
    body["api_keys_count"] = int(totals["api_keys_count"])
    body["total_jobs"] = int(totals["total_jobs"])
    return body


async def update_org(
    core: Any,
    org_id: uuid.UUID,
    *,
    name: Any = None,
    plan_tier: Any = None,
    billing_email: Any = None,
    settings: Any = None,
    custom_limits: Any = None,
    set_custom_limits: bool = False,
) -> dict[str, Any]:
    """PATCH /admin/organizations/{id}: `None` keeps a field; custom limits are written when
    `set_custom_limits` (null or {} resets them)."""
    if name is not None:
        v.text(name, "name", 3, 100)
    tier = None if plan_tier is None else validate_tier(plan_tier)
    validate_email(billing_email)
    new_settings = None if settings is None else validate_settings(settings)
    limits = validate_custom_limits(custom_limits) if set_custom_limits else None
    async with core.db.maintenance() as conn:
        stored = await _load(conn, org_id, lock=True)
        merged = (
            None if new_settings is None else merge_settings(json_object(stored["settings"]), new_settings)
        )
        try:
            row = await conn.fetchrow(
                Q.update_organization,
                org_id,
                name,
                merged,
                billing_email is not None,
                billing_email,
                tier,
                set_custom_limits,
                limits,
            )
        except asyncpg.UniqueViolationError:
            from .errors import Conflict

            raise Conflict("An organization with this billing email already exists") from None
    core.auth.forget(org_id)  # plan and limits live in cached principals
    return organization_to_wire(row, admin=True)


async def delete_org(core: Any, org_id: uuid.UUID, *, hard: bool) -> None:
    async with core.db.maintenance() as conn:
        await _load(conn, org_id, lock=True)
        if hard:
            await hard_delete(conn, org_id)
        else:
            await conn.fetchval(Q.soft_delete_organization, org_id)
            await conn.execute(Q.revoke_all_api_keys, org_id)
    core.auth.forget(org_id)


async def create_key(
    core: Any,
    org_id: uuid.UUID,
    *,
    name: Any,
    queues: Any = None,
    rate_limit: Any = None,
    expires_at: Any = None,
) -> IssuedKey:
    name = validate_name(name, pattern=False)
    queue_list = ["*"] if queues is None else validate_queues(queues)
    limit = validate_rate_limit(rate_limit)
    expires = validate_expiry(expires_at)
    async with core.db.maintenance() as conn:
        await _load(conn, org_id)
        return await insert_api_key(
            conn, org_id, name, queue_list, core.settings.key_kind, rate_limit=limit, expires_at=expires
        )


async def reset_usage(core: Any, org_id: uuid.UUID) -> None:
    await core.quotas.flush()  # buffered counts belong to the period being reset
    async with core.db.maintenance() as conn:
        await _load(conn, org_id)
        await conn.execute(Q.reset_daily_usage, org_id, today())


async def stats(core: Any, *, uptime_seconds: int, api_version: str) -> dict[str, Any]:
    await core.quotas.flush()
    async with core.db.maintenance() as conn:
        row = await conn.fetchrow(Q.admin_stats, today())
        by_status_rows = await conn.fetch(Q.admin_jobs_by_status)
        by_plan_rows = await conn.fetch(Q.admin_orgs_by_plan)
    by_status = dict.fromkeys(STATUSES, 0)
    for r in by_status_rows:
        by_status[r["status"]] = int(r["n"])
    by_plan = [{"plan_tier": r["plan_tier"], "count": int(r["n"])} for r in by_plan_rows]
    total_jobs = sum(by_status.values())
    workers = int(row["workers"])
    return {
        "organizations": {
            "total": int(row["organizations"]),
            "by_plan": by_plan,
            "created_today": int(row["created_today"]),
            "created_this_week": int(row["created_this_week"]),
        },
        "jobs": {
            "total_active": by_status["pending"] + by_status["scheduled"] + by_status["processing"],
            "pending": by_status["pending"],
            "processing": by_status["processing"],
            "completed_24h": int(row["completed_24h"]),
            "failed_24h": int(row["failed_24h"]),
        },
        "workers": {
            "total": workers,
            "healthy": int(row["healthy_workers"]),
            "degraded": int(row["degraded_workers"]),
        },
        "system": {"api_version": api_version, "uptime_seconds": uptime_seconds},
        "total_organizations": int(row["organizations"]),
        "active_organizations": int(row["active_organizations"]),
        "organizations_by_plan": by_plan,
        "total_jobs": total_jobs,
        "jobs_today": int(row["jobs_today"]),
        "jobs_by_status": by_status,
        "total_queues": int(row["total_queues"]),
        "total_workers": workers,
        "uptime_seconds": uptime_seconds,
    }


def plans(core: Any) -> list[dict[str, Any]]:
    return [p.to_dict() for p in core.plans.all()]
