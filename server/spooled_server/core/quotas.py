"""Plan caps (semantics.md §12): checked on the paths that create things.

The daily job counter is reserved atomically for limited plans (a batch that does not fit is refused whole and
nothing is charged). On plans without a daily cap the counter is only reporting, so it is added up in memory
and flushed once a second, keeping a hot counter row out of every enqueue transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..db.database import Database
from .auth import Principal
from .errors import FeatureDisabled, PayloadTooLarge, QuotaExceeded
from .plans import UPGRADE, PlanLimits, Plans

log = logging.getLogger(__name__)


def quota_error(resource: str, current: int, limit: int, limits: PlanLimits) -> QuotaExceeded:
    return QuotaExceeded(
        f"{resource} limit reached ({current}/{limit})",
        extra={"resource": resource, "current": current, "limit": limit, "plan": limits.tier,
               "upgrade_to": UPGRADE.get(limits.tier)},
    )


# The buffered counts of many organizations in one statement. Counts of an organization deleted since are
# dropped: its usage rows are gone with it, and its counts must not cost the others theirs.
FLUSH_COUNTS = """
INSERT INTO usage_daily AS u (organization_id, day, jobs_created)
SELECT c.org, $3, c.n
FROM unnest($1::uuid[], $2::int[]) AS c(org, n)
WHERE EXISTS (SELECT 1 FROM organizations o WHERE o.id = c.org)
ORDER BY c.org
ON CONFLICT (organization_id, day) DO UPDATE SET jobs_created = u.jobs_created + EXCLUDED.jobs_created
"""


class Quotas:
    def __init__(self, db: Database, plans: Plans, hard_payload_cap: int) -> None:
        self.db = db
        self.plans = plans
        self.hard_payload_cap = hard_payload_cap
        self._pending_counts: dict[uuid.UUID, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        # One flush at a time: a reader's flush (the usage route) must wait for the background flush that
        # took the counts before it, or it would read the table before those counts are written.
        self._flush_lock = asyncio.Lock()

    def limits(self, principal: Principal) -> PlanLimits:
        return self.plans.limits(principal.plan_tier, principal.custom_limits)

    def payload_cap(self, principal: Principal) -> int:
        """The largest payload `check_payload` lets through for this caller (outside ingest)."""
        return min(self.hard_payload_cap, self.limits(principal).max_payload_size_bytes)

    def check_payload(self, principal: Principal, size: int, *, ingest: bool = False) -> None:
        if size > self.hard_payload_cap:
            raise PayloadTooLarge(
                f"Payload is {size} bytes; the limit is {self.hard_payload_cap} bytes",
                extra={"current": size, "limit": self.hard_payload_cap, "plan": self.limits(principal).tier,
                       "upgrade_to": None},
            )
        if ingest:
            return
        limits = self.limits(principal)
        if size > limits.max_payload_size_bytes:
            raise PayloadTooLarge(
                f"Payload is {size} bytes; the {limits.tier} plan allows "
                f"{limits.max_payload_size_bytes} bytes",
                extra={"current": size, "limit": limits.max_payload_size_bytes, "plan": limits.tier,
                       "upgrade_to": UPGRADE.get(limits.tier)},
            )

    def uncapped_jobs(self, principal: Principal) -> bool:
        """No daily, active-job or queue cap applies: job creation needs no quota check at all."""
        limits = self.limits(principal)
        return (limits.max_jobs_per_day is None and limits.max_active_jobs is None
                and limits.max_queues is None)

    def note_created(self, principal: Principal, n: int) -> None:
        """Count jobs created on an uncapped plan (reported as jobs_today; flushed once a second)."""
        self._pending_counts[principal.org_id] += n

    async def reserve_jobs(self, conn: asyncpg.Connection, principal: Principal, n: int) -> None:
        """Charge `n` new jobs against jobs_per_day and check active_jobs, or raise QUOTA_EXCEEDED."""
        limits = self.limits(principal)
        if limits.max_active_jobs is not None:
            active = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE organization_id = $1"
                " AND status IN ('pending', 'scheduled', 'processing')",
                principal.org_id,
            )
            if active + n > limits.max_active_jobs:
                raise quota_error("active_jobs", int(active), limits.max_active_jobs, limits)
        if limits.max_jobs_per_day is None:
            self._pending_counts[principal.org_id] += n
            return
        if limits.max_jobs_per_day == 0:
            raise quota_error("jobs_per_day", 0, 0, limits)
        today = datetime.now(UTC).date()
        used = await conn.fetchval(
            "INSERT INTO usage_daily AS u (organization_id, day, jobs_created) VALUES ($1, $2, $3)"
            " ON CONFLICT (organization_id, day) DO UPDATE SET jobs_created = u.jobs_created + $3"
            " WHERE u.jobs_created + $3 <= $4 RETURNING jobs_created",
            principal.org_id, today, n, limits.max_jobs_per_day,
        )
        if used is None or used > limits.max_jobs_per_day:
            current = await conn.fetchval(
                "SELECT jobs_created FROM usage_daily WHERE organization_id = $1 AND day = $2",
                principal.org_id, today,
            )
            raise quota_error("jobs_per_day", int(current or 0), limits.max_jobs_per_day, limits)

    async def check_new_queue(self, conn: asyncpg.Connection, principal: Principal, queue: str) -> None:
        limits = self.limits(principal)
        if limits.max_queues is None:
            return
        exists = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM queue_configs WHERE organization_id = $1 AND queue_name = $2)"
            " OR EXISTS (SELECT 1 FROM jobs WHERE organization_id = $1 AND queue_name = $2)"
            " OR EXISTS (SELECT 1 FROM spooled_active_schedule_queues($1) WHERE schedule_queue = $2)",
            principal.org_id, queue,
        )
        if exists:
            return
        count = await self.count_queues(conn, principal.org_id)
        if count >= limits.max_queues:
            raise quota_error("queues", count, limits.max_queues, limits)

    async def count_queues(self, conn: asyncpg.Connection, org_id: uuid.UUID) -> int:
        return int(await conn.fetchval(
            "SELECT count(*) FROM (SELECT queue_name FROM queue_configs WHERE organization_id = $1"
            " UNION SELECT DISTINCT queue_name FROM jobs WHERE organization_id = $1"
            " UNION SELECT schedule_queue FROM spooled_active_schedule_queues($1)) q",
            org_id,
        ))

    async def check_count(self, principal: Principal, resource: str, field: str, current: int) -> None:
        """Generic cap: raise when `current` already uses the plan's `field` limit."""
        limits = self.limits(principal)
        limit: Any = getattr(limits, field)
        if limit is None:
            return
        if limit == 0:
            raise FeatureDisabled(
                f"{resource} are not available on the {limits.tier} plan",
                extra={"feature": resource, "plan": limits.tier, "upgrade_to": UPGRADE.get(limits.tier)},
            )
        if current >= limit:
            raise quota_error(resource, current, limit, limits)

    # --- the buffered daily counter ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="usage-flusher")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self.flush()

    async def flush(self) -> None:
        """Write the buffered counts; when it returns, every count noted before the call is in the table."""
        async with self._flush_lock:
            if not self._pending_counts:
                return
            counts, self._pending_counts = dict(self._pending_counts), defaultdict(int)
            today = datetime.now(UTC).date()
            orgs = sorted(counts)  # one row order for every replica: concurrent flushes cannot deadlock
            try:
                for attempt in range(2):
                    try:
                        async with self.db.maintenance(transaction=False) as conn:
                            await conn.execute(FLUSH_COUNTS, orgs, [counts[o] for o in orgs], today)
                        break
                    except asyncpg.ForeignKeyViolationError:
                        # An organization was deleted while the statement ran; the next one leaves it out.
                        if attempt:
                            raise
            except Exception:
                # Reporting only (no cap depends on it): a lost second of counts beats a retry loop.
                log.warning("could not flush the daily job counters", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()
