"""Tenant isolation (semantics.md §14): over the API, and at the database with row-level security as the only
guard (queries without any organization_id predicate)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ..conftest import async_wait_until
from ..support import Tenant
from .jobs_support import (
    API,
    assert_error,
    claim,
    claim_one,
    complete,
    enqueue,
    fail,
    get_job,
    heartbeat,
    new_queue,
)

TENANT_TABLES = [
    "api_keys",
    "usage_daily",
    "queue_configs",
    "jobs",
    "job_dependencies",
    "job_history",
    "dlq_entries",
    "workers",
    "revoked_sessions",
]


def test_two_orgs_cannot_see_each_others_jobs(tenant: Tenant, other_tenant: Tenant) -> None:
    q = new_queue()  # the same queue name in both organizations
    with tenant.client() as a, other_tenant.client() as b:
        mine = enqueue(a, q, payload={"owner": "a"}, idempotency_key="k")
        theirs = enqueue(b, q, payload={"owner": "b"}, idempotency_key="k")
        assert mine != theirs
        for path in (f"/jobs/{theirs}", f"/jobs/{theirs}/history"):
            assert_error(a.get(API + path), 404, "NOT_FOUND")
        assert_error(a.delete(f"{API}/jobs/{theirs}"), 404, "NOT_FOUND")
        assert_error(a.post(f"{API}/jobs/{theirs}/retry"), 404, "NOT_FOUND")
        assert_error(a.put(f"{API}/jobs/{theirs}/priority", json={"priority": 9}), 404, "NOT_FOUND")
        assert a.get(f"{API}/jobs/status", params={"ids": f"{mine},{theirs}"}).json()[0]["id"] == mine
        assert len(a.get(f"{API}/jobs/status", params={"ids": f"{mine},{theirs}"}).json()) == 1
        assert a.get(f"{API}/jobs/stats").json()["total"] == 1
        # A claim in the same queue name only ever sees the caller's own jobs.
        got = claim(a, q, limit=10)
        assert [j["id"] for j in got] == [mine]
        # The worker protocol with the other org's job id and a valid-looking lease: 404, nothing changes.
        their_lease = claim_one(b, q)["lease_id"]
        assert_error(complete(a, theirs, "w1", their_lease), 404, "NOT_FOUND")
        assert_error(fail(a, theirs, "w1", their_lease), 404, "NOT_FOUND")
        assert_error(heartbeat(a, theirs, "w1", their_lease), 404, "NOT_FOUND")
        assert_error(a.post(f"{API}/jobs/{theirs}/progress", json={"progress": 5}), 404, "NOT_FOUND")
        assert_error(
            a.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "parent_job_id": theirs}),
            400,
            "VALIDATION_ERROR",
        )
        view = get_job(b, theirs)
        assert view["status"] == "processing" and view["priority"] == 0 and view["progress"] is None
        assert get_job(a, mine)["payload"] == {"owner": "a"}


async def test_a_stale_worker_releases_only_its_own_orgs_jobs(
    tenant: Tenant, other_tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    """Worker ids are free-form: another organization may claim with the same id while its worker is alive."""
    q = new_queue()
    worker = f"shared-{uuid.uuid4().hex[:8]}"
    with tenant.client() as a, other_tenant.client() as b:
        r = a.post(
            f"{API}/workers/register", json={"worker_id": worker, "queue_name": q, "hostname": "host-a"}
        )
        assert r.status_code == 201, r.text
        mine = enqueue(a, q)
        theirs = enqueue(b, q)
        assert claim_one(a, q, worker)["id"] == mine
        assert claim_one(b, q, worker)["id"] == theirs
        await owner_db.execute(
            "UPDATE workers SET last_heartbeat = now() - interval '1 hour' WHERE id = $1", worker
        )

        async def released() -> bool:
            return bool(
                await owner_db.fetchval("SELECT status = 'pending' FROM jobs WHERE id = $1", uuid.UUID(mine))
            )

        await async_wait_until(released, timeout=15)
        assert get_job(a, mine)["last_error"] == "Worker offline"
        view = get_job(b, theirs)
        assert view["status"] == "processing" and view["assigned_worker_id"] == worker
        assert view["retry_count"] == 0 and view["last_error"] is None


# --- row-level security as the only guard ---------------------------------------------------------------


@pytest.fixture
async def app_role(owner_db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The owner connection switched to the application role (what every request transaction runs as)."""
    await owner_db.execute("SET ROLE spooled_app")
    try:
        yield owner_db
    finally:
        await owner_db.execute("RESET ROLE; RESET app.current_org_id")


async def _populate(tenant: Tenant, other: Tenant) -> tuple[str, str]:
    q = new_queue()
    with tenant.client() as a, other.client() as b:
        ids = []
        for c in (a, b):
            job_id = enqueue(c, q, max_retries=0)
            lease = claim_one(c, q)["lease_id"]
            fail(c, job_id, "w1", lease)  # history rows and a DLQ audit row for both
            ids.append(job_id)
    return ids[0], ids[1]


