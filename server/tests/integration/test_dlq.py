"""The dead-letter queue over real HTTP (rest.md §8, semantics.md §5).

Dead-lettered jobs are made the real way: enqueue with max_retries 0, claim, fail.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from ..support import Tenant

SUMMARY_FIELDS = {
    "id",
    "queue_name",
    "status",
    "priority",
    "attempt",
    "retry_count",
    "max_retries",
    "job_type",
    "last_error",
    "created_at",
    "scheduled_at",
    "started_at",
    "completed_at",
}


async def scoped_key(owner_db: asyncpg.Connection, tenant: Tenant, queues: list[str]) -> str:
    key = "sp_test_" + secrets.token_urlsafe(32)
    await owner_db.execute(
        "INSERT INTO api_keys (id, organization_id, name, key_hash, key_prefix, queues)"
        " VALUES ($1, $2, 'scoped', $3, $4, $5)",
        uuid.uuid4(),
        uuid.UUID(tenant.org_id),
        hashlib.sha256(key.encode()).hexdigest(),
        key[:12],
        queues,
    )
    return key


async def enqueue(c: httpx.AsyncClient, queue: str, **extra: object) -> str:
    r = await c.post("/api/v1/jobs", json={"queue_name": queue, "payload": {"job_type": "mail"}} | extra)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def dead_letter(c: httpx.AsyncClient, queue: str, error: str = "boom", **extra: object) -> str:
    job_id = await enqueue(c, queue, max_retries=0, **extra)
    r = await c.post("/api/v1/jobs/claim", json={"queue_name": queue, "worker_id": "w", "limit": 1})
    [job] = r.json()["jobs"]
    assert job["id"] == job_id
    r = await c.post(
        f"/api/v1/jobs/{job_id}/fail", json={"worker_id": "w", "lease_id": job["lease_id"], "error": error}
    )
    assert r.status_code == 200 and r.json()["will_retry"] is False, r.text
    return job_id


async def dlq_ids(c: httpx.AsyncClient, **params: object) -> list[str]:
    r = await c.get("/api/v1/jobs/dlq", params=params)
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()]


async def test_list_shows_only_dead_letters_newest_first_with_has_more(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    async with tenant.async_client() as c, other_tenant.async_client() as other:
        a = await dead_letter(c, "mail", error="smtp down")
        b = await dead_letter(c, "mail")
        d = await dead_letter(c, "sms", tags=["urgent"])
        await enqueue(c, "mail")  # pending: not in the DLQ
        await dead_letter(other, "mail")
        r = await c.get("/api/v1/jobs/dlq")
        assert r.status_code == 200
        assert r.headers["X-Has-More"] == "false"
        rows = r.json()
        assert [j["id"] for j in rows] == [d, b, a]
        assert set(rows[2]) == SUMMARY_FIELDS
        assert (
            rows[2]["status"],
            rows[2]["last_error"],
            rows[2]["retry_count"],
            rows[2]["attempt"],
            rows[2]["job_type"],
        ) == ("deadletter", "smtp down", 1, 1, "mail")
        r = await c.get("/api/v1/jobs/dlq", params={"limit": 2})
        assert [j["id"] for j in r.json()] == [d, b] and r.headers["X-Has-More"] == "true"
        r = await c.get("/api/v1/jobs/dlq", params={"limit": 2, "offset": 2})
        assert [j["id"] for j in r.json()] == [a] and r.headers["X-Has-More"] == "false"
        assert await dlq_ids(c, queue_name="mail") == [b, a]
        assert await dlq_ids(c, queue="sms") == [d]
        assert await dlq_ids(c, tag="urgent") == [d]
        assert await dlq_ids(c, order_dir="asc") == [a, b, d]
        assert await dlq_ids(c, q=a[:8]) == [a]
        assert await dlq_ids(c, job_type="mail") == [d, b, a]
        assert await dlq_ids(c, status="pending") == [d, b, a]  # status is not a DLQ filter
        assert await dlq_ids(c, limit=1000) == [d, b, a]
        future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        assert await dlq_ids(c, created_after=future) == []
        assert await dlq_ids(c, created_before=future) == [d, b, a]


async def test_retry_by_ids(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        a = await dead_letter(c, "q")
        b = await dead_letter(c, "q")
        pending = await enqueue(c, "q")
        r = await c.post("/api/v1/jobs/dlq/retry", json={"job_ids": [b, pending, str(uuid.uuid4()), "nope"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"retried_count": 1, "retried_jobs": [b]}
        job = (await c.get(f"/api/v1/jobs/{b}")).json()
        assert (job["status"], job["retry_count"], job["last_error"]) == ("pending", 0, None)
        assert await dlq_ids(c) == [a]
        claimed = (
            await c.post("/api/v1/jobs/claim", json={"queue_name": "q", "worker_id": "w2", "limit": 5})
        ).json()
        assert {j["id"] for j in claimed["jobs"]} == {b, pending}
        # job_ids are capped by limit, oldest first.
        c1 = await dead_letter(c, "q")
        r = await c.post("/api/v1/jobs/dlq/retry", json={"job_ids": [c1, a], "limit": 1})
        assert r.json() == {"retried_count": 1, "retried_jobs": [a]}


async def test_retry_oldest_first_by_queue_or_everything(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        q1 = [await dead_letter(c, "one") for _ in range(3)]
        q2 = await dead_letter(c, "two")
        r = await c.post("/api/v1/jobs/dlq/retry", json={"queue_name": "one", "limit": 2})
        assert r.json() == {"retried_count": 2, "retried_jobs": q1[:2]}
        assert await dlq_ids(c) == [q2, q1[2]]
        # No body at all: every accessible queue, oldest first.
        r = await c.post("/api/v1/jobs/dlq/retry")
        assert r.status_code == 200, r.text
        assert r.json() == {"retried_count": 2, "retried_jobs": [q1[2], q2]}
        assert await dlq_ids(c) == []
        assert (await c.post("/api/v1/jobs/dlq/retry", json={})).json() == {
            "retried_count": 0,
            "retried_jobs": [],
        }


async def test_retry_validation_and_scope(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    key = await scoped_key(owner_db, tenant, ["mine"])
    async with tenant.async_client() as c, tenant.async_client(key) as scoped:
        theirs = await dead_letter(c, "theirs")
        mine = await dead_letter(c, "mine")
        for body in ({"limit": 0}, {"limit": 101}, {"queue_name": "x" * 101}, {"queue_name": "-x"}):
            r = await c.post("/api/v1/jobs/dlq/retry", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"
        assert (await c.post("/api/v1/jobs/dlq/retry", json={"job_ids": "x"})).status_code == 422
        for body in ({}, {"queue_name": "theirs"}):
            r = await scoped.post("/api/v1/jobs/dlq/retry", json=body)
            assert r.status_code == 403, (body, r.text)
            assert r.json()["code"] == "ACCESS_DENIED"
        # Listing ids of another queue retries nothing outside the scope.
        r = await scoped.post("/api/v1/jobs/dlq/retry", json={"job_ids": [theirs, mine]})
        assert r.json() == {"retried_count": 1, "retried_jobs": [mine]}
        assert await dlq_ids(scoped) == []
        assert await dlq_ids(c) == [theirs]


async def test_retry_checks_the_active_jobs_quota(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    await owner_db.execute(
        "UPDATE organizations SET plan_tier = 'free' WHERE id = $1", uuid.UUID(tenant.org_id)
    )
    async with tenant.async_client() as c:
        dead = await dead_letter(c, "q")
        r = await c.post(
            "/api/v1/jobs/bulk", json={"queue_name": "q", "jobs": [{"payload": {"i": i}} for i in range(10)]}
        )
        assert r.json()["success_count"] == 10, r.text
        r = await c.post("/api/v1/jobs/dlq/retry", json={"queue_name": "q"})
        assert r.status_code == 429, r.text
        assert (r.json()["code"], r.json()["resource"]) == ("QUOTA_EXCEEDED", "active_jobs")
        assert await dlq_ids(c) == [dead]


async def test_purge_confirm_rules(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        a = await dead_letter(c, "p1")
        b = await dead_letter(c, "p2")
        for body in (None, {}, {"confirm": False}, {"confirm": False, "queue_name": "p1"}):
            r = (
                await c.post("/api/v1/jobs/dlq/purge", json=body)
                if body is not None
                else await c.post("/api/v1/jobs/dlq/purge")
            )
            assert r.status_code == 400, (body, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR" and r.json()["message"].startswith("confirm")
        assert await dlq_ids(c) == [b, a]
        # Narrowed by queue: no confirm needed.
        r = await c.post("/api/v1/jobs/dlq/purge", json={"queue_name": "p1"})
        assert r.json() == {"purged_count": 1}
        assert (await c.get(f"/api/v1/jobs/{a}")).status_code == 404
        r = await c.post("/api/v1/jobs/dlq/purge", json={"confirm": True})
        assert r.json() == {"purged_count": 1}
        assert await dlq_ids(c) == []
        assert (await c.get(f"/api/v1/jobs/{b}")).status_code == 404


async def test_purge_narrowing_filters(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    async with tenant.async_client() as c:
        old = await dead_letter(c, "n")
        mid = await dead_letter(c, "n")
        new = await dead_letter(c, "n")
        keep_pending = await enqueue(c, "n-pending")
        await owner_db.execute(
            "UPDATE jobs SET completed_at = now() - interval '3 days' WHERE id = $1", uuid.UUID(old)
        )
        await owner_db.execute(
            "UPDATE jobs SET completed_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(mid)
        )
        r = await c.post("/api/v1/jobs/dlq/purge", json={"older_than_days": 2})
        assert r.json() == {"purged_count": 1}
        assert await dlq_ids(c, order_dir="asc") == [mid, new]
        cutoff = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC
        r = await c.post("/api/v1/jobs/dlq/purge", json={"older_than": cutoff})
        assert r.json() == {"purged_count": 1}
        assert await dlq_ids(c) == [new]
        r = await c.post("/api/v1/jobs/dlq/purge", json={"job_ids": [keep_pending]})
        assert r.json() == {"purged_count": 0}
        assert (await c.get(f"/api/v1/jobs/{keep_pending}")).status_code == 200
        r = await c.post("/api/v1/jobs/dlq/purge", json={"job_ids": []})
        assert r.json() == {"purged_count": 0}
        more = [await dead_letter(c, "n") for _ in range(2)]
        r = await c.post("/api/v1/jobs/dlq/purge", json={"confirm": True, "limit": 2})
        assert r.json() == {"purged_count": 2}
        assert await dlq_ids(c) == [more[1]]
        r = await c.post("/api/v1/jobs/dlq/purge", json={"job_ids": [more[1], "junk"]})
        assert r.json() == {"purged_count": 1}
        for body in (
            {"confirm": True, "limit": 0},
            {"confirm": True, "limit": 10001},
            {"older_than_days": 0},
            {"older_than": "yesterday"},
        ):
            r = await c.post("/api/v1/jobs/dlq/purge", json=body)
            assert r.status_code == 400, (body, r.text)
        assert (await c.post("/api/v1/jobs/dlq/purge", json={"confirm": "yes"})).status_code == 422


async def test_purge_scope(tenant: Tenant, other_tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    key = await scoped_key(owner_db, tenant, ["mine"])
    async with (
        tenant.async_client() as c,
        tenant.async_client(key) as scoped,
        other_tenant.async_client() as o,
    ):
        theirs = await dead_letter(c, "theirs")
        mine = await dead_letter(c, "mine")
        foreign = await dead_letter(o, "mine")
        for body in ({"confirm": True}, {"queue_name": "theirs"}):
            r = await scoped.post("/api/v1/jobs/dlq/purge", json=body)
            assert r.status_code == 403, (body, r.text)
        r = await scoped.post("/api/v1/jobs/dlq/purge", json={"job_ids": [theirs, foreign]})
        assert r.json() == {"purged_count": 0}
        r = await scoped.post("/api/v1/jobs/dlq/purge", json={"queue_name": "mine"})
        assert r.json() == {"purged_count": 1}
        assert await dlq_ids(c) == [theirs]
        assert await dlq_ids(o) == [foreign]
        assert mine not in await dlq_ids(c)
