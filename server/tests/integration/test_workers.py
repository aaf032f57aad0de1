"""The worker registry over real HTTP (rest.md §10, semantics.md §11)."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg
import httpx

from ..support import Tenant

WORKER_FIELDS = {
    "id",
    "organization_id",
    "queue_name",
    "queue_names",
    "hostname",
    "worker_type",
    "max_concurrency",
    "current_jobs",
    "status",
    "last_heartbeat",
    "metadata",
    "version",
    "registered_at",
    "updated_at",
}


async def scoped_key(owner_db: asyncpg.Connection, tenant: Tenant, queues: list[str]) -> str:
    """A key limited to `queues`, written straight into the key table (the key routes are not under test)."""
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


async def register(c: httpx.AsyncClient, queue: str = "work", **extra: object) -> dict:
    body = {"queue_name": queue, "hostname": "host-1"} | extra
    r = await c.post("/api/v1/workers/register", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def enqueue(c: httpx.AsyncClient, queue: str, **extra: object) -> str:
    r = await c.post("/api/v1/jobs", json={"queue_name": queue, "payload": {"n": 1}} | extra)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def claim(c: httpx.AsyncClient, queue: str, worker: str, limit: int = 1) -> list[dict]:
    r = await c.post("/api/v1/jobs/claim", json={"queue_name": queue, "worker_id": worker, "limit": limit})
    assert r.status_code == 200, r.text
    return list(r.json()["jobs"])


async def test_register_mints_an_id_and_get_shows_the_worker(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        reg = await register(
            c, "emails", worker_type="python", max_concurrency=7, metadata={"pid": 42}, version="1.2.3"
        )
        assert set(reg) == {"id", "queue_name", "lease_duration_secs", "heartbeat_interval_secs"}
        assert uuid.UUID(reg["id"]).version == 4
        assert reg["queue_name"] == "emails"
        assert reg["lease_duration_secs"] == 30
        assert reg["heartbeat_interval_secs"] == 10
        r = await c.get(f"/api/v1/workers/{reg['id']}")
        assert r.status_code == 200, r.text
        w = r.json()
        assert set(w) == WORKER_FIELDS
        assert w["organization_id"] == tenant.org_id
        assert w["queue_names"] == ["emails"]
        assert w["status"] == "healthy"
        assert w["worker_type"] == "python"
        assert w["max_concurrency"] == 7
        assert w["current_jobs"] == 0
        assert w["metadata"] == {"pid": 42}
        assert w["version"] == "1.2.3"
        assert w["last_heartbeat"].endswith("Z")
        r = await c.get("/api/v1/workers/no-such-worker")
        assert r.status_code == 404
        assert r.json()["code"] == "NOT_FOUND"


async def test_register_validation(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        bad = [
            ({"queue_name": "q", "hostname": "-host"}, 400, "hostname"),
            ({"queue_name": "q", "hostname": "host."}, 400, "hostname"),
            ({"queue_name": "q", "hostname": "h" * 256}, 400, "hostname"),
            ({"queue_name": "q", "hostname": "h", "max_concurrency": 101}, 400, "max_concurrency"),
            ({"queue_name": "q", "hostname": "h", "max_concurrency": 0}, 400, "max_concurrency"),
            ({"queue_name": "q", "hostname": "h", "worker_id": "has space"}, 400, "worker_id"),
            ({"queue_name": "q", "hostname": "h", "worker_id": "x" * 129}, 400, "worker_id"),
            ({"queue_name": "q", "hostname": "h", "worker_type": "t" * 51}, 400, "worker_type"),
            ({"queue_name": "q", "hostname": "h", "version": "v" * 51}, 400, "version"),
            ({"queue_name": ".q", "hostname": "h"}, 400, "queue_name"),
            ({"queue_name": "q"}, 422, "hostname"),
            ({"queue_name": "q", "hostname": "h", "metadata": [1]}, 422, "metadata"),
        ]
        for body, status, field in bad:
            r = await c.post("/api/v1/workers/register", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"
            assert r.json()["message"].startswith(field), r.text


async def test_reregistering_a_given_id_upserts_and_resets_status(tenant: Tenant) -> None:
    worker_id = f"worker-{uuid.uuid4().hex[:8]}.A_1"
    async with tenant.async_client() as c:
        reg = await register(c, "q1", worker_id=worker_id, hostname="first")
        assert reg["id"] == worker_id
        r = await c.post(f"/api/v1/workers/{worker_id}/drain")
        assert r.status_code == 200 and r.json()["status"] == "draining"
        reg = await register(c, "q2", worker_id=worker_id, hostname="second")
        assert reg["queue_name"] == "q2"
        w = (await c.get(f"/api/v1/workers/{worker_id}")).json()
        assert (w["status"], w["queue_name"], w["hostname"]) == ("healthy", "q2", "second")
        listed = (await c.get("/api/v1/workers")).json()
        assert [x["id"] for x in listed] == [worker_id]


async def test_worker_id_owned_by_another_org_conflicts(tenant: Tenant, other_tenant: Tenant) -> None:
    worker_id = f"shared-{uuid.uuid4().hex[:8]}"
    async with tenant.async_client() as mine, other_tenant.async_client() as theirs:
        await register(mine, worker_id=worker_id)
        r = await theirs.post(
            "/api/v1/workers/register", json={"queue_name": "work", "hostname": "h", "worker_id": worker_id}
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "CONFLICT"
        # The other organization cannot see, heartbeat, drain or deregister it either.
        assert (await theirs.get(f"/api/v1/workers/{worker_id}")).status_code == 404
        r = await theirs.post(f"/api/v1/workers/{worker_id}/heartbeat", json={"current_jobs": 0})
        assert r.status_code == 404
        assert (await theirs.post(f"/api/v1/workers/{worker_id}/drain")).status_code == 404
        assert (await theirs.post(f"/api/v1/workers/{worker_id}/deregister")).status_code == 404
        assert (await theirs.get("/api/v1/workers")).json() == []
        w = (await mine.get(f"/api/v1/workers/{worker_id}")).json()
        assert w["status"] == "healthy"


async def test_scoped_key_sees_only_workers_of_its_queues(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    key = await scoped_key(owner_db, tenant, ["billing-*"])
    async with tenant.async_client() as admin, tenant.async_client(key) as scoped:
        other = await register(admin, "emails")
        r = await scoped.post("/api/v1/workers/register", json={"queue_name": "emails", "hostname": "h"})
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "ACCESS_DENIED"
        mine = await register(scoped, "billing-eu")
        assert [w["id"] for w in (await scoped.get("/api/v1/workers")).json()] == [mine["id"]]
        assert (await scoped.get(f"/api/v1/workers/{other['id']}")).status_code == 404
        r = await scoped.post(f"/api/v1/workers/{other['id']}/heartbeat", json={"current_jobs": 1})
        assert r.status_code == 404
        assert (await scoped.post(f"/api/v1/workers/{other['id']}/drain")).status_code == 404
        assert (await scoped.delete(f"/api/v1/workers/{other['id']}")).status_code == 404
        assert {w["id"] for w in (await admin.get("/api/v1/workers")).json()} == {mine["id"], other["id"]}


async def test_workers_quota_counts_live_workers_only(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    await owner_db.execute(
        "UPDATE organizations SET plan_tier = 'free' WHERE id = $1", uuid.UUID(tenant.org_id)
    )
    async with tenant.async_client() as c:
        tag = uuid.uuid4().hex[:8]
        first = await register(c, worker_id=f"only-one-{tag}")
        r = await c.post("/api/v1/workers/register", json={"queue_name": "work", "hostname": "h"})
        assert r.status_code == 429, r.text
        body = r.json()
        assert body["code"] == "QUOTA_EXCEEDED"
        assert (body["resource"], body["current"], body["limit"], body["plan"]) == ("workers", 1, 1, "free")
        # Re-registering one's own id is not charged.
        assert (await register(c, worker_id=first["id"]))["id"] == first["id"]
        # An offline worker no longer counts.
        assert (await c.post(f"/api/v1/workers/{first['id']}/deregister")).status_code == 204
        await register(c, worker_id=f"second-{tag}")


async def test_list_orders_by_latest_heartbeat_and_paginates(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        ids = [(await register(c, worker_id=f"w{i}-{uuid.uuid4().hex[:8]}"))["id"] for i in range(3)]
        r = await c.post(f"/api/v1/workers/{ids[0]}/heartbeat", json={"current_jobs": 2})
        assert r.status_code == 200
        listed = (await c.get("/api/v1/workers")).json()
        assert [w["id"] for w in listed] == [ids[0], ids[2], ids[1]]
        assert set(listed[0]) == {
            "id",
            "queue_name",
            "hostname",
            "status",
            "current_jobs",
            "max_concurrency",
            "last_heartbeat",
        }
        assert listed[0]["current_jobs"] == 2
        page = (await c.get("/api/v1/workers", params={"limit": 1, "offset": 1})).json()
        assert [w["id"] for w in page] == [ids[2]]
        assert len((await c.get("/api/v1/workers", params={"limit": 0})).json()) == 1


async def test_heartbeat_stores_state_and_validates(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        w = await register(c, metadata={"old": True})
        url = f"/api/v1/workers/{w['id']}/heartbeat"
        r = await c.post(url, json={"current_jobs": 3, "status": "degraded", "metadata": {"load": 0.5}})
        assert r.status_code == 200, r.text
        assert r.json() == {"acknowledged": True, "should_drain": False}
        got = (await c.get(f"/api/v1/workers/{w['id']}")).json()
        assert (got["current_jobs"], got["status"], got["metadata"]) == (3, "degraded", {"load": 0.5})
        r = await c.post(url, json={"current_jobs": 1})
        assert r.status_code == 200
        got = (await c.get(f"/api/v1/workers/{w['id']}")).json()
        assert (got["current_jobs"], got["status"], got["metadata"]) == (1, "healthy", {"load": 0.5})
        for body, status in [
            ({"current_jobs": 1001}, 400),
            ({"current_jobs": -1}, 400),
            ({"current_jobs": 1, "status": "sleeping"}, 400),
            ({}, 422),
            ({"current_jobs": "3"}, 422),
        ]:
            r = await c.post(url, json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"
        r = await c.post("/api/v1/workers/unknown-worker/heartbeat", json={"current_jobs": 0})
        assert r.status_code == 404
        assert r.json()["code"] == "NOT_FOUND"


async def test_drain_is_kept_by_heartbeats_until_reregistration(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        w = await register(c, worker_id=f"drainee-{uuid.uuid4().hex[:8]}")
        wid = w["id"]
        r = await c.post(f"/api/v1/workers/{wid}/drain")
        assert r.status_code == 200, r.text
        assert set(r.json()) == WORKER_FIELDS
        assert r.json()["status"] == "draining"
        r = await c.post(f"/api/v1/workers/{wid}/heartbeat", json={"current_jobs": 0, "status": "healthy"})
        assert r.json() == {"acknowledged": True, "should_drain": True}
        assert (await c.get(f"/api/v1/workers/{wid}")).json()["status"] == "draining"
        await register(c, worker_id=wid)
        r = await c.post(f"/api/v1/workers/{wid}/heartbeat", json={"current_jobs": 0})
        assert r.json()["should_drain"] is False
        assert (await c.post("/api/v1/workers/nobody/drain")).status_code == 404


async def test_worker_reporting_draining_should_drain(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        w = await register(c)
        r = await c.post(
            f"/api/v1/workers/{w['id']}/heartbeat", json={"current_jobs": 0, "status": "draining"}
        )
        assert r.json()["should_drain"] is True


async def test_paused_or_disabled_queue_makes_workers_drain(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        await enqueue(c, "pausable")
        w = await register(c, "pausable")
        url = f"/api/v1/workers/{w['id']}/heartbeat"
        assert (await c.post(url, json={"current_jobs": 0})).json()["should_drain"] is False
        assert (await c.post("/api/v1/queues/pausable/pause")).status_code == 200
        assert (await c.post(url, json={"current_jobs": 0})).json()["should_drain"] is True
        assert (await c.post("/api/v1/queues/pausable/resume")).status_code == 200
        assert (await c.post(url, json={"current_jobs": 0})).json()["should_drain"] is False
        r = await c.put("/api/v1/queues/pausable/config", json={"enabled": False})
        assert r.status_code == 200, r.text
        assert (await c.post(url, json={"current_jobs": 0})).json()["should_drain"] is True
        # The worker's own status is untouched: only the answer says drain.
        assert (await c.get(f"/api/v1/workers/{w['id']}")).json()["status"] == "healthy"


async def test_deregister_releases_processing_jobs_without_a_retry(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    async with tenant.async_client() as c:
        w = await register(c, "release", worker_id=f"leaver-{uuid.uuid4().hex[:8]}")
        leaver = w["id"]
        first = await enqueue(c, "release", max_retries=3)
        second = await enqueue(c, "release")
        untouched = await enqueue(c, "release")
        # Give `first` one used retry, so "unchanged" is visible as 1 rather than a default 0.
        [job] = await claim(c, "release", leaver)
        assert job["id"] == first
        r = await c.post(
            f"/api/v1/jobs/{first}/fail",
            json={"worker_id": leaver, "lease_id": job["lease_id"], "error": "boom"},
        )
        assert r.json()["retry_count"] == 1
        await owner_db.execute("UPDATE jobs SET scheduled_at = NULL WHERE id = $1", uuid.UUID(first))
        claimed = await claim(c, "release", leaver, limit=2)
        assert {j["id"] for j in claimed} == {first, second}
        old_leases = {j["id"]: j["lease_id"] for j in claimed}
        other_worker_job = await enqueue(c, "release-other")
        [other] = await claim(c, "release-other", "someone-else")

        r = await c.post(f"/api/v1/workers/{w['id']}/deregister")
        assert r.status_code == 204, r.text
        assert r.content == b""
        for job_id, retries in ((first, 1), (second, 0)):
            j = (await c.get(f"/api/v1/jobs/{job_id}")).json()
            assert (j["status"], j["retry_count"], j["assigned_worker_id"], j["lease_id"]) == (
                "pending",
                retries,
                None,
                None,
            )
        assert (await c.get(f"/api/v1/jobs/{untouched}")).json()["status"] == "pending"
        assert (await c.get(f"/api/v1/jobs/{other_worker_job}")).json()["status"] == "processing"
        assert (await c.get(f"/api/v1/workers/{leaver}")).json()["status"] == "offline"
        # The old leases are fenced off; the released jobs can be claimed again.
        r = await c.post(
            f"/api/v1/jobs/{second}/complete", json={"worker_id": leaver, "lease_id": old_leases[second]}
        )
        assert r.status_code == 409 and r.json()["code"] == "LEASE_EXPIRED"
        again = await claim(c, "release", "new-worker", limit=3)
        assert {j["id"] for j in again} == {first, second, untouched}
        assert other["id"] == other_worker_job
        history = (await c.get(f"/api/v1/jobs/{second}/history")).json()
        assert [h["event_type"] for h in history][-2:] == ["requeued", "claimed"]


async def test_delete_alias_deregisters_and_unknown_is_404(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        w = await register(c, "alias")
        job = await enqueue(c, "alias")
        await claim(c, "alias", w["id"])
        r = await c.delete(f"/api/v1/workers/{w['id']}")
        assert r.status_code == 204, r.text
        assert (await c.get(f"/api/v1/jobs/{job}")).json()["status"] == "pending"
        assert (await c.get(f"/api/v1/workers/{w['id']}")).json()["status"] == "offline"
        for method in ("post", "delete"):
            path = "/api/v1/workers/ghost" + ("/deregister" if method == "post" else "")
            r = await getattr(c, method)(path)
            assert r.status_code == 404, r.text
            assert r.json()["code"] == "NOT_FOUND"


async def test_register_and_deregister_write_webhook_deliveries(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        r = await c.post(
            "/api/v1/outgoing-webhooks",
            json={
                "name": "worker events",
                "url": "http://127.0.0.1:9/hook",
                "events": ["worker.registered", "worker.deregistered"],
            },
        )
        assert r.status_code == 201, r.text
        hook = r.json()["id"]
        w = await register(c, "hooked", hostname="box-7")
        await enqueue(c, "hooked")
        await claim(c, "hooked", w["id"])
        assert (await c.post(f"/api/v1/workers/{w['id']}/deregister")).status_code == 204
        r = await c.get(f"/api/v1/outgoing-webhooks/{hook}/deliveries")
        assert r.status_code == 200, r.text
        by_event = {d["event"]: d["payload"]["data"] for d in r.json()}
        assert by_event["worker.registered"] == {
            "worker_id": w["id"],
            "queue_name": "hooked",
            "hostname": "box-7",
        }
        assert by_event["worker.deregistered"] == {
            "worker_id": w["id"],
            "queue_name": "hooked",
            "released_jobs": 1,
        }
