"""Background loops under one leader (semantics.md §18).

Every replica runs a `Maintenance`; the one that holds the Postgres advisory lock is the leader and runs the
singleton loops. The lock lives on a dedicated connection: if the leader dies, Postgres drops the lock and
another replica takes over within a few seconds. Work rows are claimed with skip-locked semantics, so even an
overlap during a hand-over cannot apply a transition twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from .. import metrics
from ..core.context import Core
from ..core.plans import TIERS
from ..db.database import asyncpg_dsn
from ..db.queries import Q

log = logging.getLogger(__name__)

LEADER_LOCK = 7_240_002
LEADER_RETRY_SECS = 2.0
RETENTION_BATCH = 10_000
RETENTION_BUDGET_SECS = 60.0


class Maintenance:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._tasks: list[asyncio.Task[None]] = []
        self._lock_conn: asyncpg.Connection | None = None
        self.is_leader = False
        self._last_due_check = datetime.now(UTC) - timedelta(seconds=5)
        self._extra: list[tuple[str, float, Callable[[], Awaitable[Any]]]] = []

    def add_loop(self, name: str, interval: float, fn: Callable[[], Awaitable[Any]]) -> None:
        """Register another leader-only loop (cron, workflow sweep, ...)."""
        self._extra.append((name, interval, fn))

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._leadership(), name="maintenance-leader"))
        self._tasks.append(asyncio.create_task(self._every(15.0, self.refresh_gauges), name="gauges"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._lock_conn is not None:
            with contextlib.suppress(Exception):
                await self._lock_conn.close()
            self._lock_conn = None
        self.is_leader = False

    async def _leadership(self) -> None:
        while True:
            try:
                if self._lock_conn is None or self._lock_conn.is_closed():
                    self._lock_conn = await asyncpg.connect(asyncpg_dsn(self.core.db.database_url))
                got = await self._lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK)
                if got:
                    log.info("this replica leads the background loops")
                    self.is_leader = True
                    await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("maintenance leadership lost or unavailable", exc_info=True)
            self.is_leader = False
            with contextlib.suppress(Exception):
                if self._lock_conn is not None:
                    await self._lock_conn.close()
            self._lock_conn = None
            await asyncio.sleep(LEADER_RETRY_SECS)

    async def _lead(self) -> None:
        s = self.core.settings
        loops = [
            asyncio.create_task(self._every(min(1.0, s.activation_interval_secs), self.activate_due)),
            asyncio.create_task(self._every(s.lease_recovery_interval_secs, self.recover_leases)),
            asyncio.create_task(self._every(s.stale_worker_interval_secs, self.stale_workers_and_retention)),
            asyncio.create_task(self._watch_lock()),
        ]
        loops += [asyncio.create_task(self._every(interval, fn)) for _, interval, fn in self._extra]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _watch_lock(self) -> None:
        """Ends leadership when the lock connection dies."""
        while True:
            await asyncio.sleep(2.0)
            assert self._lock_conn is not None
            await self._lock_conn.fetchval("SELECT 1", timeout=5)

    async def _every(self, interval: float, fn: Callable[[], Awaitable[Any]]) -> None:
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("background loop %s failed", getattr(fn, "__name__", fn), exc_info=True)
            await asyncio.sleep(interval)

    # --- the loops -----------------------------------------------------------------------------------------

    async def activate_due(self) -> int:
        """Transition 3 for due scheduled jobs, and wake claimers of queues whose delayed jobs came due."""
        since = self._last_due_check
        # One statement per transaction: the activation holds its row locks only while its UPDATE runs, since
        # a claim skips locked rows and would miss a job that is already due. The due-window may overlap the
        # next one (an extra wake-up is harmless); it never leaves a gap.
        async with self.core.db.maintenance(transaction=False) as conn:
            now = await conn.fetchval("SELECT now()")
            rows = await conn.fetch(Q.activate_scheduled)
            due = await conn.fetch(Q.newly_due_queues, since)
        self._last_due_check = now
        woken: set[tuple[Any, str]] = set()
        for r in rows:
            self.core.bus.status_change(
                r["organization_id"], r["id"], r["queue_name"], "scheduled", "pending"
            )
            woken.add((r["organization_id"], r["queue_name"]))
        for r in due:
            woken.add((r["organization_id"], r["queue_name"]))
        for org, queue in woken:
            self.core.wakeups.notify(org, queue)
        return len(rows)

    async def recover_leases(self) -> int:
        """Transition 8: expired leases go back to pending (no backoff) or to the DLQ."""
        async with self.core.db.maintenance(transaction=False) as conn:  # one statement: its own transaction
            rows = await conn.fetch(Q.recover_expired_leases, "Lease expired", None, True, None)
        self._after_requeue(rows, "Lease expired")
        await self._settle_workflows(rows)
        return len(rows)

    async def recover_worker_jobs(self, workers: list[tuple[Any, str]]) -> int:
        """Transition 9: jobs of workers that went stale, as (organization id, worker id) pairs. Worker ids
        are chosen by clients, so another organization may use the same one for a live worker."""
        if not workers:
            return 0
        async with self.core.db.maintenance(transaction=False) as conn:  # one statement: its own transaction
            rows = await conn.fetch(Q.recover_expired_leases, "Worker offline", [w for _, w in workers],
                                    False, [org for org, _ in workers])
        self._after_requeue(rows, "Worker offline")
        await self._settle_workflows(rows)
        return len(rows)

    async def _settle_workflows(self, rows: list[asyncpg.Record]) -> None:
        """Dead-letters from recovery cascade to their dependents at once, as worker failures do."""
        from ..core import workflows

        by_org: dict[Any, list[asyncpg.Record]] = {}
        for r in rows:
            if not r["will_retry"]:
                by_org.setdefault(r["organization_id"], []).append(r)
        for org, org_rows in by_org.items():
            await workflows.after_settled(self.core, org, org_rows)

    def _after_requeue(self, rows: list[asyncpg.Record], error: str) -> None:
        for r in rows:
            metrics.JOBS_FAILED.inc()
            if r["will_retry"]:
                metrics.JOBS_RETRIED.inc()
                self.core.wakeups.notify(r["organization_id"], r["queue_name"])
            else:
                metrics.JOBS_DEADLETTERED.inc()
            self.core.bus.status_change(
                r["organization_id"], r["id"], r["queue_name"], "processing", r["status"]
            )
            self.core.bus.publish(r["organization_id"], "JobFailed", {
                "job_id": str(r["id"]), "queue_name": r["queue_name"], "error": error,
                "retry_count": r["retry_count"], "will_retry": r["will_retry"]})
        if rows:
            log.info("recovered %d jobs (%s)", len(rows), error)

    async def stale_workers_and_retention(self) -> None:
        s = self.core.settings
        async with self.core.db.maintenance() as conn:
            stale = await conn.fetch(Q.mark_stale_workers, float(s.stale_worker_after_secs))
        for r in stale:
            self.core.bus.publish(r["organization_id"], "WorkerDeregistered", {"worker_id": r["id"]})
        await self.recover_worker_jobs([(r["organization_id"], r["id"]) for r in stale])
        await self.retention()

    async def retention(self) -> int:
        plans = [self.core.plans.limits(t) for t in TIERS]
        tiers = [p.tier for p in plans]
        deleted = 0
        # Batches in their own transactions until the backlog is gone (or the time budget is spent): one
        # batch per sweep would fall behind any queue that finishes more than a batch per sweep interval.
        deadline = time.monotonic() + RETENTION_BUDGET_SECS
        while True:
            async with self.core.db.maintenance(transaction=False) as conn:
                status = await conn.execute(Q.delete_finished_jobs, tiers,
                                            [p.job_retention_days for p in plans], RETENTION_BATCH)
            batch = int(status.split()[-1])
            deleted += batch
            if batch < RETENTION_BATCH or time.monotonic() > deadline:
                break
        async with self.core.db.maintenance() as conn:
            deleted += int(await conn.fetchval(Q.delete_old_history, tiers,
                                               [p.history_retention_days for p in plans]) or 0)
        return deleted

    async def refresh_gauges(self) -> None:
        async with self.core.db.maintenance(transaction=False) as conn:
            row = await conn.fetchrow(Q.gauge_counts)
        metrics.JOBS_PENDING.set(row["pending"])
        metrics.JOBS_PROCESSING.set(row["processing"])
        metrics.JOB_MAX_AGE.set(float(row["max_age"] or 0))
        metrics.WORKERS_ACTIVE.set(row["workers_active"])
        metrics.WORKERS_HEALTHY.set(row["workers_healthy"])
