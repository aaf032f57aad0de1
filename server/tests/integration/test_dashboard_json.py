"""GET /api/v1/dashboard (rest.md §16): the overview's shape and numbers, per organization and key scope."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from ..support import Tenant


def test_dashboard_shape_of_an_empty_org(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.get("/api/v1/dashboard")
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) == {"system", "jobs", "queues", "workers", "recent_activity"}
    system = d["system"]
    assert set(system) == {
        "version",
        "uptime_seconds",
        "started_at",
        "database_status",
        "cache_status",
        "environment",
    }
    assert isinstance(system["uptime_seconds"], int) and system["uptime_seconds"] >= 0
    assert system["started_at"].endswith("Z")
    assert system["database_status"] == "healthy"
    assert system["cache_status"] == "disabled"  # no Redis configured
    assert system["environment"] == "development"
    assert d["jobs"] == {
        "total": 0,
        "pending": 0,
        "processing": 0,
        "completed_24h": 0,
        "failed_24h": 0,
        "deadletter": 0,
        "avg_wait_time_ms": None,
        "avg_processing_time_ms": None,
    }
    assert d["queues"] == []
    assert d["workers"] == {"total": 0, "healthy": 0, "unhealthy": 0}
    assert d["recent_activity"] == {"jobs_created_1h": 0, "jobs_completed_1h": 0, "jobs_failed_1h": 0}


async def test_dashboard_numbers(tenant: Tenant, other_tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    org = uuid.UUID(tenant.org_id)
    with tenant.client() as c:
        c.post("/api/v1/jobs/bulk", json={"queue_name": "emails", "jobs": [{"payload": {}}] * 4})
        c.post("/api/v1/jobs/bulk", json={"queue_name": "sms", "jobs": [{"payload": {}}] * 2})
        done = c.post(
            "/api/v1/jobs/claim", json={"queue_name": "emails", "worker_id": "w1", "limit": 2}
        ).json()
        first = done["jobs"][0]
        assert (
            c.post(
                f"/api/v1/jobs/{first['id']}/complete",
                json={"worker_id": "w1", "lease_id": first["lease_id"]},
            ).status_code
            == 200
        )
        dead = c.post("/api/v1/jobs", json={"queue_name": "sms", "payload": {}, "max_retries": 0}).json()[
            "id"
        ]
        claimed = c.post(
            "/api/v1/jobs/claim", json={"queue_name": "sms", "worker_id": "w2", "limit": 3}
        ).json()
        target = next(j for j in claimed["jobs"] if j["id"] == dead)
        c.post(
            f"/api/v1/jobs/{dead}/fail",
            json={"worker_id": "w2", "lease_id": target["lease_id"], "error": "boom"},
        )
    await owner_db.execute(
        "INSERT INTO queue_configs (id, organization_id, queue_name, enabled, settings)"
        " VALUES ($1, $2, 'idle', false, '{\"paused\": true}'::jsonb)",
        uuid.uuid4(),
        org,
    )
    await owner_db.executemany(
        "INSERT INTO workers (id, organization_id, queue_name, hostname, status, last_heartbeat)"
        " VALUES ($1, $2, $3, 'host', $4, now() - make_interval(secs => $5))",
        [
            (f"d-{uuid.uuid4().hex[:8]}", org, "emails", "healthy", 5.0),
            (f"d-{uuid.uuid4().hex[:8]}", org, "sms", "healthy", 90.0),
            (f"d-{uuid.uuid4().hex[:8]}", org, "sms", "offline", 5.0),
        ],
    )
    with tenant.client() as c:
        d = c.get("/api/v1/dashboard").json()
    jobs = d["jobs"]
    # emails: 4 created, 2 claimed, 1 of them completed; sms: 3 created, all claimed, 1 dead-lettered.
    assert jobs["total"] == 7
    assert jobs["pending"] == 2
    assert jobs["processing"] == 3
    assert jobs["completed_24h"] == 1 and jobs["failed_24h"] == 1 and jobs["deadletter"] == 1
    assert jobs["avg_wait_time_ms"] is not None and jobs["avg_wait_time_ms"] >= 0
    assert jobs["avg_processing_time_ms"] is not None and jobs["avg_processing_time_ms"] >= 0
    assert d["queues"] == [
        {"name": "emails", "pending": 2, "processing": 1, "paused": False},
        {"name": "idle", "pending": 0, "processing": 0, "paused": True},
        {"name": "sms", "pending": 0, "processing": 2, "paused": False},
    ]
    assert d["workers"] == {"total": 2, "healthy": 1, "unhealthy": 1}
    assert d["recent_activity"] == {"jobs_created_1h": 7, "jobs_completed_1h": 1, "jobs_failed_1h": 1}
    # Nothing of this leaks into another organization.
    with other_tenant.client() as o:
        other = o.get("/api/v1/dashboard").json()
    assert other["jobs"]["total"] == 0 and other["queues"] == [] and other["workers"]["total"] == 0


def test_dashboard_lists_at_most_20_queues_most_pending_first(tenant: Tenant) -> None:
    with tenant.client() as c:
        for i in range(22):
            c.post(
                "/api/v1/jobs/bulk", json={"queue_name": f"q{i:02d}", "jobs": [{"payload": {}}] * (1 + i % 5)}
            )
        queues = c.get("/api/v1/dashboard").json()["queues"]
    assert len(queues) == 20
    pending = [q["pending"] for q in queues]
    assert pending == sorted(pending, reverse=True)
    assert pending[0] == 5


def test_scoped_key_sees_only_its_queues(tenant: Tenant) -> None:
    with tenant.client() as c:
        c.post("/api/v1/jobs/bulk", json={"queue_name": "emails-eu", "jobs": [{"payload": {}}] * 2})
        c.post("/api/v1/jobs/bulk", json={"queue_name": "billing", "jobs": [{"payload": {}}] * 5})
        scoped = c.post("/api/v1/api-keys", json={"name": "emails", "queues": ["emails-*"]}).json()["key"]
    with tenant.client(key=scoped) as s:
        d = s.get("/api/v1/dashboard").json()
    assert d["jobs"]["total"] == 2
    assert [q["name"] for q in d["queues"]] == ["emails-eu"]


def test_dashboard_needs_credentials(tenant: Tenant) -> None:
    r = httpx.get(tenant.server.base_url + "/api/v1/dashboard", timeout=30)
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"
    login = httpx.post(
        tenant.server.base_url + "/api/v1/auth/login", json={"api_key": tenant.api_key}, timeout=30
    )
    r = httpx.get(
        tenant.server.base_url + "/api/v1/dashboard",
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        timeout=30,
    )
    assert r.status_code == 200
