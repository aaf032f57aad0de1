"""Cron schedules over real HTTP against a real server and Postgres (rest.md §11, semantics.md §8)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from spooled_server.app import build_core
from spooled_server.config import Settings
from spooled_server.core import schedules as schedules_core

from ..conftest import wait_until
from ..support import ServerProcess, Tenant, TestDatabase, create_tenant, running_server


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def create(c: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "nightly",
        "cron_expression": "0 3 * * *",
        "queue_name": "reports",
        "payload_template": {"kind": "report"},
    }
    body.update(overrides)
    r = c.post("/api/v1/schedules", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def runs(c: httpx.Client, schedule_id: str, limit: int = 500) -> list[dict[str, Any]]:
    r = c.get(f"/api/v1/schedules/{schedule_id}/history", params={"limit": limit})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def limited_tenant(
    server: ServerProcess, owner_db: asyncpg.Connection, tier: str, custom: str | None = None
) -> Tenant:
    """A new organization on another plan (set before its key is first used: no cache holds the old one)."""
    t = create_tenant(server)
    await owner_db.execute(
        "UPDATE organizations SET plan_tier = $2, custom_limits = $3::jsonb WHERE id = $1",
        uuid.UUID(t.org_id),
        tier,
        custom,
    )
    return t


# --- CRUD and validation ---------------------------------------------------------------------------------


def test_create_get_list_update_delete(tenant: Tenant, other_tenant: Tenant) -> None:
    with tenant.client() as c:
        created = create(
            c,
            timezone="Europe/Berlin",
            priority=7,
            tags={"team": "bi"},
            metadata={"owner": "x"},
            description="daily report",
        )
        assert set(created) == {"id", "name", "cron_expression", "next_run_at"}
        next_run = parse_ts(created["next_run_at"])
        # 03:00 in Berlin is 01:00 or 02:00 UTC.
        assert next_run > datetime.now(UTC) and next_run.minute == 0 and next_run.hour in (1, 2)
        sid = created["id"]
        s = c.get(f"/api/v1/schedules/{sid}").json()
        assert s["timezone"] == "Europe/Berlin"
        assert s["payload_template"] == {"kind": "report"}
        assert s["priority"] == 7 and s["tags"] == {"team": "bi"} and s["metadata"] == {"owner": "x"}
        # Unset retries and timeout report what a fire would use now.
        assert s["max_retries"] == 3 and s["timeout_seconds"] == 300
        assert s["is_active"] is True and s["run_count"] == 0 and s["last_run_at"] is None
        assert s["organization_id"] == tenant.org_id

        other = create(c, name="other", queue_name="other-q", cron_expression="*/5 * * * *")
        listed = c.get("/api/v1/schedules").json()
        assert [x["id"] for x in listed] == [other["id"], sid]  # newest first
        assert [x["id"] for x in c.get("/api/v1/schedules", params={"queue_name": "reports"}).json()] == [sid]

        r = c.put(
            f"/api/v1/schedules/{sid}",
            json={"cron_expression": "30 12 * * *", "timezone": "UTC", "max_retries": 5, "description": None},
        )
        assert r.status_code == 200, r.text
        updated = r.json()
        assert updated["cron_expression"] == "30 12 * * *" and updated["max_retries"] == 5
        assert updated["description"] is None and updated["name"] == "nightly"
        new_next = parse_ts(updated["next_run_at"])
        assert (new_next.hour, new_next.minute) == (12, 30)

        paused = c.post(f"/api/v1/schedules/{sid}/pause").json()
        assert paused["is_active"] is False
        assert [x["id"] for x in c.get("/api/v1/schedules", params={"is_active": "false"}).json()] == [sid]
        resumed = c.post(f"/api/v1/schedules/{sid}/resume").json()
        assert resumed["is_active"] is True

    with other_tenant.client() as o:
        assert o.get(f"/api/v1/schedules/{sid}").status_code == 404
        assert o.delete(f"/api/v1/schedules/{sid}").status_code == 404
        assert o.get("/api/v1/schedules").json() == []

    with tenant.client() as c:
        assert c.delete(f"/api/v1/schedules/{sid}").status_code == 204
        r = c.get(f"/api/v1/schedules/{sid}")
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        assert c.get("/api/v1/schedules/not-a-uuid").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron_expression": "0 0 * * MON"}, "cron_expression"),
        ({"cron_expression": "@daily"}, "cron_expression"),
        ({"cron_expression": "0 0 31 2 *"}, "cron_expression"),
        ({"cron_expression": "* * * *"}, "cron_expression"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"timezone": "+25:00"}, "timezone"),
        ({"priority": 101}, "priority"),
        ({"max_retries": 101}, "max_retries"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"queue_name": ".bad"}, "queue_name"),
        ({"name": ""}, "name"),
        ({"tags": "x"}, "tags"),
        ({"metadata": [1]}, "metadata"),
    ],
)
def test_create_rejects_invalid_fields(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "name": "n",
        "cron_expression": "* * * * *",
        "queue_name": "q",
        "payload_template": {},
    }
    base.update(body)
    with tenant.client() as c:
        r = c.post("/api/v1/schedules", json=base)
        assert r.status_code == 400, r.text
        error = r.json()
        assert error["code"] == "VALIDATION_ERROR"
        assert error["message"].startswith(f"{field}: ")
        assert c.get("/api/v1/schedules").json() == []


def test_create_shape_errors(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.post("/api/v1/schedules", json={"name": "n", "cron_expression": "* * * * *", "queue_name": "q"})
        assert r.status_code == 422 and r.json()["details"][0]["code"] == "missing_field"
        r = c.post(
            "/api/v1/schedules",
            json={
                "name": "n",
                "cron_expression": "* * * * *",
                "queue_name": "q",
                "payload_template": {},
                "priority": "high",
            },
        )
        assert r.status_code == 422
        sid = create(c)["id"]
        r = c.put(f"/api/v1/schedules/{sid}", json={"cron_expression": "61 * * * *"})
        assert r.status_code == 400 and r.json()["message"].startswith("cron_expression: ")


def test_preview(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.get(
            "/api/v1/schedules/preview",
            params={"cron": "30 2 * * *", "timezone": "America/New_York", "count": 4},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["cron_expression"] == "30 2 * * *" and body["timezone"] == "America/New_York"
        times = [parse_ts(t) for t in body["next_runs"]]
        assert len(times) == 4 and times == sorted(times) and times[0] > datetime.now(UTC)
        assert all(t.minute == 30 and t.hour in (6, 7) for t in times)  # 02:30 EST/EDT in UTC
        default = c.get("/api/v1/schedules/preview", params={"cron": "*/10 * * * * *"}).json()
        assert default["timezone"] == "UTC" and len(default["next_runs"]) == 5
        assert all(parse_ts(t).second % 10 == 0 for t in default["next_runs"])
        assert (
            len(
                c.get("/api/v1/schedules/preview", params={"cron": "* * * * *", "count": 50}).json()[
                    "next_runs"
                ]
            )
            == 50
        )
        for params, field in [
            ({"cron": "* * * * *", "count": 51}, "count"),
            ({"cron": "* * * * *", "count": 0}, "count"),
            ({"cron": "0 0 L * *"}, "cron"),
            ({"cron": "* * * * *", "timezone": "Nowhere/City"}, "timezone"),
            ({}, "cron"),
        ]:
            r = c.get("/api/v1/schedules/preview", params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["message"].startswith(f"{field}: ")
        assert (
            httpx.get(
                tenant.server.base_url + "/api/v1/schedules/preview", params={"cron": "* * * * *"}
            ).status_code
            == 401
        )


# --- firing ----------------------------------------------------------------------------------------------


def test_second_cron_fires_on_time(tenant: Tenant) -> None:
    with tenant.client() as c:
        started = time.monotonic()
        created = create(
            c,
            name="every-second",
            cron_expression="* * * * * *",
            queue_name="ticks",
            payload_template={"tick": True},
            priority=5,
            tags=["cron"],
        )
        first_slot = parse_ts(created["next_run_at"])
        sid = created["id"]
        wait_until(lambda: len(runs(c, sid)) >= 3, timeout=15)
        elapsed = time.monotonic() - started
        c.post(f"/api/v1/schedules/{sid}/pause")
        history = list(reversed(runs(c, sid)))
        # Each fire comes within a fraction of a second of its slot: the first one of the slot announced at
        # creation, and the slots are whole seconds, one per second (no 10 s sweep).
        first = parse_ts(history[0]["started_at"])
        assert timedelta(0) <= first - first_slot < timedelta(seconds=1.5), (first, first_slot)
        for run in history[:3]:
            assert run["status"] == "completed" and run["error_message"] is None
            assert run["job_status"] == "pending"
        assert elapsed < 10, elapsed
        job = c.get(f"/api/v1/jobs/{history[0]['job_id']}").json()
        assert job["queue_name"] == "ticks" and job["payload"] == {"tick": True}
        assert job["priority"] == 5 and job["tags"] == ["cron"] and job["status"] == "pending"
        assert job["max_retries"] == 3 and job["timeout_seconds"] == 300
        s = c.get(f"/api/v1/schedules/{sid}").json()
        assert s["run_count"] == len(history) and s["last_run_at"] == history[-1]["started_at"]
        # The fired jobs are claimable at once.
        claimed = c.post(
            "/api/v1/jobs/claim", json={"queue_name": "ticks", "worker_id": "w", "limit": 10}
        ).json()
        assert len(claimed["jobs"]) == len(history)


def test_slots_are_distinct_and_paused_schedule_stops(tenant: Tenant) -> None:
    with tenant.client() as c:
        sid = create(c, cron_expression="* * * * * *", queue_name="ticks2")["id"]
        wait_until(lambda: len(runs(c, sid)) >= 3, timeout=15)
        c.post(f"/api/v1/schedules/{sid}/pause")
        time.sleep(0.3)  # a fire already in its transaction may still commit
        settled = len(runs(c, sid))
        time.sleep(1.5)
        assert len(runs(c, sid)) == settled
        seconds = [parse_ts(r["started_at"]).replace(microsecond=0) for r in runs(c, sid)]
        assert len(seconds) == len(set(seconds))


def test_fires_exactly_once_with_two_server_processes(database: TestDatabase, tenant: Tenant) -> None:
    with running_server(database.url) as second, tenant.client() as c:
        sid = create(c, name="shared", cron_expression="* * * * * *", queue_name="shared-q")["id"]
        # Both replicas see the schedule; let it run through several seconds, also created through the
        # second replica to wake its scheduler.
        with httpx.Client(
            base_url=second.base_url, headers={"Authorization": f"Bearer {tenant.api_key}"}
        ) as c2:
            sid2 = create(c2, name="shared-2", cron_expression="* * * * * *", queue_name="shared-q")["id"]
            wait_until(lambda: len(runs(c, sid)) >= 4 and len(runs(c2, sid2)) >= 4, timeout=20)
            c.post(f"/api/v1/schedules/{sid}/pause")
            c2.post(f"/api/v1/schedules/{sid2}/pause")
        time.sleep(0.3)
        for schedule_id in (sid, sid2):
            history = runs(c, schedule_id)
            slots = [parse_ts(r["started_at"]).replace(microsecond=0) for r in history]
            assert len(slots) == len(set(slots)), slots  # never two fires for one second
            assert len({r["job_id"] for r in history}) == len(history)
            assert c.get(f"/api/v1/schedules/{schedule_id}").json()["run_count"] == len(history)
        stats = c.get("/api/v1/jobs/stats", params={"queue_name": "shared-q"}).json()
        assert stats["total"] == len(runs(c, sid)) + len(runs(c, sid2))


async def test_concurrent_firing_of_one_due_schedule_fires_once(
    database: TestDatabase, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    """Many replicas racing for the same due schedule (plus the server's own loop): one job, one run."""
    with tenant.client() as c:
        sid = create(c, name="race", cron_expression="0 0 1 1 *", queue_name="race-q")["id"]
    settings = Settings.from_env(
        {"DATABASE_URL": database.url, "SPOOLED_ENV": "development", "SPOOLED_DB_POOL_SIZE": "12"}
    )
    core = build_core(settings)
    try:
        await owner_db.execute(
            "UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE id = $1", uuid.UUID(sid)
        )
        results = await asyncio.gather(
            *[
                schedules_core.fire_schedule(core, uuid.UUID(sid), uuid.UUID(tenant.org_id), "unlimited")
                for _ in range(12)
            ]
        )
    finally:
        await core.db.dispose()
    fired_here = [r for r in results if r is not None]
    assert len(fired_here) <= 1
    with tenant.client() as c:
        wait_until(lambda: len(runs(c, sid)) >= 1)
        await asyncio.sleep(0.5)  # give a second fire (if the lock failed) time to land
        assert len(runs(c, sid)) == 1
        assert c.get("/api/v1/jobs/stats", params={"queue_name": "race-q"}).json()["total"] == 1
        s = c.get(f"/api/v1/schedules/{sid}").json()
        assert s["run_count"] == 1 and parse_ts(s["next_run_at"]) > datetime.now(UTC) + timedelta(days=1)


async def test_missed_fires_run_once_then_continue_from_now(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    # Start well clear of a minute boundary: the regular next fire must not land inside the checks below.
    second = datetime.now(UTC).second
    if not 2 <= second <= 40:
        await asyncio.sleep((62 - second) % 60)
    with tenant.client() as c:
        sid = create(c, name="minutely", cron_expression="* * * * *", queue_name="missed")["id"]
        # As if the servers were down for an hour: 60 slots were missed.
        await owner_db.execute(
            "UPDATE schedules SET next_run_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(sid)
        )
        c.put(f"/api/v1/schedules/{sid}", json={"description": "wake the scheduler"})
        wait_until(lambda: len(runs(c, sid)) >= 1, timeout=10)
        await asyncio.sleep(1.0)
        assert len(runs(c, sid)) == 1  # no backfill
        s = c.get(f"/api/v1/schedules/{sid}").json()
        next_run = parse_ts(s["next_run_at"])
        now = datetime.now(UTC)
        assert now < next_run <= now + timedelta(seconds=61) and next_run.second == 0


def test_manual_trigger_and_history(tenant: Tenant) -> None:
    with tenant.client() as c:
        created = create(
            c,
            name="manual",
            cron_expression="0 0 1 1 *",
            queue_name="manual-q",
            payload_template={"n": 1},
            max_retries=7,
        )
        sid = created["id"]
        r = c.post(f"/api/v1/schedules/{sid}/trigger")
        assert r.status_code == 200, r.text
        first = r.json()
        assert set(first) == {"job_id", "triggered_at", "scheduled_at"}
        assert first["scheduled_at"] == first["triggered_at"]
        second = c.post(f"/api/v1/schedules/{sid}/trigger").json()
        job = c.get(f"/api/v1/jobs/{first['job_id']}").json()
        assert job["status"] == "pending" and job["payload"] == {"n": 1} and job["max_retries"] == 7
        s = c.get(f"/api/v1/schedules/{sid}").json()
        assert s["next_run_at"] == created["next_run_at"]  # a trigger leaves the cron clock alone
        assert s["run_count"] == 2
        history = runs(c, sid)
        assert [h["job_id"] for h in history] == [second["job_id"], first["job_id"]]  # newest first
        assert history[0]["started_at"] == second["triggered_at"]
        assert all(h["status"] == "completed" and h["schedule_id"] == sid for h in history)
        assert len(runs(c, sid, limit=1)) == 1
        # job_status follows the job.
        claimed = c.post("/api/v1/jobs/claim", json={"queue_name": "manual-q", "worker_id": "w", "limit": 1})
        claimed_id = claimed.json()["jobs"][0]["id"]
        statuses = {h["job_id"]: h["job_status"] for h in runs(c, sid)}
        assert statuses[claimed_id] == "processing"
        assert c.post(f"/api/v1/schedules/{uuid.uuid4()}/trigger").status_code == 404


# --- quotas ----------------------------------------------------------------------------------------------


async def test_schedule_quota(server: ServerProcess, owner_db: asyncpg.Connection) -> None:
    t = await limited_tenant(server, owner_db, "free")  # max_schedules 1
    with t.client() as c:
        sid = create(c)["id"]
        r = c.post(
            "/api/v1/schedules",
            json={
                "name": "two",
                "cron_expression": "* * * * *",
                "queue_name": "reports",
                "payload_template": {},
            },
        )
        assert r.status_code == 429, r.text
        body = r.json()
        assert body["code"] == "QUOTA_EXCEEDED" and body["resource"] == "schedules"
        assert body["current"] == 1 and body["limit"] == 1 and body["plan"] == "free"
        # Paused schedules do not count; resuming one over the cap is refused.
        c.post(f"/api/v1/schedules/{sid}/pause")
        other = create(c, name="two")["id"]
        r = c.post(f"/api/v1/schedules/{sid}/resume")
        assert r.status_code == 429 and r.json()["resource"] == "schedules"
        r = c.put(f"/api/v1/schedules/{sid}", json={"is_active": True})
        assert r.status_code == 429
        assert c.get(f"/api/v1/schedules/{other}").json()["is_active"] is True


async def test_fire_blocked_by_daily_quota_records_a_failed_run(
    server: ServerProcess, owner_db: asyncpg.Connection
) -> None:
    t = await limited_tenant(server, owner_db, "starter", '{"max_jobs_per_day": 1}')
    with t.client() as c:
        sid = create(c, cron_expression="0 0 1 1 *", queue_name="quota-q")["id"]
        assert c.post(f"/api/v1/schedules/{sid}/trigger").status_code == 200
        r = c.post(f"/api/v1/schedules/{sid}/trigger")
        assert r.status_code == 429 and r.json()["resource"] == "jobs_per_day"
        await owner_db.execute(
            "UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE id = $1", uuid.UUID(sid)
        )
        wait_until(lambda: len(runs(c, sid)) >= 2, timeout=10)
        latest = runs(c, sid)[0]
        assert latest["status"] == "failed" and latest["job_id"] is None and latest["job_status"] is None
        assert "jobs_per_day" in latest["error_message"]
        s = c.get(f"/api/v1/schedules/{sid}").json()
        assert parse_ts(s["next_run_at"]) > datetime.now(UTC)  # the clock still moved on
        assert c.get("/api/v1/jobs/stats", params={"queue_name": "quota-q"}).json()["total"] == 1
