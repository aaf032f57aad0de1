"""Queues over real HTTP (rest.md §9, semantics.md §10): implicit queues, config upsert, stats, pause and
resume (claims blocked, long-poll woken), deletion."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from ..support import Tenant

SUMMARY_FIELDS = {
    "queue_name",
    "max_retries",
    "default_timeout",
    "rate_limit",
    "enabled",
    "retry_backoff_base_secs",
    "retry_backoff_max_secs",
}
CONFIG_FIELDS = SUMMARY_FIELDS | {"id", "organization_id", "settings", "created_at", "updated_at"}
DEFAULTS = {
    "max_retries": 3,
    "default_timeout": 300,
    "rate_limit": None,
    "enabled": True,
    "retry_backoff_base_secs": 60,
    "retry_backoff_max_secs": 3600,
}


def implicit_id(org_id: str, queue: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org_id}/{queue}"))


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
    r = await c.post("/api/v1/jobs", json={"queue_name": queue, "payload": {"n": 1}} | extra)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def claim(
    c: httpx.AsyncClient, queue: str, worker: str = "w", limit: int = 10, **extra: object
) -> list[dict]:
    r = await c.post(
        "/api/v1/jobs/claim", json={"queue_name": queue, "worker_id": worker, "limit": limit} | extra
    )
    assert r.status_code == 200, r.text
    return list(r.json()["jobs"])


async def test_list_includes_implicit_queues_with_effective_defaults(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    async with tenant.async_client() as c, other_tenant.async_client() as other:
        await enqueue(c, "zeta")
        await enqueue(c, "alpha")
        await enqueue(c, "alpha")
        await enqueue(other, "not-mine")
        r = await c.put("/api/v1/queues/mid/config", json={"max_retries": 7, "rate_limit": 50})
        assert r.status_code == 200, r.text
        r = await c.get("/api/v1/queues")
        assert r.status_code == 200
        queues = r.json()
        assert [q["queue_name"] for q in queues] == ["alpha", "mid", "zeta"]
        for q in queues:
            assert set(q) == SUMMARY_FIELDS
        assert {k: queues[0][k] for k in DEFAULTS} == DEFAULTS
        assert queues[1] | {} == {"queue_name": "mid", **DEFAULTS, "max_retries": 7, "rate_limit": 50}
        page = (await c.get("/api/v1/queues", params={"limit": 1, "offset": 1})).json()
        assert [q["queue_name"] for q in page] == ["mid"]
        assert [q["queue_name"] for q in (await other.get("/api/v1/queues")).json()] == ["not-mine"]


async def test_get_implicit_queue_and_errors(tenant: Tenant, other_tenant: Tenant) -> None:
    async with tenant.async_client() as c, other_tenant.async_client() as other:
        first = await enqueue(c, "implicit")
        await enqueue(c, "implicit")
        created = (await c.get(f"/api/v1/jobs/{first}")).json()["created_at"]
        r = await c.get("/api/v1/queues/implicit")
        assert r.status_code == 200, r.text
        q = r.json()
        assert set(q) == CONFIG_FIELDS
        assert q["id"] == implicit_id(tenant.org_id, "implicit")
        assert q["organization_id"] == tenant.org_id
        assert {k: q[k] for k in DEFAULTS} == DEFAULTS
        assert q["settings"] == {}
        assert q["created_at"] == q["updated_at"] == created
        for path, status in [
            ("/api/v1/queues/nothing-here", 404),
            ("/api/v1/queues/.bad", 400),
            ("/api/v1/queues/" + "x" * 101, 400),
        ]:
            r = await c.get(path)
            assert r.status_code == status, (path, r.text)
        assert (await other.get("/api/v1/queues/implicit")).status_code == 404


async def test_percent_encoded_unicode_queue_names(tenant: Tenant) -> None:
    name = "café.ünïcode"
    async with tenant.async_client() as c:
        await enqueue(c, name)
        r = await c.get("/api/v1/queues/" + quote(name))
        assert r.status_code == 200, r.text
        assert r.json()["queue_name"] == name
        r = await c.post("/api/v1/queues/" + quote(name) + "/pause", json={"reason": "maintenance"})
        assert r.status_code == 200, r.text
        assert r.json()["queue_name"] == name


async def test_config_upsert_keeps_omitted_fields_and_merges_settings(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        await enqueue(c, "cfg")
        r = await c.put(
            "/api/v1/queues/cfg/config",
            json={
                "max_retries": 5,
                "default_timeout": 120,
                "settings": {"a": 1, "b": {"x": 1}},
                "retry_backoff_base_secs": 10,
                "retry_backoff_max_secs": 100,
                "queue_name": "ignored",
            },
        )
        assert r.status_code == 200, r.text
        q = r.json()
        assert set(q) == CONFIG_FIELDS
        assert q["id"] == implicit_id(tenant.org_id, "cfg")  # the implicit id is kept by the new row
        assert q["queue_name"] == "cfg"
        assert (
            q["max_retries"],
            q["default_timeout"],
            q["retry_backoff_base_secs"],
            q["retry_backoff_max_secs"],
            q["rate_limit"],
            q["enabled"],
        ) == (5, 120, 10, 100, None, True)
        r = await c.put("/api/v1/queues/cfg", json={"rate_limit": 9, "settings": {"b": 2, "c": [3]}})
        assert r.status_code == 200, r.text
        q2 = r.json()
        assert (q2["max_retries"], q2["default_timeout"], q2["rate_limit"]) == (5, 120, 9)
        assert q2["settings"] == {"a": 1, "b": 2, "c": [3]}
        assert q2["created_at"] == q["created_at"]
        assert q2["updated_at"] >= q["updated_at"]
        assert (await c.get("/api/v1/queues/cfg")).json() == q2
        assert (await c.get("/api/v1/queues/ignored")).status_code == 404
        # New jobs take the queue's defaults.
        job = await enqueue(c, "cfg")
        got = (await c.get(f"/api/v1/jobs/{job}")).json()
        assert (got["max_retries"], got["timeout_seconds"]) == (5, 120)


async def test_config_validation(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        cases = [
            ({"max_retries": 101}, 400, "max_retries"),
            ({"max_retries": -1}, 400, "max_retries"),
            ({"default_timeout": 0}, 400, "default_timeout"),
            ({"default_timeout": 86401}, 400, "default_timeout"),
            ({"rate_limit": 0}, 400, "rate_limit"),
            ({"rate_limit": 100001}, 400, "rate_limit"),
            ({"retry_backoff_base_secs": 0}, 400, "retry_backoff_base_secs"),
            ({"retry_backoff_max_secs": 604801}, 400, "retry_backoff_max_secs"),
            ({"retry_backoff_base_secs": 100, "retry_backoff_max_secs": 99}, 400, "retry_backoff_max_secs"),
            # Checked against the effective value: the default cap is 3600.
            ({"retry_backoff_base_secs": 7200}, 400, "retry_backoff_max_secs"),
            ({"settings": {"big": "x" * 70000}}, 400, "settings"),
            ({"max_retries": "3"}, 422, "max_retries"),
            ({"settings": [1]}, 422, "settings"),
            ({"enabled": "yes"}, 422, "enabled"),
        ]
        for body, status, field in cases:
            r = await c.put("/api/v1/queues/valid/config", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"
            assert r.json()["message"].startswith(field), (body, r.text)
        assert (await c.put("/api/v1/queues/.bad/config", json={})).status_code == 400
        r = await c.put(
            "/api/v1/queues/valid/config", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"
        # Nothing above created the queue.
        assert (await c.get("/api/v1/queues/valid")).status_code == 404
        r = await c.put("/api/v1/queues/valid/config", json={"retry_backoff_base_secs": 20})
        assert r.status_code == 200
        r = await c.put("/api/v1/queues/valid/config", json={"retry_backoff_max_secs": 19})
        assert r.status_code == 400, r.text


async def test_new_queue_config_counts_against_the_cap_but_implicit_queues_do_not(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    await owner_db.execute(
        "UPDATE organizations SET plan_tier = 'free' WHERE id = $1", uuid.UUID(tenant.org_id)
    )
    async with tenant.async_client() as c:
        await enqueue(c, "one")
        assert (await c.put("/api/v1/queues/two/config", json={"max_retries": 1})).status_code == 200
        r = await c.put("/api/v1/queues/three/config", json={"max_retries": 1})
        assert r.status_code == 429, r.text
        body = r.json()
        assert (body["code"], body["resource"], body["current"], body["limit"]) == (
            "QUOTA_EXCEEDED",
            "queues",
            2,
            2,
        )
        # Configuring or pausing an existing (implicit) queue is not charged.
        assert (await c.put("/api/v1/queues/one/config", json={"max_retries": 2})).status_code == 200
        assert (await c.post("/api/v1/queues/one/pause")).status_code == 200
        assert (await c.get("/api/v1/queues/three")).status_code == 404


async def test_pause_of_an_implicit_queue_at_the_cap_creates_its_row(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    await owner_db.execute(
        "UPDATE organizations SET plan_tier = 'free' WHERE id = $1", uuid.UUID(tenant.org_id)
    )
    async with tenant.async_client() as c:
        await enqueue(c, "a")
        await enqueue(c, "b")
        r = await c.post("/api/v1/queues/b/pause", json={"reason": "deploy"})
        assert r.status_code == 200, r.text
        rows = await owner_db.fetch(
            "SELECT id, enabled FROM queue_configs WHERE organization_id = $1", uuid.UUID(tenant.org_id)
        )
        assert [(str(x["id"]), x["enabled"]) for x in rows] == [(implicit_id(tenant.org_id, "b"), False)]


async def test_stats(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    async with tenant.async_client() as c:
        done = await enqueue(c, "st")
        dead = await enqueue(c, "st", max_retries=0)
        await enqueue(c, "st")
        [job_done] = await claim(c, "st", "w1", limit=1)
        assert job_done["id"] == done
        await c.post(
            f"/api/v1/jobs/{done}/complete", json={"worker_id": "w1", "lease_id": job_done["lease_id"]}
        )
        [job_dead] = await claim(c, "st", "w1", limit=1)
        assert job_dead["id"] == dead
        await c.post(
            f"/api/v1/jobs/{dead}/fail",
            json={"worker_id": "w1", "lease_id": job_dead["lease_id"], "error": "x"},
        )
        await enqueue(c, "st")
        await claim(c, "st", "w2", limit=1)
        await c.post("/api/v1/workers/register", json={"queue_name": "st", "hostname": "h"})
        await owner_db.execute(
            "UPDATE jobs SET created_at = now() - interval '90 seconds'"
            " WHERE organization_id = $1 AND status = 'pending'",
            uuid.UUID(tenant.org_id),
        )
        r = await c.get("/api/v1/queues/st/stats")
        assert r.status_code == 200, r.text
        s = r.json()
        assert set(s) == {
            "queue_name",
            "pending_jobs",
            "processing_jobs",
            "completed_jobs_24h",
            "failed_jobs_24h",
            "avg_processing_time_ms",
            "max_job_age_seconds",
            "active_workers",
        }
        assert (
            s["queue_name"],
            s["pending_jobs"],
            s["processing_jobs"],
            s["completed_jobs_24h"],
            s["failed_jobs_24h"],
            s["active_workers"],
        ) == ("st", 1, 1, 1, 1, 1)
        assert isinstance(s["avg_processing_time_ms"], float) and s["avg_processing_time_ms"] >= 0
        assert 90 <= s["max_job_age_seconds"] < 200
        # A configured queue without jobs: zeros, nulls where nothing was measured.
        await c.put("/api/v1/queues/empty/config", json={})
        s = (await c.get("/api/v1/queues/empty/stats")).json()
        assert (
            s["pending_jobs"],
            s["avg_processing_time_ms"],
            s["max_job_age_seconds"],
            s["active_workers"],
        ) == (0, None, None, 0)
        assert (await c.get("/api/v1/queues/missing/stats")).status_code == 404


async def test_pause_blocks_claims_and_resume_allows_them(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        job = await enqueue(c, "pz")
        r = await c.post("/api/v1/queues/pz/pause", json={"reason": "maintenance"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"queue_name", "paused", "paused_at", "reason"}
        assert (body["queue_name"], body["paused"], body["reason"]) == ("pz", True, "maintenance")
        assert body["paused_at"].endswith("Z")
        q = (await c.get("/api/v1/queues/pz")).json()
        assert q["enabled"] is False
        assert q["settings"] == {
            "paused": True,
            "paused_at": body["paused_at"],
            "paused_reason": "maintenance",
        }
        # Pausing again keeps the first pause time; enqueue is still accepted; claims get nothing.
        again = (await c.post("/api/v1/queues/pz/pause")).json()
        assert again["paused_at"] == body["paused_at"] and again["reason"] is None
        second = await enqueue(c, "pz")
        assert await claim(c, "pz") == []
        r = await c.post("/api/v1/queues/pz/resume")
        assert r.status_code == 200, r.text
        resumed = r.json()
        assert set(resumed) == {"queue_name", "resumed", "paused_duration_secs"}
        assert resumed["resumed"] is True and isinstance(resumed["paused_duration_secs"], int)
        assert resumed["paused_duration_secs"] >= 0
        q = (await c.get("/api/v1/queues/pz")).json()
        assert q["enabled"] is True and q["settings"] == {}
        assert {j["id"] for j in await claim(c, "pz")} == {job, second}
        # Resuming a queue that is not paused reports 0.
        assert (await c.post("/api/v1/queues/pz/resume")).json()["paused_duration_secs"] == 0


async def test_paused_duration_is_measured(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    async with tenant.async_client() as c:
        await enqueue(c, "dur")
        assert (await c.post("/api/v1/queues/dur/pause")).status_code == 200
        await owner_db.execute(
            "UPDATE queue_configs SET settings = settings || jsonb_build_object('paused_at', to_char("
            "(now() - interval '75 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
            " WHERE organization_id = $1 AND queue_name = 'dur'",
            uuid.UUID(tenant.org_id),
        )
        duration = (await c.post("/api/v1/queues/dur/resume")).json()["paused_duration_secs"]
        assert 75 <= duration < 150


async def test_pause_and_resume_errors(tenant: Tenant, other_tenant: Tenant) -> None:
    async with tenant.async_client() as c, other_tenant.async_client() as other:
        await enqueue(c, "mine")
        assert (await c.post("/api/v1/queues/ghost/pause")).status_code == 404
        assert (await c.post("/api/v1/queues/mine/resume")).status_code == 404  # implicit: no config row
        assert (await other.post("/api/v1/queues/mine/pause")).status_code == 404
        r = await c.post("/api/v1/queues/mine/pause", json={"reason": "r" * 501})
        assert r.status_code == 400 and r.json()["message"].startswith("reason")
        # An empty body is fine whatever the content type.
        r = await c.post(
            "/api/v1/queues/mine/pause", content=b"", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["reason"] is None
        assert (await other.post("/api/v1/queues/mine/resume")).status_code == 404


async def test_resume_wakes_a_waiting_long_poll_claim(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        job = await enqueue(c, "wake")
        assert (await c.post("/api/v1/queues/wake/pause")).status_code == 200

        async def long_poll() -> tuple[list[dict], float]:
            jobs = await claim(c, "wake", "poller", limit=1, wait_secs=20)
            return jobs, time.monotonic()

        task = asyncio.create_task(long_poll())
        await asyncio.sleep(1.0)  # let the claim find nothing and start waiting
        assert not task.done()
        resumed_at = time.monotonic()
        assert (await c.post("/api/v1/queues/wake/resume")).status_code == 200
        jobs, answered_at = await asyncio.wait_for(task, 25)
        assert [j["id"] for j in jobs] == [job]
        # Without the wake-up the claim would only retry after the 5 s fallback poll.
        assert answered_at - resumed_at < 3.0


async def test_disabled_queue_blocks_claims_without_pause_metadata(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        job = await enqueue(c, "dis")
        q = (await c.put("/api/v1/queues/dis/config", json={"enabled": False})).json()
        assert q["enabled"] is False and q["settings"] == {}
        assert await claim(c, "dis") == []
        assert (await c.put("/api/v1/queues/dis/config", json={"enabled": True})).status_code == 200
        assert [j["id"] for j in await claim(c, "dis")] == [job]


async def test_delete_queue(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        # Config only: removed, the queue is gone.
        await c.put("/api/v1/queues/cfg-only/config", json={"max_retries": 1})
        r = await c.delete("/api/v1/queues/cfg-only")
        assert r.status_code == 204, r.text
        assert (await c.get("/api/v1/queues/cfg-only")).status_code == 404
        assert (await c.delete("/api/v1/queues/cfg-only")).status_code == 404

        # Pending jobs block the default delete.
        pending = await enqueue(c, "busy")
        await c.put("/api/v1/queues/busy/config", json={"max_retries": 1})
        r = await c.delete("/api/v1/queues/busy")
        assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
        r = await c.delete("/api/v1/queues/busy", params={"delete_jobs": "false"})
        assert r.status_code == 409

        # No row but finished jobs: 409 pointing at delete_jobs=true.
        done = await enqueue(c, "finished")
        [j] = await claim(c, "finished", "w")
        await c.post(f"/api/v1/jobs/{done}/complete", json={"worker_id": "w", "lease_id": j["lease_id"]})
        r = await c.delete("/api/v1/queues/finished")
        assert r.status_code == 409
        assert "delete_jobs=true" in r.json()["message"]

        # delete_jobs=true removes jobs (dead-lettered ones and their audit rows too) and the config row.
        dead = await enqueue(c, "busy", max_retries=0)
        await c.put("/api/v1/queues/busy/config", json={"max_retries": 1})
        claimed = await claim(c, "busy", "w")
        lease = {x["id"]: x["lease_id"] for x in claimed}
        await c.post(
            f"/api/v1/jobs/{dead}/fail", json={"worker_id": "w", "lease_id": lease[dead], "error": "x"}
        )
        r = await c.delete("/api/v1/queues/busy", params={"delete_jobs": "true"})
        assert r.status_code == 204, r.text
        for job_id in (pending, dead):
            assert (await c.get(f"/api/v1/jobs/{job_id}")).status_code == 404
        assert (await c.get("/api/v1/queues/busy")).status_code == 404
        assert (await c.delete("/api/v1/queues/finished", params={"delete_jobs": "true"})).status_code == 204
        assert (await c.get(f"/api/v1/jobs/{done}")).status_code == 404
        assert (await c.delete("/api/v1/queues/never", params={"delete_jobs": "true"})).status_code == 404
        assert (await c.delete("/api/v1/queues/.bad")).status_code == 400


async def test_scoped_key_sees_only_its_queues(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    key = await scoped_key(owner_db, tenant, ["team-a.*"])
    async with tenant.async_client() as admin, tenant.async_client(key) as scoped:
        await enqueue(admin, "team-a.jobs")
        await enqueue(admin, "team-b.jobs")
        assert [q["queue_name"] for q in (await scoped.get("/api/v1/queues")).json()] == ["team-a.jobs"]
        assert (await scoped.get("/api/v1/queues/team-a.jobs")).status_code == 200
        for method, path in [
            ("get", "/api/v1/queues/team-b.jobs"),
            ("get", "/api/v1/queues/team-b.jobs/stats"),
            ("post", "/api/v1/queues/team-b.jobs/pause"),
            ("post", "/api/v1/queues/team-b.jobs/resume"),
            ("delete", "/api/v1/queues/team-b.jobs"),
        ]:
            r = await getattr(scoped, method)(path)
            assert r.status_code == 404, (path, r.text)
        r = await scoped.put("/api/v1/queues/team-b.jobs/config", json={"max_retries": 1})
        assert r.status_code == 404
        assert len((await admin.get("/api/v1/queues")).json()) == 2


async def test_queue_targeted_by_an_active_schedule_exists(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    if await owner_db.fetchval("SELECT to_regclass('schedules')") is None:
        pytest.skip("the schedules table is not part of this build")
    org = uuid.UUID(tenant.org_id)
    await owner_db.execute(
        "INSERT INTO schedules (id, organization_id, name, cron_expression, queue_name, is_active)"
        " VALUES ($1, $2, 'on', '* * * * *', 'cron-q', true), ($3, $2, 'off', '* * * * *', 'idle-q', false)",
        uuid.uuid4(),
        org,
        uuid.uuid4(),
    )
    async with tenant.async_client() as c:
        assert [q["queue_name"] for q in (await c.get("/api/v1/queues")).json()] == ["cron-q"]
        q = (await c.get("/api/v1/queues/cron-q")).json()
        assert q["id"] == implicit_id(tenant.org_id, "cron-q")
        assert (await c.get("/api/v1/queues/idle-q")).status_code == 404
        assert (await c.post("/api/v1/queues/cron-q/pause")).status_code == 200


async def test_pause_and_resume_write_webhook_deliveries(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        r = await c.post(
            "/api/v1/outgoing-webhooks",
            json={
                "name": "queue events",
                "url": "http://127.0.0.1:9/hook",
                "events": ["queue.paused", "queue.resumed"],
            },
        )
        assert r.status_code == 201, r.text
        hook = r.json()["id"]
        await enqueue(c, "hooked")
        paused = (await c.post("/api/v1/queues/hooked/pause", json={"reason": "deploy"})).json()
        assert (await c.post("/api/v1/queues/hooked/resume")).status_code == 200
        r = await c.get(f"/api/v1/outgoing-webhooks/{hook}/deliveries")
        assert r.status_code == 200, r.text
        by_event = {d["event"]: d["payload"] for d in r.json()}
        assert set(by_event) == {"queue.paused", "queue.resumed"}
        assert by_event["queue.paused"]["data"] == {
            "queue_name": "hooked",
            "paused_at": paused["paused_at"],
            "reason": "deploy",
        }
        assert by_event["queue.resumed"]["data"]["queue_name"] == "hooked"
        assert isinstance(by_event["queue.resumed"]["data"]["paused_duration_secs"], int)
