"""Jobs over real HTTP (rest.md §5): create with every field, bulk, get, cancel, retry, priority, stats,
batch status and history."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from ..conftest import wait_until
from ..support import Tenant, TestDatabase, create_tenant, running_server
from .jobs_support import (
    API,
    assert_error,
    claim,
    claim_one,
    complete,
    enqueue,
    expire_lease,
    fail,
    get_job,
    history,
    new_queue,
    now_utc,
    parse_ts,
    scoped_key,
)

JOB_FIELDS = {
    "id",
    "organization_id",
    "queue_name",
    "status",
    "payload",
    "result",
    "retry_count",
    "max_retries",
    "priority",
    "timeout_seconds",
    "last_error",
    "tags",
    "created_at",
    "updated_at",
    "scheduled_at",
    "started_at",
    "completed_at",
    "expires_at",
    "lease_expires_at",
    "parent_job_id",
    "completion_webhook",
    "assigned_worker_id",
    "lease_id",
    "idempotency_key",
    "workflow_id",
    "dependency_mode",
    "dependencies_met",
    "progress",
    "progress_message",
    "progress_updated_at",
}


# --- create -------------------------------------------------------------------------------------------------


def test_create_with_every_field_and_read_it_back(tenant: Tenant) -> None:
    q = new_queue()
    when = (now_utc() + timedelta(hours=2)).replace(microsecond=123456)
    expires = when + timedelta(days=1)
    with tenant.client() as c:
        r = c.post(
            f"{API}/jobs",
            json={
                "queue_name": q,
                "payload": {"to": "a@example.com", "nested": [1, 2.5, None, "x"]},
                "priority": 7,
                "max_retries": 9,
                "timeout_seconds": 45,
                "scheduled_at": when.isoformat(),
                "expires_at": expires.isoformat().replace("+00:00", "Z"),
                "tags": {"team": "billing", "urgent": True},
                "completion_webhook": "http://example.com/hook",
                "completion_webhook_secret": "s3cret",
                "idempotency_key": "create-all-fields",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json() == {"id": r.json()["id"], "created": True}
        job_id = r.json()["id"]
        assert str(uuid.UUID(job_id)) == job_id and uuid.UUID(job_id).version == 4
        job = get_job(c, job_id)
    assert set(job) == JOB_FIELDS
    assert "completion_webhook_secret" not in job
    assert job["id"] == job_id
    assert job["organization_id"] == tenant.org_id
    assert job["queue_name"] == q
    assert job["status"] == "scheduled"
    assert job["payload"] == {"to": "a@example.com", "nested": [1, 2.5, None, "x"]}
    assert job["result"] is None
    assert (job["retry_count"], job["max_retries"], job["priority"], job["timeout_seconds"]) == (0, 9, 7, 45)
    assert job["tags"] == {"team": "billing", "urgent": True}
    assert parse_ts(job["scheduled_at"]) == when
    assert job["scheduled_at"].endswith(".123456Z")
    assert parse_ts(job["expires_at"]) == expires
    assert job["completion_webhook"] == "http://example.com/hook"
    assert job["idempotency_key"] == "create-all-fields"
    assert job["dependency_mode"] == "all" and job["dependencies_met"] is True
    for empty in (
        "last_error",
        "started_at",
        "completed_at",
        "lease_expires_at",
        "parent_job_id",
        "assigned_worker_id",
        "lease_id",
        "workflow_id",
        "progress",
        "progress_message",
        "progress_updated_at",
    ):
        assert job[empty] is None, empty
    created = parse_ts(job["created_at"])
    assert abs((created - now_utc()).total_seconds()) < 60
    assert parse_ts(job["updated_at"]) >= created


def test_defaults_come_from_settings_then_queue_config(tenant: Tenant) -> None:
    with tenant.client() as c:
        job = get_job(c, enqueue(c, new_queue()))
        assert job["status"] == "pending"
        assert (job["priority"], job["max_retries"], job["timeout_seconds"]) == (0, 3, 300)
        assert job["tags"] is None and job["scheduled_at"] is None and job["expires_at"] is None


async def test_queue_config_supplies_defaults(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    await owner_db.execute(
        "INSERT INTO queue_configs (id, organization_id, queue_name, max_retries, default_timeout)"
        " VALUES ($1, $2, $3, 7, 1234)",
        uuid.uuid4(),
        uuid.UUID(tenant.org_id),
        q,
    )
    with tenant.client() as c:
        job = get_job(c, enqueue(c, q))
        assert (job["max_retries"], job["timeout_seconds"]) == (7, 1234)
        explicit = get_job(c, enqueue(c, q, max_retries=0, timeout_seconds=1))
        assert (explicit["max_retries"], explicit["timeout_seconds"]) == (0, 1)


def test_timestamps_accept_offsets_and_naive_values_as_utc(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        offset = get_job(c, enqueue(c, q, scheduled_at="2999-01-02T05:04:05.5+02:00"))
        assert offset["scheduled_at"] == "2999-01-02T03:04:05.500000Z"
        naive = get_job(c, enqueue(c, q, scheduled_at="2999-01-02T03:04:05"))
        assert naive["scheduled_at"] == "2999-01-02T03:04:05.000000Z"
        past = get_job(c, enqueue(c, q, scheduled_at="2001-01-01T00:00:00Z"))
        assert past["status"] == "pending"
        r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "scheduled_at": "tomorrow"})
        body = assert_error(r, 400, "VALIDATION_ERROR")
        assert body["message"].startswith("scheduled_at: ")


def test_a_delayed_job_is_not_claimable_before_scheduled_at(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        soon = now_utc() + timedelta(seconds=1.5)
        job_id = enqueue(c, q, scheduled_at=soon.isoformat())
        later = enqueue(c, q, scheduled_at=(now_utc() + timedelta(hours=1)).isoformat())
        assert get_job(c, job_id)["status"] == "scheduled"
        assert claim(c, q) == []
        got = wait_until(lambda: claim(c, q), timeout=10, interval=0.1)
        assert [j["id"] for j in got] == [job_id]
        assert parse_ts(get_job(c, job_id)["started_at"]) >= soon
        assert get_job(c, later)["status"] == "scheduled"


def test_activation_loop_moves_due_scheduled_jobs_to_pending(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, scheduled_at=(now_utc() + timedelta(seconds=0.5)).isoformat())
        wait_until(lambda: get_job(c, job_id)["status"] == "pending", timeout=10)
        events = [h["event_type"] for h in history(c, job_id)]
        assert events == ["created", "activated"]


def test_expired_jobs_are_never_claimed(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        gone = enqueue(c, q, expires_at=(now_utc() - timedelta(seconds=1)).isoformat())
        short = enqueue(c, q, expires_at=(now_utc() + timedelta(seconds=1)).isoformat(), priority=-5)
        alive = enqueue(c, q, expires_at=(now_utc() + timedelta(hours=1)).isoformat(), priority=-10)
        wait_until(lambda: now_utc() > parse_ts(get_job(c, short)["expires_at"]), timeout=5)
        got = claim(c, q, limit=10)
        assert [j["id"] for j in got] == [alive]
        # Claim never deletes them: they stay pending until cancelled.
        assert get_job(c, gone)["status"] == "pending"
        assert get_job(c, short)["status"] == "pending"
        assert c.delete(f"{API}/jobs/{gone}").status_code == 204


def test_tags_object_or_array_else_400(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        assert get_job(c, enqueue(c, q, tags=["a", "b"]))["tags"] == ["a", "b"]
        assert get_job(c, enqueue(c, q, tags=None))["tags"] is None
        for bad in ("urgent", 5, True):
            assert_error(
                c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "tags": bad}),
                400,
                "VALIDATION_ERROR",
            )
        big = {"k": "x" * 70_000}
        body = assert_error(
            c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "tags": big}), 400, "VALIDATION_ERROR"
        )
        assert body["details"][0]["field"] == "tags"


def test_completion_webhook_must_be_an_http_url(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        for bad in ("ftp://example.com/x", "not a url", "http://", "", "x" * 3000):
            r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "completion_webhook": bad})
            body = assert_error(r, 400, "VALIDATION_ERROR")
            assert body["details"][0]["field"] == "completion_webhook"
        job = get_job(c, enqueue(c, q, completion_webhook="https://hooks.example.com/done?x=1"))
        assert job["completion_webhook"] == "https://hooks.example.com/done?x=1"


@pytest.mark.slow
def test_completion_webhook_follows_the_outgoing_url_rules_in_production(database: TestDatabase) -> None:
    with running_server(database.url, SPOOLED_ENV="production", JWT_SECRET="j" * 48) as prod:
        org = create_tenant(prod)
        q = new_queue()
        with org.client() as c:
            for bad in (
                "http://93.184.215.14/hook",
                "https://127.0.0.1/hook",
                "https://10.1.2.3/x",
                "https://169.254.169.254/latest/meta-data",
                "https://[::1]/x",
            ):
                r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "completion_webhook": bad})
                body = assert_error(r, 400, "VALIDATION_ERROR")
                assert body["details"][0]["field"] == "completion_webhook", bad
            job = get_job(c, enqueue(c, q, completion_webhook="https://93.184.215.14/hook"))
            assert job["completion_webhook"] == "https://93.184.215.14/hook"


def test_parent_must_be_in_the_same_org_and_queue(tenant: Tenant, other_tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c, other_tenant.client() as o:
        elsewhere = enqueue(c, new_queue())
        foreign = enqueue(o, q)
        for parent in (elsewhere, foreign, str(uuid.uuid4())):
            r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "parent_job_id": parent})
            body = assert_error(r, 400, "VALIDATION_ERROR")
            assert body["message"].startswith("parent_job_id: ")
        r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": {}, "parent_job_id": "nope"})
        assert_error(r, 400, "VALIDATION_ERROR")


def test_a_child_waits_for_its_parent(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        parent = enqueue(c, q, priority=-1)
        child = enqueue(c, q, parent_job_id=parent, priority=50)
        view = get_job(c, child)
        assert view["parent_job_id"] == parent and view["dependencies_met"] is False
        assert view["status"] == "pending"
        got = claim(c, q, limit=10)
        assert [j["id"] for j in got] == [parent]  # the child outranks it but is not eligible
        assert complete(c, parent, "w1", got[0]["lease_id"]).status_code == 200
        assert get_job(c, child)["dependencies_met"] is True
        assert [j["id"] for j in claim(c, q)] == [child]
        # A parent that already completed gates nothing.
        late = enqueue(c, q, parent_job_id=parent)
        assert get_job(c, late)["dependencies_met"] is True
        assert [j["id"] for j in claim(c, q)] == [late]


# --- bulk ---------------------------------------------------------------------------------------------------


def test_bulk_create_with_defaults_and_per_item_failures(tenant: Tenant) -> None:
    q = new_queue()
    future = (now_utc() + timedelta(hours=1)).isoformat()
    with tenant.client() as c:
        r = c.post(
            f"{API}/jobs/bulk",
            json={
                "queue_name": q,
                "default_priority": 5,
                "default_max_retries": 1,
                "default_timeout_seconds": 60,
                "jobs": [
                    {"payload": {"i": 0}},
                    {"payload": {"i": 1}, "priority": 500},
                    {"payload": {"i": 2}, "priority": -3, "scheduled_at": future},
                    {"payload": {"i": 3}, "scheduled_at": "not a time"},
                    {"payload": {"i": 4}, "idempotency_key": ""},
                    {"payload": {"i": 5}, "idempotency_key": "b-5"},
                ],
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 6 and body["success_count"] == 3 and body["failure_count"] == 3
        assert [f["index"] for f in body["failed"]] == [1, 3, 4]
        assert body["failed"][0]["error"].startswith("jobs[1].priority")
        assert all(isinstance(f["error"], str) and f["error"] for f in body["failed"])
        assert [s["index"] for s in body["succeeded"]] == [0, 2, 5]
        assert all(s["created"] is True for s in body["succeeded"])
        ids = {s["index"]: s["job_id"] for s in body["succeeded"]}
        first = get_job(c, ids[0])
        assert (first["priority"], first["max_retries"], first["timeout_seconds"]) == (5, 1, 60)
        assert first["payload"] == {"i": 0} and first["status"] == "pending"
        delayed = get_job(c, ids[2])
        assert delayed["status"] == "scheduled" and delayed["priority"] == -3
        assert get_job(c, ids[5])["idempotency_key"] == "b-5"
        assert [j["id"] for j in claim(c, q, limit=10)] == [ids[0], ids[5]]
        assert [h["event_type"] for h in history(c, ids[0])] == ["created", "claimed"]


def test_bulk_limits(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        r = c.post(f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"payload": i} for i in range(100)]})
        assert r.status_code == 200 and r.json()["success_count"] == 100
        assert c.get(f"{API}/jobs/stats", params={"queue_name": q}).json()["pending"] == 100
        for jobs in ([], [{"payload": i} for i in range(101)]):
            body = assert_error(
                c.post(f"{API}/jobs/bulk", json={"queue_name": q, "jobs": jobs}), 400, "VALIDATION_ERROR"
            )
            assert body["message"].startswith("jobs: ")
        assert_error(
            c.post(f"{API}/jobs/bulk", json={"queue_name": "-bad", "jobs": [{"payload": 1}]}),
            400,
            "VALIDATION_ERROR",
        )
        assert_error(
            c.post(f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"priority": 1}]}),
            422,
            "VALIDATION_ERROR",
        )
        assert_error(
            c.post(
                f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"payload": 1}], "default_priority": 101}
            ),
            400,
            "VALIDATION_ERROR",
        )


# --- get, cancel, retry, priority ---------------------------------------------------------------------------


def test_cancel_pending_and_scheduled_only(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        pending = enqueue(c, q)
        scheduled = enqueue(c, q, scheduled_at=(now_utc() + timedelta(hours=1)).isoformat())
        for job_id, old in ((pending, "pending"), (scheduled, "scheduled")):
            r = c.delete(f"{API}/jobs/{job_id}")
            assert r.status_code == 204 and r.content == b""
            job = get_job(c, job_id)
            assert job["status"] == "cancelled" and job["completed_at"] is not None
            assert history(c, job_id)[-1]["event_type"] == "cancelled"
            assert history(c, job_id)[-1]["details"] == {"from": old, "to": "cancelled"}
        message = "Job cannot be cancelled (not in pending or scheduled state)"
        assert_error(c.delete(f"{API}/jobs/{pending}"), 409, "CONFLICT", message)
        running = enqueue(c, q)
        lease = claim_one(c, q)["lease_id"]
        assert_error(c.delete(f"{API}/jobs/{running}"), 409, "CONFLICT", message)
        assert complete(c, running, "w1", lease).status_code == 200
        assert_error(c.delete(f"{API}/jobs/{running}"), 409, "CONFLICT", message)
        assert claim(c, q) == []  # cancelled jobs are never claimed


def test_retry_from_deadletter_only(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=0)
        assert_error(c.post(f"{API}/jobs/{job_id}/retry"), 409, "CONFLICT")
        lease = claim_one(c, q)["lease_id"]
        assert_error(c.post(f"{API}/jobs/{job_id}/retry"), 409, "CONFLICT")
        r = fail(c, job_id, "w1", lease, "fatal")
        assert r.json()["will_retry"] is False
        dead = get_job(c, job_id)
        assert dead["status"] == "deadletter" and dead["retry_count"] == 1 and dead["last_error"] == "fatal"
        assert dead["completed_at"] is not None
        r = c.post(f"{API}/jobs/{job_id}/retry")
        assert r.status_code == 200, r.text
        job = r.json()
        assert set(job) == JOB_FIELDS
        assert job["status"] == "pending" and job["retry_count"] == 0 and job["last_error"] is None
        assert job["completed_at"] is None and job["lease_id"] is None and job["assigned_worker_id"] is None
        again = claim_one(c, q, "w2")
        assert again["id"] == job_id and again["retry_count"] == 0
        assert complete(c, job_id, "w2", again["lease_id"]).status_code == 200
        assert_error(c.post(f"{API}/jobs/{job_id}/retry"), 409, "CONFLICT")
        events = [h["event_type"] for h in history(c, job_id)]
        assert events == ["created", "claimed", "deadlettered", "retried", "claimed", "completed"]


def test_priority_boost(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        first = enqueue(c, q)
        second = enqueue(c, q)
        r = c.put(f"{API}/jobs/{second}/priority", json={"priority": 10})
        assert r.status_code == 200, r.text
        assert r.json() == {"job_id": second, "old_priority": 0, "new_priority": 10}
        assert get_job(c, second)["priority"] == 10
        assert claim_one(c, q)["id"] == second
        assert_error(c.put(f"{API}/jobs/{second}/priority", json={"priority": 1}), 404, "NOT_FOUND")
        for bad in (101, -101):
            assert_error(
                c.put(f"{API}/jobs/{first}/priority", json={"priority": bad}), 400, "VALIDATION_ERROR"
            )
        assert_error(
            c.put(f"{API}/jobs/{first}/priority", json={"priority": "high"}), 422, "VALIDATION_ERROR"
        )
        assert_error(c.put(f"{API}/jobs/{first}/priority", json={}), 422, "VALIDATION_ERROR")
        assert_error(c.put(f"{API}/jobs/{uuid.uuid4()}/priority", json={"priority": 1}), 404, "NOT_FOUND")
        scheduled = enqueue(c, q, scheduled_at=(now_utc() + timedelta(hours=1)).isoformat())
        r = c.put(f"{API}/jobs/{scheduled}/priority", json={"priority": -100})
        assert r.json()["new_priority"] == -100
        assert get_job(c, first)["priority"] == 0


# --- stats, batch status, history ---------------------------------------------------------------------------


def _stats(c: Any, **params: str) -> dict[str, int]:
    r = c.get(f"{API}/jobs/stats", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, int] = r.json()
    return body


async def test_stats_count_by_status_and_respect_scope(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    a, b = new_queue("a"), new_queue("b")
    with tenant.client() as c:
        assert _stats(c) == {
            "pending": 0,
            "scheduled": 0,
            "processing": 0,
            "completed": 0,
            "failed": 0,
            "deadletter": 0,
            "cancelled": 0,
            "total": 0,
        }
        for _ in range(3):
            enqueue(c, a)
        enqueue(c, a, scheduled_at=(now_utc() + timedelta(hours=1)).isoformat())
        done = claim_one(c, a)
        assert complete(c, done["id"], "w1", done["lease_id"]).status_code == 200
        claim_one(c, a)
        c.delete(f"{API}/jobs/{enqueue(c, b)}")
        dead = enqueue(c, b, max_retries=0)
        lease = claim_one(c, b)["lease_id"]
        fail(c, dead, "w1", lease)
        enqueue(c, b)
        want_a = {
            "pending": 1,
            "scheduled": 1,
            "processing": 1,
            "completed": 1,
            "failed": 0,
            "deadletter": 0,
            "cancelled": 0,
            "total": 4,
        }
        want_b = {
            "pending": 1,
            "scheduled": 0,
            "processing": 0,
            "completed": 0,
            "failed": 0,
            "deadletter": 1,
            "cancelled": 1,
            "total": 3,
        }
        assert _stats(c, queue_name=a) == want_a
        assert _stats(c, queue=b) == want_b
        both = _stats(c)
        assert both == {k: want_a[k] + want_b[k] for k in want_a}
        assert _stats(c, queue_name=new_queue())["total"] == 0
    key = await scoped_key(owner_db, tenant.org_id, [a])
    with tenant.client(key) as s:
        assert _stats(s) == want_a
        assert _stats(s, queue_name=b)["total"] == 0
    pattern = await scoped_key(owner_db, tenant.org_id, ["b-*"])
    with tenant.client(pattern) as s:
        assert _stats(s) == want_b


def test_batch_status(tenant: Tenant, other_tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c, other_tenant.client() as o:
        ids = [enqueue(c, q) for _ in range(3)]
        done = claim_one(c, q)
        complete(c, done["id"], "w1", done["lease_id"])
        theirs = enqueue(o, q)
        asked = [*ids, str(uuid.uuid4()), "not-a-uuid", theirs]
        r = c.get(f"{API}/jobs/status", params={"ids": ",".join(asked)})
        assert r.status_code == 200, r.text
        rows = {row["id"]: row for row in r.json()}
        assert set(rows) == set(ids)
        row = rows[done["id"]]
        assert set(row) == {"id", "status", "queue_name", "retry_count", "created_at", "completed_at"}
        assert row["status"] == "completed" and row["completed_at"] is not None and row["queue_name"] == q
        assert rows[ids[1]]["status"] == "pending" and rows[ids[1]]["completed_at"] is None
        assert (
            c.get(
                f"{API}/jobs/status", params={"ids": ",".join(str(uuid.uuid4()) for _ in range(100))}
            ).json()
            == []
        )
        too_many = ",".join(str(uuid.uuid4()) for _ in range(101))
        assert_error(c.get(f"{API}/jobs/status", params={"ids": too_many}), 400, "BAD_REQUEST")


async def test_history_records_every_transition(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=2)
        first = claim_one(c, q, "w1")
        r = fail(c, job_id, "w1", first["lease_id"], "flaky")
        assert r.json()["will_retry"] is True
        await owner_db.execute("UPDATE jobs SET scheduled_at = now() WHERE id = $1", uuid.UUID(job_id))
        second = claim_one(c, q, "w2")
        await expire_lease(owner_db, job_id)
        wait_until(lambda: get_job(c, job_id)["status"] == "pending", timeout=10)
        third = claim_one(c, q, "w3")
        assert complete(c, job_id, "w3", third["lease_id"]).status_code == 200
        rows = history(c, job_id)
        assert [h["event_type"] for h in rows] == [
            "created",
            "claimed",
            "requeued",
            "claimed",
            "requeued",
            "claimed",
            "completed",
        ]
        assert [h["worker_id"] for h in rows] == [None, "w1", "w1", "w2", "w2", "w3", "w3"]
        for h in rows:
            assert set(h) == {"id", "job_id", "event_type", "worker_id", "details", "created_at"}
            assert isinstance(h["id"], str) and h["job_id"] == job_id
        assert rows[0]["details"] == {"from": None, "to": "pending"}
        assert rows[1]["details"] == {"from": "pending", "to": "processing", "lease_id": first["lease_id"]}
        assert rows[2]["details"] == {"from": "processing", "to": "pending", "error": "flaky"}
        assert rows[4]["details"] == {"from": "processing", "to": "pending", "error": "Lease expired"}
        assert rows[6]["details"] == {"from": "processing", "to": "completed"}
        assert second["lease_id"] != first["lease_id"]
        stamps = [parse_ts(h["created_at"]) for h in rows]
        assert stamps == sorted(stamps)

        desc = history(c, job_id, order_dir="desc")
        assert [h["id"] for h in desc] == [h["id"] for h in reversed(rows)]
        r = c.get(f"{API}/jobs/{job_id}/history", params={"limit": 3})
        assert r.headers["X-Has-More"] == "true" and [h["id"] for h in r.json()] == [
            h["id"] for h in rows[:3]
        ]
        r = c.get(f"{API}/jobs/{job_id}/history", params={"limit": 3, "offset": 3})
        assert r.headers["X-Has-More"] == "true" and [h["id"] for h in r.json()] == [
            h["id"] for h in rows[3:6]
        ]
        r = c.get(f"{API}/jobs/{job_id}/history", params={"limit": 3, "offset": 6})
        assert r.headers["X-Has-More"] == "false" and [h["id"] for h in r.json()] == [rows[6]["id"]]
        r = c.get(f"{API}/jobs/{job_id}/history", params={"limit": 7})
        assert r.headers["X-Has-More"] == "false" and len(r.json()) == 7
        assert_error(c.get(f"{API}/jobs/{uuid.uuid4()}/history"), 404, "NOT_FOUND")


def test_history_of_a_cancelled_and_a_retried_job(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=0)
        lease = claim_one(c, q)["lease_id"]
        fail(c, job_id, "w1", lease, "fatal")
        c.post(f"{API}/jobs/{job_id}/retry")
        c.delete(f"{API}/jobs/{job_id}")
        rows = history(c, job_id)
        assert [h["event_type"] for h in rows] == [
            "created",
            "claimed",
            "deadlettered",
            "retried",
            "cancelled",
        ]
        assert rows[2]["details"] == {"from": "processing", "to": "deadletter", "error": "fatal"}
        assert rows[3]["details"]["from"] == "deadletter" and rows[3]["details"]["to"] == "pending"
        assert rows[3]["worker_id"] is None
