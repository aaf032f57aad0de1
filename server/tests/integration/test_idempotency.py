"""Idempotency keys (semantics.md §6): replays, bulk collapse, and concurrent duplicate submits."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from ..support import Tenant, create_tenant
from .jobs_support import API, assert_error, claim_one, complete, enqueue, get_job, new_queue


def test_replay_returns_the_existing_job_unchanged(tenant: Tenant) -> None:
    q = new_queue()
    key = f"order-{uuid.uuid4()}"
    with tenant.client() as c:
        r = c.post(
            f"{API}/jobs", json={"queue_name": q, "payload": {"v": 1}, "priority": 3, "idempotency_key": key}
        )
        assert r.status_code == 201 and r.json()["created"] is True
        job_id = r.json()["id"]
        before = get_job(c, job_id)
        # Different payload, priority and even queue: ignored; the existing job is returned as it is.
        for body in (
            {"queue_name": q, "payload": {"v": 2}, "priority": 9, "idempotency_key": key},
            {
                "queue_name": new_queue(),
                "payload": None,
                "idempotency_key": key,
                "scheduled_at": "2999-01-01T00:00:00Z",
            },
        ):
            r = c.post(f"{API}/jobs", json=body)
            assert r.status_code == 200, r.text
            assert r.json() == {"id": job_id, "created": False}
        assert get_job(c, job_id) == before
        # The existing job keeps its status, even once finished.
        job = claim_one(c, q)
        complete(c, job_id, "w1", job["lease_id"])
        r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "idempotency_key": key})
        assert r.status_code == 200 and r.json() == {"id": job_id, "created": False}
        assert get_job(c, job_id)["status"] == "completed"
        stats = c.get(f"{API}/jobs/stats", params={"queue_name": q}).json()
        assert stats["total"] == 1
        # Keys are case-sensitive and null keys never collide.
        assert enqueue(c, q, idempotency_key=key.upper()) != job_id
        assert enqueue(c, q) != enqueue(c, q)


def test_keys_are_per_organization(tenant: Tenant, other_tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as a, other_tenant.client() as b:
        ours = enqueue(a, q, idempotency_key="shared-key")
        theirs = enqueue(b, q, idempotency_key="shared-key")
        assert ours != theirs
        assert get_job(b, theirs)["organization_id"] == other_tenant.org_id


def test_key_length_rule(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        enqueue(c, q, idempotency_key="k" * 255)
        for bad in ("", "k" * 256):
            r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "idempotency_key": bad})
            assert_error(r, 400, "VALIDATION_ERROR")
        assert_error(
            c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "idempotency_key": 5}),
            422,
            "VALIDATION_ERROR",
        )


def test_bulk_duplicates_collapse_to_the_first_index(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        r = c.post(
            f"{API}/jobs/bulk",
            json={
                "queue_name": q,
                "jobs": [
                    {"payload": {"i": 0}, "idempotency_key": "a"},
                    {"payload": {"i": 1}, "idempotency_key": "b"},
                    {"payload": {"i": 2}, "idempotency_key": "a"},
                    {"payload": {"i": 3}},
                    {"payload": {"i": 4}, "idempotency_key": "a"},
                    {"payload": {"i": 5}},
                ],
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["failure_count"] == 0 and body["success_count"] == 6 and body["total"] == 6
        by_index = {s["index"]: s for s in body["succeeded"]}
        assert [by_index[i]["created"] for i in range(6)] == [True, True, False, True, False, True]
        assert by_index[2]["job_id"] == by_index[0]["job_id"] == by_index[4]["job_id"]
        assert len({s["job_id"] for s in body["succeeded"]}) == 4
        assert get_job(c, by_index[0]["job_id"])["payload"] == {"i": 0}
        assert c.get(f"{API}/jobs/stats", params={"queue_name": q}).json()["total"] == 4

        # Across batches, and against single creates.
        single = enqueue(c, q, idempotency_key="c")
        r = c.post(
            f"{API}/jobs/bulk",
            json={
                "queue_name": q,
                "jobs": [
                    {"payload": {}, "idempotency_key": "c"},
                    {"payload": {}, "idempotency_key": "b"},
                    {"payload": {}, "idempotency_key": "d"},
                    {"payload": {}, "idempotency_key": "d"},
                ],
            },
        )
        again = {s["index"]: s for s in r.json()["succeeded"]}
        assert again[0] == {"index": 0, "job_id": single, "created": False}
        assert again[1] == {"index": 1, "job_id": by_index[1]["job_id"], "created": False}
        assert again[2]["created"] is True and again[3] == {
            "index": 3,
            "job_id": again[2]["job_id"],
            "created": False,
        }
        r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "idempotency_key": "d"})
        assert r.status_code == 200 and r.json() == {"id": again[2]["job_id"], "created": False}
        assert c.get(f"{API}/jobs/stats", params={"queue_name": q}).json()["total"] == 6


async def test_concurrent_duplicate_submits_create_exactly_one_job(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    q = new_queue()
    key = f"race-{uuid.uuid4()}"
    async with tenant.async_client() as c:

        async def submit(i: int) -> tuple[int, str, bool]:
            r = await c.post(
                f"{API}/jobs", json={"queue_name": q, "payload": {"i": i}, "idempotency_key": key}
            )
            assert r.status_code in (200, 201), r.text
            return r.status_code, r.json()["id"], r.json()["created"]

        results = await asyncio.gather(*(submit(i) for i in range(50)))
    assert len({job_id for _, job_id, _ in results}) == 1
    assert sorted(status for status, _, _ in results) == [200] * 49 + [201]
    assert sum(created for _, _, created in results) == 1
    count = await owner_db.fetchval(
        "SELECT count(*) FROM jobs WHERE organization_id = $1 AND idempotency_key = $2",
        uuid.UUID(tenant.org_id),
        key,
    )
    assert count == 1
    history = await owner_db.fetchval(
        "SELECT count(*) FROM job_history WHERE job_id = $1", uuid.UUID(results[0][1])
    )
    assert history == 1


async def test_concurrent_duplicate_bulk_submits(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    keys = [f"bulk-{uuid.uuid4()}" for _ in range(5)]
    async with tenant.async_client() as c:

        async def submit() -> dict[str, str]:
            r = await c.post(
                f"{API}/jobs/bulk",
                json={"queue_name": q, "jobs": [{"payload": {"k": k}, "idempotency_key": k} for k in keys]},
            )
            assert r.status_code == 200, r.text
            assert r.json()["failure_count"] == 0
            return {keys[s["index"]]: s["job_id"] for s in r.json()["succeeded"]}

        results = await asyncio.gather(*(submit() for _ in range(20)))
    assert all(r == results[0] for r in results)
    count = await owner_db.fetchval(
        "SELECT count(*) FROM jobs WHERE organization_id = $1 AND queue_name = $2",
        uuid.UUID(tenant.org_id),
        q,
    )
    assert count == 5


async def test_a_replay_consumes_no_quota(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    org = create_tenant(tenant.server, plan_tier="free")
    q = new_queue()
    with org.client() as c:
        first = enqueue(c, q, idempotency_key="once")
        used = await owner_db.fetchval(
            "SELECT coalesce(sum(jobs_created), 0) FROM usage_daily WHERE organization_id = $1",
            uuid.UUID(org.org_id),
        )
        for _ in range(3):
            r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "idempotency_key": "once"})
            assert r.json() == {"id": first, "created": False}
        r = c.post(
            f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"payload": {}, "idempotency_key": "once"}]}
        )
        assert r.json()["succeeded"] == [{"index": 0, "job_id": first, "created": False}]
        after = await owner_db.fetchval(
            "SELECT coalesce(sum(jobs_created), 0) FROM usage_daily WHERE organization_id = $1",
            uuid.UUID(org.org_id),
        )
        assert after == used == 1


async def test_concurrent_replays_charge_the_daily_quota_once(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    org = create_tenant(tenant.server, plan_tier="pro")
    q = new_queue()
    async with org.async_client() as c:

        async def submit(i: int) -> str:
            r = await c.post(
                f"{API}/jobs", json={"queue_name": q, "payload": {"i": i}, "idempotency_key": "k"}
            )
            assert r.status_code in (200, 201), r.text
            return str(r.json()["id"])

        ids = await asyncio.gather(*(submit(i) for i in range(30)))
    assert len(set(ids)) == 1
    used = await owner_db.fetchval(
        "SELECT coalesce(sum(jobs_created), 0) FROM usage_daily WHERE organization_id = $1",
        uuid.UUID(org.org_id),
    )
    assert used == 1
