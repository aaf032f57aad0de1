"""The hot statements run on one cached generic plan each, and that plan must be the right one: the claim on
the claim index (never a sequential scan, PERFORMANCE.md "the planner trap"), settlements by primary key.

20k pending jobs across two organizations and two queues, analysed. The server's own paths (the hot functions
in `spooled_hot`, called as the application role) are traced with auto_explain, so the plans checked are the
plans the server really executes, including after many repetitions of the statement.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from spooled_server.db.database import Database, connect_owner
from spooled_server.db.hot import HOT_QUERIES, call_sql
from spooled_server.db.queries import Q

from ..support import TestDatabase

ORG_A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
ORG_B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
PENDING = 20_000
CLAIM_ARGS = (ORG_A, "emails", 10, "w1", 30.0)  # queue, limit, worker, lease seconds (after the org)


@pytest.fixture(scope="module")
def loaded_db(database: TestDatabase) -> str:
    url = database.migrated("plan", {ORG_A: "plan-a", ORG_B: "plan-b"}, hot=True)

    async def load() -> None:
        conn = await connect_owner(url)
        try:
            # Pending work in 2 orgs x 2 queues with mixed priorities, plus a finished history.
            await conn.execute(
                """
                INSERT INTO jobs (id, organization_id, queue_name, status, payload, max_retries,
                                  timeout_seconds,
                                  priority, created_at)
                SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN $1::uuid ELSE $2::uuid END,
                       CASE WHEN g % 4 < 2 THEN 'emails' ELSE 'reports' END,
                       CASE WHEN g <= $3 THEN 'pending' ELSE 'completed' END,
                       jsonb_build_object('n', g), 3, 300, (g % 5) - 2, now() - make_interval(secs => g)
                FROM generate_series(1, $3 + 10000) AS g
                """,
                ORG_A,
                ORG_B,
                PENDING,
            )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    asyncio.run(load())
    return url


@pytest.fixture
async def traced(loaded_db: str) -> AsyncIterator[tuple[asyncpg.Connection, list[str]]]:
    """An owner connection with auto_explain on (every statement, nested ones too), then as spooled_app."""
    conn = await connect_owner(loaded_db)
    plans: list[str] = []
    conn.add_log_listener(lambda _c, msg: plans.append(msg.message))
    await conn.execute(
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
        " SET auto_explain.log_nested_statements = on;"
        " SET auto_explain.log_level = 'notice'; SET client_min_messages = 'notice'"
    )
    try:
        yield conn, plans
    finally:
        await conn.close()


def _indexed(plan: str) -> bool:
    """Picks through the claim index and updates by primary key: no scan of the organization's jobs. (A
    bitmap heap scan is fine only when the primary key drives it: it then visits just the picked rows.)"""
    return (
        "jobs_claim_idx" in plan
        and "jobs_pkey" in plan
        and "Seq Scan on jobs" not in plan
        and plan.count("Bitmap Heap Scan on jobs") <= plan.count("Bitmap Index Scan on jobs_pkey")
    )


def _claim_plans(plans: list[str]) -> list[str]:
    """The plans of the claim statement itself (auto_explain shows a function's whole body as query text)."""
    return [p for p in plans if "LockRows" in p and "Update on jobs" in p]


async def test_the_server_claim_path_uses_the_claim_index(
    traced: tuple[asyncpg.Connection, list[str]],
) -> None:
    conn, plans = traced
    # The session keeps PostgreSQL's default plan cache mode: what applies is the function's own setting.
    await conn.execute("SET ROLE spooled_app")
    assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
    sql = call_sql("claim_jobs", len(CLAIM_ARGS))
    for _ in range(8):
        rows = await conn.fetch(sql, ORG_A, *CLAIM_ARGS)
        assert len(rows) == 10
    claims = _claim_plans(plans)
    assert len(claims) == 8, plans[-3:]
    for plan in claims:
        assert _indexed(plan), plan
        assert "Hash Join" not in plan and "Merge Join" not in plan, plan
        # Generic from the first call: parameters, not the values of this call, in the index condition. Left
        # to `auto`, PostgreSQL planned the claim afresh on every call (~2.5 ms of planning for ~0.2 ms of
        # work), because the generic plan's estimate for `LIMIT $n` looks worse than any custom plan's.
        assert re.search(r"queue_name = \$\d", plan) and "queue_name = 'emails'" not in plan, plan


async def test_the_generic_plan_and_the_guard_against_it(
    loaded_db: str, traced: tuple[asyncpg.Connection, list[str]]
) -> None:
    conn, _ = traced
    await conn.execute("SET ROLE spooled_app")
    await conn.execute("SELECT set_config('app.current_org_id', $1, false)", str(ORG_A))
    await conn.execute(f"PREPARE claim_probe(uuid, text, int, text, float8) AS {Q.claim_jobs}")
    args = f"'{ORG_A}'::uuid, 'emails', 10, 'w1', 30"
    # The trap: a generic plan guesses LIMIT $3 at 10% of the queue and may hash-join the update against
    # every job of the organization. The hot function turns hash and merge joins off, which leaves one
    # primary-key probe per picked row as the only plan, generic or custom.
    await conn.execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
    for mode in ("force_custom_plan", "force_generic_plan"):
        await conn.execute(f"SET plan_cache_mode = {mode}")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE claim_probe({args})"))
        assert _indexed(plan), (mode, plan)
    config = await conn.fetchval(
        "SELECT p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'spooled_hot' AND p.proname = 'claim_jobs'"
    )
    assert config is not None and {"enable_hashjoin=off", "enable_mergejoin=off"} <= set(config)
    configs = dict(await conn.fetch(
        "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'spooled_hot'"
    ))
    assert set(configs) == set(HOT_QUERIES)
    for name, options in configs.items():  # every hot function: one generic plan, planned once
        assert "plan_cache_mode=force_generic_plan" in options, (name, options)
    # Filtered reads (the job list) through the transaction helper ask for custom plans.
    db = Database(loaded_db, pool_size=1, maintenance_pool_size=1)
    try:
        async with db.tenant(ORG_A, custom_plan=True) as tx:
            assert await tx.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        async with db.tenant(ORG_A) as tx:
            assert await tx.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await db.dispose()


async def test_batched_settlements_probe_by_primary_key(
    traced: tuple[asyncpg.Connection, list[str]],
) -> None:
    """A batch of completions or failures costs one primary-key probe per settlement, whatever else is
    processing: the cached generic plan must not walk the processing jobs (the lease index) and must not
    rescan the batch once per processing job."""
    conn, plans = traced
    # Statistics taken while jobs were in flight under short leases that have run out since: the planner
    # now believes almost no lease is live, which makes walking the lease index look free.
    stale = await conn.fetch(call_sql("claim_jobs", len(CLAIM_ARGS)), ORG_B, ORG_B, "reports", 500, "gone", 1.0)
    assert len(stale) == 500
    await conn.execute("ANALYZE jobs")
    await asyncio.sleep(1.2)
    # Generic plans: the plan cache settles on one after five calls, so it is the one that must be right.
    await conn.execute("SET plan_cache_mode = force_generic_plan; SET ROLE spooled_app")
    # Many jobs in flight besides the batch, as on a busy server.
    in_flight = await conn.fetch(call_sql("claim_jobs", len(CLAIM_ARGS)), ORG_A, ORG_A, "reports", 100, "other",
                                 300.0)
    assert len(in_flight) == 100
    for name in ("complete_jobs_batch", "fail_jobs_batch"):
        for round_ in range(3):
            claimed = await conn.fetch(call_sql("claim_jobs", len(CLAIM_ARGS)), ORG_A, ORG_A, "emails", 20,
                                       "w1", 30.0)
            ids = [r["id"] for r in claimed]
            leases = [r["lease_id"] for r in claimed]
            plans.clear()
            if name == "complete_jobs_batch":
                args: tuple[object, ...] = (ids, ["w1"] * 20, leases, [None] * 20, None)
            else:
                args = (ids, ["w1"] * 20, leases, ["boom"] * 20, [False] * 20, 60, 3600, 0.0, None)
            done = await conn.fetch(call_sql(name, len(args) + 1), ORG_A, ORG_A, *args)
            assert len(done) == 20, (name, round_)
            [plan] = [p for p in plans if "Update on jobs j" in p]
            assert "Index Scan using jobs_pkey on jobs j" in plan, plan
            assert "jobs_lease_idx" not in plan and "jobs_worker_idx" not in plan, plan


async def test_single_settlements_probe_by_primary_key(
    traced: tuple[asyncpg.Connection, list[str]],
) -> None:
    """One completion, failure, renewal or progress report is one primary-key probe, however many jobs the
    same worker holds: with stale statistics the worker's partial index (`assigned_worker_id = $n` among
    processing jobs) looked cheaper, and every settlement walked all of that worker's jobs."""
    conn, plans = traced
    # Statistics taken while nothing was processing: the worker and lease indexes look empty, so walking
    # them looks cheaper than a primary-key probe.
    await conn.execute(
        "UPDATE jobs SET status = 'completed', completed_at = now() WHERE status = 'processing'"
    )
    await conn.execute("VACUUM ANALYZE jobs")
    await conn.execute("SET ROLE spooled_app")
    claim = call_sql("claim_jobs", len(CLAIM_ARGS))
    held = await conn.fetch(claim, ORG_A, ORG_A, "reports", 200, "busy", 300.0)
    assert len(held) == 200
    calls: list[tuple[str, tuple[object, ...]]] = []
    for job in held[:6]:
        j, lease = job["id"], job["lease_id"]
        calls += [
            ("heartbeat_job", (j, ORG_A, "busy", lease, 60.0, None)),
            ("progress_job", (j, ORG_A, "busy", lease, 50.0, "half", None)),
        ]
    for job in held[6:12]:
        calls.append(("complete_job", (job["id"], ORG_A, "busy", job["lease_id"], None, None)))
    for job in held[12:18]:
        fail_args = (job["id"], ORG_A, "busy", job["lease_id"], "boom", True, 60, 3600, 0.0, None)
        calls.append(("fail_job", fail_args))
    await conn.execute("SELECT set_config('app.current_org_id', $1, false)", str(ORG_A))
    for name, args in calls:
        plans.clear()
        if name == "progress_job":  # not a hot function: the REST route runs it in a tenant transaction
            rows = await conn.fetch(Q.progress_job, *args)
        else:
            rows = await conn.fetch(call_sql(name, len(args)), ORG_A, *args)
        assert len(rows) == 1, name
        [plan] = [p for p in plans if "Update on jobs" in p]
        assert "Index Scan using jobs_pkey on jobs" in plan, (name, plan)
        assert "jobs_worker_idx" not in plan and "jobs_lease_idx" not in plan, (name, plan)
