"""The dead-letter queue (rest.md §8, semantics.md §5): list, retry (oldest first), purge.

The DLQ is the set of jobs with status `deadletter`. Retry reuses the job-retry transition of core.jobs
(status pending, retry_count 0, audit rows removed, dependents re-gated, active-jobs quota checked).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ..db.queries import Q
from . import jobs
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import AccessDenied, ValidationFailed
from .job_queries import JobFilters, Page, list_page_with_more
from .queues import scope_regexes


async def list_dlq(
    core: Core, principal: Principal, f: JobFilters, page: Page
) -> tuple[list[dict[str, Any]], bool]:
    f.statuses = ["deadletter"]
    return await list_page_with_more(core, principal, f, page)


def _scoped_queue(principal: Principal, queue_name: str | None, *, narrowed_by_ids: bool) -> None:
    """A scoped key must name one of its queues, unless it lists job ids (out-of-scope ids are skipped)."""
    if queue_name is not None:
        principal.require_queue(queue_name)
    elif not principal.unrestricted and not narrowed_by_ids:
        raise AccessDenied("A queue-scoped API key must name an accessible queue_name")


def _ids(values: list[Any] | None) -> list[uuid.UUID] | None:
    """Job ids from a body; strings that are not UUIDs cannot name a job and are dropped."""
    if values is None:
        return None
    out: list[uuid.UUID] = []
    for value in values:
        parsed = v.try_uuid(value) if isinstance(value, str) else None
        if parsed is not None and parsed not in out:
            out.append(parsed)
    return out


async def retry_dlq(
    core: Core,
    principal: Principal,
    *,
    job_ids: list[Any] | None = None,
    queue_name: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    if queue_name is not None:
        v.queue_name(queue_name)
    v.int_range(limit, "limit", 1, 100)
    ids = _ids(job_ids)
    _scoped_queue(principal, queue_name, narrowed_by_ids=ids is not None)
    scope = scope_regexes(principal)
    async with core.db.tenant(principal.org_id) as conn:
        if ids is not None:
            picked = await conn.fetch(Q.dlq_pick_ids, principal.org_id, ids, queue_name, scope, limit)
        else:
            picked = await conn.fetch(Q.dlq_pick_oldest, principal.org_id, queue_name, scope, limit)
        rows = await jobs.retry_rows(core, conn, principal, [r["id"] for r in picked]) if picked else []
    jobs.after_retry(core, principal.org_id, rows)
    # Report in the order they were picked (oldest first).
    retried = {r["id"] for r in rows}
    ordered = [str(r["id"]) for r in picked if r["id"] in retried]
    return {"retried_count": len(ordered), "retried_jobs": ordered}


async def purge_dlq(
    core: Core,
    principal: Principal,
    *,
    confirm: bool | None = None,
    queue_name: str | None = None,
    job_ids: list[Any] | None = None,
    older_than: Any = None,
    older_than_days: Any = None,
    limit: int = 10000,
) -> dict[str, Any]:
    if confirm is False:
        raise ValidationFailed("confirm", "must be true to purge the dead-letter queue", rule="invalid")
    if queue_name is not None:
        v.queue_name(queue_name)
    v.int_range(limit, "limit", 1, 10000)
    cutoff: datetime | None = None
    if older_than is not None:
        cutoff = v.timestamp(older_than, "older_than")
    if older_than_days is not None:
        days = v.int_range(older_than_days, "older_than_days", 1, 36500)
        by_days = datetime.now(UTC) - timedelta(days=days)
        cutoff = by_days if cutoff is None else min(cutoff, by_days)
    ids = _ids(job_ids)
    narrowed = queue_name is not None or ids is not None or cutoff is not None
    if not narrowed and confirm is not True:
        raise ValidationFailed(
            "confirm", "must be true to purge the whole dead-letter queue", rule="required"
        )
    _scoped_queue(principal, queue_name, narrowed_by_ids=ids is not None)
    async with core.db.tenant(principal.org_id) as conn:
        purged = await conn.fetchval(
            Q.dlq_purge, principal.org_id, queue_name, ids, cutoff, scope_regexes(principal), limit
        )
    return {"purged_count": int(purged)}
