"""Retention (semantics.md §19) through the maintenance runner itself, on a database of its own."""

from __future__ import annotations

import uuid

import pytest

from spooled_server.app import build_core
from spooled_server.config import Settings
from spooled_server.db.database import connect_owner
from spooled_server.maintenance.runner import RETENTION_BATCH, Maintenance

from ..support import TestDatabase

ORG = uuid.UUID("cccccccc-0000-4000-8000-000000000003")


@pytest.fixture(scope="module")
def retention_db(database: TestDatabase) -> str:
    return database.migrated("retention", {ORG: "retention"})


async def test_one_sweep_clears_a_backlog_of_several_batches(retention_db: str) -> None:
    old = RETENTION_BATCH * 2 + 500
    conn = await connect_owner(retention_db)
    try:
        await conn.execute(
            """
            INSERT INTO jobs (id, organization_id, queue_name, status, payload, max_retries, timeout_seconds,
                              completed_at)
            SELECT gen_random_uuid(), $1, 'q',
                   CASE WHEN g % 2 = 0 THEN 'completed' ELSE 'cancelled' END, '{}'::jsonb, 3, 300,
                   now() - interval '40 days'
            FROM generate_series(1, $2) AS g
            """,
            ORG,
            old,
        )
        # Kept: recent finished jobs, dead letters of any age, unfinished work of any age.
        await conn.execute(
            """
            INSERT INTO jobs (id, organization_id, queue_name, status, payload, max_retries, timeout_seconds,
                              completed_at, created_at)
            VALUES (gen_random_uuid(), $1, 'q', 'completed', '{}', 3, 300, now() - interval '29 days', now()),
                   (gen_random_uuid(), $1, 'q', 'deadletter', '{}', 3, 300, now() - interval '1 year', now()),
                   (gen_random_uuid(), $1, 'q', 'pending', '{}', 3, 300, NULL, now() - interval '1 year')
            """,
            ORG,
        )
        core = build_core(Settings(database_url=retention_db, db_pool_size=2))
        try:
            deleted = await Maintenance(core).retention()
        finally:
            await core.db.dispose()
        assert deleted >= old
        left = await conn.fetch("SELECT status FROM jobs WHERE organization_id = $1 ORDER BY status", ORG)
        assert [r["status"] for r in left] == ["completed", "deadletter", "pending"]
    finally:
        await conn.close()
