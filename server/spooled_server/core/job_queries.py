"""The job list (GET /jobs) and the search filters it shares with the DLQ list (rest.md §5, §8).

Filters are lenient by contract: an invalid value is ignored and the default applies, so a list request
never fails on its query string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import ValidationFailed
from .jobs import STATUSES, ts
from .queues import scope_regexes

ORDER_BY = ("created_at", "priority", "scheduled_at")
DEFAULT_LIMIT = 50
MAX_LIMIT = 100


@dataclass
class JobFilters:
    queue_name: str | None = None
    statuses: list[str] | None = None
    tag: str | None = None
    q: str | None = None
    job_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    order_by: str = "created_at"
    order_dir: str = "desc"


def _lenient_timestamp(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return v.timestamp(raw, "timestamp")
    except ValidationFailed:
        return None


def _lenient_int(raw: str | None, default: int, lo: int, hi: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        return default
    return max(lo, min(hi, value))


def filters_from_query(get: Callable[[str], str | None], *, with_status: bool = True) -> JobFilters:
    """The list filters from query parameters (`get(name)` returns the raw value or None)."""
    f = JobFilters()
    queue = get("queue_name") or get("queue")
    if queue:
        try:
            f.queue_name = v.queue_name(queue)
        except ValidationFailed:
            pass
    if with_status:
        raw_status = get("status")
        if raw_status:
            wanted = [s.strip().lower() for s in raw_status.split(",")]
            valid = sorted({s for s in wanted if s in STATUSES})
            f.statuses = valid or None
    tag = get("tag")
    if tag and v.TAG_FILTER.match(tag):
        f.tag = tag
    q = get("q")
    if q and q.strip() and len(q) <= 255:
        f.q = q.strip()
    job_type = get("job_type")
    if job_type and len(job_type) <= 255:
        f.job_type = job_type
    f.created_after = _lenient_timestamp(get("created_after"))
    f.created_before = _lenient_timestamp(get("created_before"))
    return f


def page_from_query(get: Callable[[str], str | None]) -> Page:
    order_by = (get("order_by") or "").strip().lower()
    order_dir = (get("order_dir") or "").strip().lower()
    return Page(
        limit=_lenient_int(get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_lenient_int(get("offset"), 0, 0, 2**31 - 1),
        order_by=order_by if order_by in ORDER_BY else "created_at",
        order_dir=order_dir if order_dir in ("asc", "desc") else "desc",
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filter_args(principal: Principal, f: JobFilters) -> list[Any]:
    return [
        principal.org_id,
        f.queue_name,
        f.statuses,
        f.tag,
        None if f.q is None else _like_escape(f.q),
        f.job_type,
        f.created_after,
        f.created_before,
        scope_regexes(principal),
    ]


def summary_to_wire(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "queue_name": r["queue_name"],
        "status": r["status"],
        "priority": r["priority"],
        "attempt": r["retry_count"],
        "retry_count": r["retry_count"],
        "max_retries": r["max_retries"],
        "job_type": r["job_type"],
        "last_error": r["last_error"],
        "created_at": ts(r["created_at"]),
        "scheduled_at": ts(r["scheduled_at"]),
        "started_at": ts(r["started_at"]),
        "completed_at": ts(r["completed_at"]),
    }


async def list_jobs(
    core: Core, principal: Principal, f: JobFilters, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """One page of JobSummary rows and the number of rows matching the filters (X-Total-Count)."""
    args = _filter_args(principal, f)
    # A custom plan per call: the planner drops the unused `$n IS NULL OR …` branches for each filter mix.
    async with core.db.tenant(principal.org_id, custom_plan=True) as conn:
        rows = await conn.fetch(Q.list_jobs, *args, page.limit, page.offset, page.order_by, page.order_dir)
        if page.offset == 0 and len(rows) < page.limit:
            total = len(rows)
        else:
            total = int(await conn.fetchval(Q.count_jobs, *args))
    return [summary_to_wire(r) for r in rows], total


async def list_page_with_more(
    core: Core, principal: Principal, f: JobFilters, page: Page
) -> tuple[list[dict[str, Any]], bool]:
    """One page and whether rows exist beyond it (no count: one extra row is fetched instead)."""
    args = _filter_args(principal, f)
    async with core.db.tenant(principal.org_id, custom_plan=True) as conn:
        rows = await conn.fetch(
            Q.list_jobs, *args, page.limit + 1, page.offset, page.order_by, page.order_dir
        )
    return [summary_to_wire(r) for r in rows[: page.limit]], len(rows) > page.limit