async def test_rls_confines_queries_without_org_predicates(
    tenant: Tenant, other_tenant: Tenant, app_role: asyncpg.Connection
) -> None:
    mine, theirs = await _populate(tenant, other_tenant)
    db = app_role
    org_a, org_b = uuid.UUID(tenant.org_id), uuid.UUID(other_tenant.org_id)
    await db.execute("SELECT set_config('app.current_org_id', $1, false)", tenant.org_id)
    assert await db.fetchval("SELECT current_user") == "spooled_app"

    for table in TENANT_TABLES:
        orgs = {r[0] for r in await db.fetch(f"SELECT DISTINCT organization_id FROM {table}")}
        assert orgs <= {org_a}, table
    assert {r["id"] for r in await db.fetch("SELECT id FROM organizations")} == {org_a}
    assert {r["id"] for r in await db.fetch("SELECT id FROM jobs")} == {uuid.UUID(mine)}
    assert await db.fetchval("SELECT count(*) FROM job_history WHERE job_id = $1", uuid.UUID(theirs)) == 0
    assert await db.fetchval("SELECT count(*) FROM dlq_entries") == 1
    assert await db.fetchval("SELECT count(*) FROM api_keys") == 1
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE id = $1", uuid.UUID(theirs)) == 0

    # Writes without a predicate touch only the current organization's rows.
    assert await db.execute("UPDATE jobs SET priority = 42") == "UPDATE 1"
    assert await db.execute("UPDATE organizations SET name = name") == "UPDATE 1"
    assert await db.execute("DELETE FROM job_history WHERE job_id = $1", uuid.UUID(theirs)) == "DELETE 0"
    assert await db.execute("DELETE FROM api_keys WHERE organization_id = $1", org_b) == "DELETE 0"

    # Inserting a row for another organization is refused by the policy's WITH CHECK.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute(
            "INSERT INTO job_history (organization_id, job_id, event_type) VALUES ($1, $2, 'created')",
            org_b,
            uuid.UUID(theirs),
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute(
            "INSERT INTO jobs (id, organization_id, queue_name, status, max_retries, timeout_seconds)"
            " VALUES ($1, $2, 'q', 'pending', 3, 300)",
            uuid.uuid4(),
            org_b,
        )
    # Nor can a row be moved into another organization.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE jobs SET organization_id = $1", org_b)

    # Without the setting nothing is visible (fail closed), and nothing can be written.
    await db.execute("RESET app.current_org_id")
    for table in [*TENANT_TABLES, "organizations"]:
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    assert await db.execute("UPDATE jobs SET priority = 1") == "UPDATE 0"
    assert await db.execute("DELETE FROM jobs") == "DELETE 0"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute(
            "INSERT INTO job_history (organization_id, job_id, event_type) VALUES ($1, $2, 'created')",
            org_a,
            uuid.UUID(mine),
        )
    await db.execute("SELECT set_config('app.current_org_id', '', false)")
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0

    # The other organization's view, from the same connection.
    await db.execute("SELECT set_config('app.current_org_id', $1, false)", other_tenant.org_id)
    assert {r["id"] for r in await db.fetch("SELECT id FROM jobs")} == {uuid.UUID(theirs)}
    assert await db.fetchval("SELECT priority FROM jobs") == 0


async def test_the_app_role_cannot_bypass_rls(owner_db: asyncpg.Connection) -> None:
    role = await owner_db.fetchrow(
        "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'spooled_app'"
    )
    assert role is not None and not role["rolsuper"] and not role["rolbypassrls"]
    maint = await owner_db.fetchrow(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'spooled_maintenance'"
    )
    assert maint is not None and not maint["rolsuper"] and not maint["rolbypassrls"]
    rows = await owner_db.fetch(
        "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity, c.relforcerowsecurity"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY($1::text[])",
        [*TENANT_TABLES, "organizations"],
    )
    assert len(rows) == len(TENANT_TABLES) + 1
    for r in rows:
        assert r["owner"] not in ("spooled_app", "spooled_maintenance"), r
        assert r["relrowsecurity"] and r["relforcerowsecurity"], r
    # Every table the app role can read has row-level security enabled and forced.
    exposed = await owner_db.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        " AND has_table_privilege('spooled_app', c.oid, 'SELECT')"
        " AND NOT (c.relrowsecurity AND c.relforcerowsecurity)"
    )
    assert [r["relname"] for r in exposed] == []
    # The role cannot switch itself off.
    await owner_db.execute("SET ROLE spooled_app")
    try:
        with pytest.raises(asyncpg.PostgresError):
            await owner_db.execute("ALTER TABLE jobs DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.PostgresError):
            await owner_db.execute("SET row_security = off; SELECT count(*) FROM jobs")
    finally:
        await owner_db.execute("RESET ROLE")
