"""GET /api/v1/jobs over real HTTP (rest.md §5): every filter, ordering, pagination and its headers."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta, timezone

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


async def enqueue(c: httpx.AsyncClient, queue: str, payload: object = None, **extra: object) -> str:
    body = {"queue_name": queue, "payload": {} if payload is None else payload} | extra
    r = await c.post("/api/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def listed(c: httpx.AsyncClient, **params: object) -> list[str]:
    r = await c.get("/api/v1/jobs", params=params)
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()]


async def test_summary_shape_and_default_order(tenant: Tenant, other_tenant: Tenant) -> None:
    async with tenant.async_client() as c, other_tenant.async_client() as other:
        first = await enqueue(c, "shape", {"job_type": "send_email", "to": "x"}, priority=5, max_retries=2)
        second = await enqueue(c, "shape", {"job_type": 7})
        third = await enqueue(c, "shape", ["not", "an", "object"])
        await enqueue(other, "shape")
        # Fail `first` once so that attempt/retry_count/last_error have something to show.
        claimed = (await c.post("/api/v1/jobs/claim", json={"queue_name": "shape", "worker_id": "w"})).json()[
            "jobs"
        ]
        assert claimed[0]["id"] == first
        await c.post(
            f"/api/v1/jobs/{first}/fail",
            json={"worker_id": "w", "lease_id": claimed[0]["lease_id"], "error": "smtp"},
        )
        r = await c.get("/api/v1/jobs")
        assert r.status_code == 200
        rows = r.json()
        assert [j["id"] for j in rows] == [third, second, first]
        assert r.headers["X-Total-Count"] == "3" and r.headers["X-Has-More"] == "false"
        for row in rows:
            assert set(row) == SUMMARY_FIELDS
        f = rows[2]
        assert (
            f["status"],
            f["priority"],
            f["attempt"],
            f["retry_count"],
            f["max_retries"],
            f["job_type"],
            f["last_error"],
        ) == ("pending", 5, 1, 1, 2, "send_email", "smtp")
        assert f["scheduled_at"] is not None and f["started_at"] is not None and f["completed_at"] is None
        assert f["created_at"].endswith("Z")
        assert rows[1]["job_type"] == "" and rows[0]["job_type"] == ""


async def test_queue_and_status_filters(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        a = await enqueue(c, "alpha")
        b = await enqueue(c, "beta")
        s = await enqueue(c, "alpha", scheduled_at="2099-01-01T00:00:00Z")
        x = await enqueue(c, "beta")
        assert (await c.delete(f"/api/v1/jobs/{x}")).status_code == 204
        assert await listed(c, queue_name="alpha") == [s, a]
        assert await listed(c, queue="beta") == [x, b]
        assert await listed(c, queue_name="alpha", queue="beta") == [s, a]
        assert await listed(c, status="scheduled") == [s]
        assert await listed(c, status="pending,cancelled") == [x, b, a]
        assert await listed(c, status="PENDING, scheduled") == [s, b, a]
        assert await listed(c, status="pending,bogus") == [b, a]
        # Invalid values are ignored: the filter does not apply.
        assert await listed(c, status="bogus") == [x, s, b, a]
        assert await listed(c, queue_name="-bad name") == [x, s, b, a]
        assert await listed(c, queue_name="gamma") == []
        r = await c.get("/api/v1/jobs", params={"status": "completed"})
        assert r.json() == [] and r.headers["X-Total-Count"] == "0" and r.headers["X-Has-More"] == "false"


async def test_tag_filter_matches_array_elements_and_object_keys(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        arr = await enqueue(c, "t", tags=["red", "blue"])
        obj = await enqueue(c, "t", tags={"red": 1, "size": "blue"})
        await enqueue(c, "t")
        assert await listed(c, tag="red") == [obj, arr]
        assert await listed(c, tag="blue") == [arr]  # an object's values do not match
        assert await listed(c, tag="size") == [obj]
        assert await listed(c, tag="green") == []
        assert len(await listed(c, tag="bad tag!")) == 3  # invalid: ignored
        assert len(await listed(c, tag="x" * 65)) == 3


async def test_search_and_job_type_filters(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        mail = await enqueue(c, "notifications", {"job_type": "Send_Welcome_Email"})
        pdf = await enqueue(c, "reports", {"job_type": "render_pdf"})
        num = await enqueue(c, "misc", {"job_type": 5})
        assert await listed(c, q="welcome") == [mail]
        assert await listed(c, q="REPORT") == [pdf]
        assert await listed(c, q=pdf[:6]) == [pdf]
        assert await listed(c, q=pdf[:6].upper()) == [pdf]
        assert await listed(c, q="_") == [pdf, mail]
        assert await listed(c, q="%") == []  # LIKE wildcards are literal
        assert await listed(c, q="misc") == [num]
        assert await listed(c, job_type="render_pdf") == [pdf]
        assert await listed(c, job_type="render") == []
        assert await listed(c, job_type="5") == []  # a number is not the string "5"
        assert await listed(c, q="reports", job_type="render_pdf") == [pdf]


async def test_created_bounds(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        ids = [await enqueue(c, "time") for _ in range(3)]
        created = [(await c.get(f"/api/v1/jobs/{i}")).json()["created_at"] for i in ids]
        assert await listed(c, created_after=created[1]) == [ids[2], ids[1]]  # inclusive
        assert await listed(c, created_before=created[1]) == [ids[0]]  # exclusive
        assert await listed(c, created_after=created[0], created_before=created[2]) == [ids[1], ids[0]]
        # Another offset and a naive timestamp (read as UTC) mean the same instant.
        moment = datetime.fromisoformat(created[1].replace("Z", "+00:00"))
        plus_two = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
        assert await listed(c, created_after=plus_two) == [ids[2], ids[1]]
        naive = moment.replace(tzinfo=None).isoformat()
        assert await listed(c, created_before=naive) == [ids[0]]
        assert await listed(c, created_after="last tuesday") == ids[::-1]


async def test_pagination_limits_and_headers(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        for start, count in ((0, 100), (100, 5)):  # a bulk request holds at most 100 jobs
            jobs = [{"payload": {"i": i}} for i in range(start, start + count)]
            r = await c.post("/api/v1/jobs/bulk", json={"queue_name": "many", "jobs": jobs})
            assert r.json()["success_count"] == count, r.text
        r = await c.get("/api/v1/jobs")
        assert len(r.json()) == 50
        assert (r.headers["X-Total-Count"], r.headers["X-Has-More"]) == ("105", "true")
        all_ids = [j["id"] for j in r.json()]
        r = await c.get("/api/v1/jobs", params={"limit": 1000})
        assert len(r.json()) == 100 and r.headers["X-Has-More"] == "true"
        r = await c.get("/api/v1/jobs", params={"limit": 0})
        assert len(r.json()) == 1
        r = await c.get("/api/v1/jobs", params={"limit": "lots"})
        assert len(r.json()) == 50
        r = await c.get("/api/v1/jobs", params={"limit": 50, "offset": 50})
        assert r.headers["X-Has-More"] == "true"
        all_ids += [j["id"] for j in r.json()]
        r = await c.get("/api/v1/jobs", params={"limit": 50, "offset": 100})
        assert len(r.json()) == 5 and r.headers["X-Has-More"] == "false"
        assert r.headers["X-Total-Count"] == "105"
        all_ids += [j["id"] for j in r.json()]
        assert len(set(all_ids)) == 105
        r = await c.get("/api/v1/jobs", params={"offset": 500})
        assert r.json() == [] and r.headers["X-Total-Count"] == "105" and r.headers["X-Has-More"] == "false"
        r = await c.get("/api/v1/jobs", params={"offset": -5, "limit": 5})
        assert [j["id"] for j in r.json()] == all_ids[:5]
        r = await c.get("/api/v1/jobs", params={"limit": 5, "offset": 100})
        assert r.headers["X-Has-More"] == "false" and len(r.json()) == 5


async def test_ordering(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        low = await enqueue(c, "o", priority=-5)
        high1 = await enqueue(c, "o", priority=10)
        high2 = await enqueue(c, "o", priority=10)
        later = await enqueue(c, "o", scheduled_at="2099-06-01T00:00:00Z")
        sooner = await enqueue(c, "o", scheduled_at="2098-06-01T00:00:00Z")
        # Ties go by created_at, then id, in the requested direction.
        assert await listed(c, order_by="priority", order_dir="desc") == [high2, high1, sooner, later, low]
        assert await listed(c, order_by="priority", order_dir="asc") == [low, later, sooner, high1, high2]
        # Null scheduled_at sorts last in both directions.
        assert (await listed(c, order_by="scheduled_at", order_dir="asc"))[:2] == [sooner, later]
        assert (await listed(c, order_by="scheduled_at", order_dir="desc"))[:2] == [later, sooner]
        assert set((await listed(c, order_by="scheduled_at"))[2:]) == {low, high1, high2}
        assert await listed(c, order_by="created_at", order_dir="asc") == [low, high1, high2, later, sooner]
        # Invalid values fall back to created_at desc.
        default = [sooner, later, high2, high1, low]
        assert await listed(c, order_by="name", order_dir="sideways") == default
        assert await listed(c, order_by="PRIORITY", order_dir="ASC") == [low, later, sooner, high1, high2]


async def test_scoped_key_sees_only_its_queues(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    key = await scoped_key(owner_db, tenant, ["scope-a", "scope-b?"])
    async with tenant.async_client() as c, tenant.async_client(key) as scoped:
        a = await enqueue(c, "scope-a")
        b1 = await enqueue(c, "scope-b1")
        await enqueue(c, "scope-b12")
        await enqueue(c, "scope-c")
        r = await scoped.get("/api/v1/jobs")
        assert [j["id"] for j in r.json()] == [b1, a]
        assert r.headers["X-Total-Count"] == "2"
        assert await listed(scoped, queue_name="scope-c") == []
        assert len(await listed(c)) == 4
