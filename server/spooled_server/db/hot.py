"""Hot-path statements as one round trip each.

A tenant transaction costs three round trips (`BEGIN` + `set_config`, the statement, `COMMIT`); on the hot
paths that is most of the database time. So each hot named query (db/sql/*.sql) is also installed as a
SQL function in schema `spooled_hot` whose body is `set_config('app.current_org_id', …, true)` followed by
the query itself. Calling it is one statement in one implicit transaction: the organization is set first
(transaction-local, as SET LOCAL), then row-level security confines the query as usual.

The functions are generated from the named queries at start-up, so the SQL keeps living in one place; an
unchanged query is not re-created (its source hash is kept in the function's comment).
"""

from __future__ import annotations

import hashlib
import re

import asyncpg

from .queries import Q

SCHEMA = "spooled_hot"
HOT_LOCK = 7_240_003
# Every hot function runs on one cached generic plan per connection. Left to `auto`, PostgreSQL keeps
# planning the claim afresh on every call (~2.5 ms of planning against ~0.2 ms of execution), because the
# generic plan's estimate for `LIMIT $3` looks worse than any custom plan's. The generic plans themselves are
# checked in tests/db/test_claim_plan.py: index and primary-key access only.
GENERIC = "SET plan_cache_mode = force_generic_plan"
# name -> function options
HOT_QUERIES: dict[str, str] = {
    "insert_job": GENERIC,
    "insert_jobs": GENERIC,
    "claim_jobs": f"{GENERIC} SET enable_hashjoin = off SET enable_mergejoin = off",
    "complete_job": GENERIC,
    "fail_job": GENERIC,
    "heartbeat_job": GENERIC,
    "complete_jobs_batch": GENERIC,
    "fail_jobs_batch": GENERIC,
}
_PARAM = re.compile(r"\$(\d+)")


def function_name(name: str) -> str:
    return f"{SCHEMA}.{name}"


def call_sql(name: str, n_params: int) -> str:
    """`SELECT * FROM spooled_hot.<name>($1 … $n+1)`: $1 is the organization, then the query's own params."""
    args = ", ".join(f"${i}" for i in range(1, n_params + 2))
    return f"SELECT * FROM {function_name(name)}({args})"


async def _types(conn: asyncpg.Connection, oids: list[int]) -> list[str]:
    rows = await conn.fetch("SELECT o, format_type(o, NULL) AS t FROM unnest($1::oid[]) AS o", oids)
    by_oid = {r["o"]: r["t"] for r in rows}
    return [by_oid[o] for o in oids]


async def install(conn: asyncpg.Connection) -> dict[str, int]:
    """Create or refresh the hot functions (as the schema owner). Returns name -> parameter count."""
    counts: dict[str, int] = {}
    await conn.execute("SELECT pg_advisory_lock($1)", HOT_LOCK)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO spooled_app, spooled_maintenance")
        for name, options in HOT_QUERIES.items():
            body = getattr(Q, name).rstrip().rstrip(";")
            stmt = await conn.prepare(body)
            params = [p.oid for p in stmt.get_parameters()]
            counts[name] = len(params)
            source_hash = hashlib.sha256((body + options).encode()).hexdigest()
            current = await conn.fetchval(
                "SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = $1 AND p.proname = $2",
                SCHEMA, name,
            )
            if current == source_hash:
                continue
            param_types = await _types(conn, params)
            attrs = stmt.get_attributes()
            result_types = await _types(conn, [a.type.oid for a in attrs])
            columns = ", ".join(f'"{a.name}" {t}' for a, t in zip(attrs, result_types, strict=True))
            args = ", ".join(["uuid", *param_types])
            shifted = _PARAM.sub(lambda m: f"${int(m.group(1)) + 1}", body)
            async with conn.transaction():
                await conn.execute(f"DROP FUNCTION IF EXISTS {function_name(name)} CASCADE")
                await conn.execute(
                    f"CREATE FUNCTION {function_name(name)}({args}) RETURNS TABLE ({columns})"
                    f" LANGUAGE sql VOLATILE {options} AS $spooled$\n"
                    f"SELECT set_config('app.current_org_id', $1::text, true);\n{shifted};\n$spooled$"
                )
                await conn.execute(f"COMMENT ON FUNCTION {function_name(name)} IS '{source_hash}'")
                await conn.execute(
                    f"GRANT EXECUTE ON FUNCTION {function_name(name)} TO spooled_app, spooled_maintenance"
                )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", HOT_LOCK)
    return counts
