"""The baseline ``jobs`` table and the SQL the baselines run against it.

Everything lives in its own schema, so pointing ``DATABASE_URL`` at a real database never touches
anything but ``spooled_bench``.
"""

from __future__ import annotations

import asyncpg

SCHEMA = "spooled_bench"
TABLE = f"{SCHEMA}.jobs"

CREATE_TABLE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    queue_name  text NOT NULL,
    status      text NOT NULL DEFAULT 'pending',
    payload     jsonb,
    priority    int NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    lease_id    uuid
);
CREATE INDEX jobs_pending_claim_idx
    ON {TABLE} (queue_name, priority DESC, created_at)
    WHERE status = 'pending';
"""

DROP_SCHEMA = f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"

INSERT_ONE = f"""
INSERT INTO {TABLE} (queue_name, status, payload, priority)
VALUES ($1, 'pending', $2::jsonb, $3)
RETURNING id
"""

# Enqueue and wake listeners in one statement (one round trip, one transaction): $4 is the channel.
INSERT_ONE_NOTIFY = f"""
WITH job AS ({INSERT_ONE.strip()})
SELECT id, pg_notify($4, $1) FROM job
"""

# One statement, many jobs: payloads and priorities arrive as parallel arrays.
INSERT_BULK = f"""
INSERT INTO {TABLE} (queue_name, status, payload, priority)
SELECT $1, 'pending', t.payload, t.priority
FROM unnest($2::jsonb[], $3::int[]) AS t(payload, priority)
"""

# Server-side preload for the claim benchmarks: $2 pending jobs with distinct created_at.
PRELOAD = f"""
INSERT INTO {TABLE} (queue_name, status, payload, priority, created_at)
SELECT $1, 'pending', jsonb_build_object('n', g), g % 5, clock_timestamp()
FROM generate_series(1, $2::int) AS g
"""

CLAIM = f"""
UPDATE {TABLE} SET status = 'processing', lease_id = gen_random_uuid()
WHERE id IN (
    SELECT id FROM {TABLE}
    WHERE queue_name = $1 AND status = 'pending'
    ORDER BY priority DESC, created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id, lease_id
"""

# Batched completion. Lease ids are fresh random UUIDs, each issued to exactly one job, so
# "lease_id is one of this batch's leases" fences every job to its own lease.
COMPLETE = f"""
UPDATE {TABLE} SET status = 'completed', lease_id = NULL
WHERE id = ANY($1::uuid[]) AND lease_id = ANY($2::uuid[])
"""


async def reset(conn: asyncpg.Connection) -> None:
    """(Re)create an empty ``jobs`` table."""
    await conn.execute(CREATE_TABLE)


async def analyze(conn: asyncpg.Connection) -> None:
    await conn.execute(f"ANALYZE {TABLE}")


async def drop(conn: asyncpg.Connection) -> None:
    await conn.execute(DROP_SCHEMA)


def affected_rows(status: str) -> int:
    """Row count from a command tag such as ``UPDATE 10``."""
    return int(status.rsplit(" ", 1)[-1])
