"""The worker protocol over real HTTP (rest.md §6, semantics.md §2 to §5): claim order, leases and fencing,
heartbeat, progress, retries with backoff, the dead-letter queue, lease recovery and the long-poll claim."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from spooled_server.core.jobs import backoff_delay_secs

from ..conftest import async_wait_until, wait_until
from ..support import Tenant
from .jobs_support import (
    API,
    aclaim,
    aenqueue,
    assert_error,
    claim,
    claim_one,
    complete,
    db_status,
    enqueue,
    expire_lease,
    fail,
    get_job,
    heartbeat,
    history,
    make_due,
    new_queue,
    now_utc,
    parse_ts,
    scoped_key,
)

# --- claim --------------------------------------------------------------------------------------------------


def test_claim_shape_and_lease(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, payload={"x": [1, {"y": None}]}, max_retries=4, timeout_seconds=90)
        before = now_utc()
        job = claim_one(c, q, "worker-1.a_b", lease_duration_secs=120)
        assert set(job) == {
            "id",
            "queue_name",
            "payload",
            "retry_count",
            "max_retries",
            "timeout_seconds",
            "lease_expires_at",
            "lease_id",
        }
        assert job["id"] == job_id and job["queue_name"] == q and job["payload"] == {"x": [1, {"y": None}]}
        assert (job["retry_count"], job["max_retries"], job["timeout_seconds"]) == (0, 4, 90)
        assert uuid.UUID(job["lease_id"]).version == 4
        expires = parse_ts(job["lease_expires_at"])
        assert timedelta(seconds=110) < expires - before < timedelta(seconds=130)
        view = get_job(c, job_id)
        assert view["status"] == "processing" and view["assigned_worker_id"] == "worker-1.a_b"
        assert view["lease_id"] == job["lease_id"] and view["lease_expires_at"] == job["lease_expires_at"]
        assert view["started_at"] is not None
        # The default lease is WORKER_LEASE_DURATION_SECS (30 s).
        enqueue(c, q)
        before = now_utc()
        other = claim_one(c, q, "w2")
        assert timedelta(seconds=25) < parse_ts(other["lease_expires_at"]) - before < timedelta(seconds=35)
        assert claim(c, q) == []


def test_priority_order_then_fifo(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        plan = [0, 5, -3, 5, 0, 100, -100, 5, 0]
        ids = [enqueue(c, q, payload={"i": i}, priority=p) for i, p in enumerate(plan)]
        want = [ids[i] for i in sorted(range(len(plan)), key=lambda i: (-plan[i], i))]
        got = [j["id"] for j in claim(c, q, limit=3)]
        got += [j["id"] for j in claim(c, q, limit=2)]
        got += [claim_one(c, q)["id"] for _ in range(4)]
        assert got == want
        assert claim(c, q, limit=100) == []


def test_a_retried_job_keeps_its_place_in_line(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        old = enqueue(c, q)
        lease = claim_one(c, q)["lease_id"]
        assert (
            c.post(
                f"{API}/jobs/{old}/fail", json={"worker_id": "w1", "lease_id": lease, "error": "x"}
            ).status_code
            == 200
        )
        newer = enqueue(c, q)
        assert claim_one(c, q)["id"] == newer  # the old one still waits for its backoff


async def test_a_due_retry_runs_before_newer_jobs(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    with tenant.client() as c:
        old = enqueue(c, q)
        lease = claim_one(c, q)["lease_id"]
        fail(c, old, "w1", lease)
        newer = enqueue(c, q)
        await make_due(owner_db, old)
        assert [j["id"] for j in claim(c, q, limit=2)] == [old, newer]


def test_claim_only_sees_its_own_queue_and_honours_limits(tenant: Tenant) -> None:
    q, other = new_queue(), new_queue()
    with tenant.client() as c:
        mine = [enqueue(c, q) for _ in range(3)]
        enqueue(c, other)
        got = claim(c, q, limit=100)
        assert [j["id"] for j in got] == mine
        assert len({j["lease_id"] for j in got}) == 3
        for bad in (
            {"limit": 0},
            {"limit": 101},
            {"lease_duration_secs": 4},
            {"lease_duration_secs": 3601},
            {"worker_id": ""},
            {"worker_id": "x" * 256},
            {"queue_name": ".dot"},
            {"wait_secs": -1},
        ):
            body = {"queue_name": q, "worker_id": "w", **bad}
            assert_error(c.post(f"{API}/jobs/claim", json=body), 400, "VALIDATION_ERROR")
        assert_error(c.post(f"{API}/jobs/claim", json={"queue_name": q}), 422, "VALIDATION_ERROR")
        assert_error(
            c.post(f"{API}/jobs/claim", json={"queue_name": q, "worker_id": "w", "limit": "2"}),
            422,
            "VALIDATION_ERROR",
        )


async def test_disabled_queue_claims_nothing(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        await owner_db.execute(
            "INSERT INTO queue_configs (id, organization_id, queue_name, enabled) VALUES ($1, $2, $3, false)",
            uuid.uuid4(),
            uuid.UUID(tenant.org_id),
            q,
        )
        assert claim(c, q) == []
        await owner_db.execute("UPDATE queue_configs SET enabled = true WHERE queue_name = $1", q)
        assert claim_one(c, q)["id"] == job_id


async def test_scoped_key_cannot_claim_other_queues(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    allowed, hidden = new_queue(), new_queue()
    key = await scoped_key(owner_db, tenant.org_id, [allowed])
    with tenant.client() as admin, tenant.client(key) as scoped:
        job_id = enqueue(admin, hidden)
        assert_error(
            scoped.post(f"{API}/jobs/claim", json={"queue_name": hidden, "worker_id": "w"}),
            403,
            "ACCESS_DENIED",
        )
        assert_error(
            scoped.post(f"{API}/jobs", json={"queue_name": hidden, "payload": {}}), 403, "ACCESS_DENIED"
        )
        assert_error(scoped.get(f"{API}/jobs/{job_id}"), 404, "NOT_FOUND")
        lease = claim_one(admin, hidden)["lease_id"]
        assert_error(complete(scoped, job_id, "w1", lease), 404, "NOT_FOUND")
        assert get_job(admin, job_id)["status"] == "processing"
        own = enqueue(scoped, allowed)
        assert claim_one(scoped, allowed)["id"] == own


async def test_concurrent_claimers_never_share_a_job(tenant: Tenant) -> None:
    q = new_queue()
    async with tenant.async_client() as ac:
        r = await ac.post(
            f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"payload": i} for i in range(60)]}
        )
        assert r.json()["success_count"] == 60

        async def worker(n: int) -> list[str]:
            got: list[str] = []
            while True:
                jobs = await aclaim(ac, q, f"w{n}", limit=3)
                if not jobs:
                    return got
                got += [j["id"] for j in jobs]

        results = await asyncio.gather(*(worker(n) for n in range(8)))
    claimed = [i for r in results for i in r]
    assert len(claimed) == 60 and len(set(claimed)) == 60


# --- complete, fencing --------------------------------------------------------------------------------------


def test_complete_stores_the_result(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        job = claim_one(c, q)
        r = complete(c, job_id, "w1", job["lease_id"], result={"ok": [1, 2, 3], "s": "é"})
        assert r.status_code == 200 and r.json() == {"success": True}
        view = get_job(c, job_id)
        assert view["status"] == "completed" and view["result"] == {"ok": [1, 2, 3], "s": "é"}
        assert parse_ts(view["completed_at"]) >= parse_ts(view["started_at"])
        assert view["lease_expires_at"] is None
        # Without a result, `result` stays null.
        other = enqueue(c, q)
        lease = claim_one(c, q)["lease_id"]
        assert complete(c, other, "w1", lease).status_code == 200
        assert get_job(c, other)["result"] is None


def test_replayed_and_misdirected_acks(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        lease = claim_one(c, q, "w1")["lease_id"]
        # Another worker, or a job that does not exist: 404.
        assert_error(complete(c, job_id, "w2", lease), 404, "NOT_FOUND")
        assert_error(fail(c, job_id, "w2", lease), 404, "NOT_FOUND")
        assert_error(heartbeat(c, job_id, "w2", lease), 404, "NOT_FOUND")
        assert_error(complete(c, str(uuid.uuid4()), "w1", lease), 404, "NOT_FOUND")
        # The holder with a wrong or missing lease: LEASE_EXPIRED (the lease does not match).
        for wrong in (str(uuid.uuid4()), None, "not-a-uuid"):
            assert_error(complete(c, job_id, "w1", wrong), 409, "LEASE_EXPIRED")
            assert_error(fail(c, job_id, "w1", wrong), 409, "LEASE_EXPIRED")
            assert_error(heartbeat(c, job_id, "w1", wrong), 409, "LEASE_EXPIRED")
        assert get_job(c, job_id)["status"] == "processing"
        assert complete(c, job_id, "w1", lease, result=1).status_code == 200
        # A replayed ack gets CONFLICT with the exact text the official Python SDK recognises.
        assert_error(complete(c, job_id, "w1", lease), 409, "CONFLICT", "Job is already completed")
        assert_error(fail(c, job_id, "w1", lease), 409, "CONFLICT", "Job is already completed")
        assert_error(heartbeat(c, job_id, "w1", lease), 409, "CONFLICT", "Job is already completed")
        assert_error(
            complete(c, job_id, "w1", str(uuid.uuid4())), 409, "CONFLICT", "Job is already completed"
        )
        assert_error(complete(c, job_id, "w2", lease), 404, "NOT_FOUND")
        assert get_job(c, job_id)["result"] == 1
        # A pending job that nobody holds.
        waiting = enqueue(c, q)
        assert_error(complete(c, waiting, "w1", lease), 404, "NOT_FOUND")


def test_ack_after_dead_letter_is_a_conflict(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=0)
        lease = claim_one(c, q)["lease_id"]
        assert fail(c, job_id, "w1", lease).status_code == 200
        assert_error(complete(c, job_id, "w1", lease), 409, "CONFLICT", "Job is already deadletter")
        assert_error(fail(c, job_id, "w1", lease), 409, "CONFLICT", "Job is already deadletter")


async def test_lease_expiry_hands_the_job_to_another_worker(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=3)
        first = claim_one(c, q, "w1")
        await expire_lease(owner_db, job_id)
        # Between expiry and recovery the holder already gets LEASE_EXPIRED.
        assert_error(heartbeat(c, job_id, "w1", first["lease_id"]), 409, "LEASE_EXPIRED")
        assert_error(complete(c, job_id, "w1", first["lease_id"]), 409, "LEASE_EXPIRED")
        second = wait_until(lambda: claim(c, q, "w2"), timeout=10, interval=0.05)[0]
        assert second["id"] == job_id and second["lease_id"] != first["lease_id"]
        assert second["retry_count"] == 1
        # Fencing: the earlier holder cannot settle the new attempt, whatever it sends.
        for call in (complete, fail, heartbeat):
            body = assert_error(call(c, job_id, "w1", first["lease_id"]), 409, "LEASE_EXPIRED")
            assert "expired" in body["message"].lower()
        assert_error(complete(c, job_id, "w1", second["lease_id"]), 404, "NOT_FOUND")
        assert complete(c, job_id, "w2", second["lease_id"], result="ok").status_code == 200
        assert_error(complete(c, job_id, "w1", first["lease_id"]), 409, "LEASE_EXPIRED")
        view = get_job(c, job_id)
        assert view["status"] == "completed" and view["result"] == "ok" and view["assigned_worker_id"] == "w2"


async def test_same_worker_reclaiming_gets_a_new_lease(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        first = claim_one(c, q, "w1")
        await expire_lease(owner_db, job_id)
        second = wait_until(lambda: claim(c, q, "w1"), timeout=10)[0]
        body = assert_error(complete(c, job_id, "w1", first["lease_id"]), 409, "LEASE_EXPIRED")
        assert "match" in body["message"]
        assert complete(c, job_id, "w1", second["lease_id"]).status_code == 200


async def test_short_lease_expires_on_its_own(tenant: Tenant) -> None:
    q = new_queue()
    async with tenant.async_client() as c:
        job_id = await aenqueue(c, q)
        first = (await aclaim(c, q, "w1", lease_duration_secs=5))[0]

        async def reclaimed() -> list[dict[str, Any]]:
            return await aclaim(c, q, "w2")

        t0 = time.monotonic()
        second = (await async_wait_until(reclaimed, timeout=20, interval=0.2))[0]
        assert time.monotonic() - t0 > 3.0
        assert second["id"] == job_id
        r = await c.post(
            f"{API}/jobs/{job_id}/complete", json={"worker_id": "w1", "lease_id": first["lease_id"]}
        )
        assert_error(r, 409, "LEASE_EXPIRED")


def test_heartbeat_replaces_the_expiry(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        job = claim_one(c, q, lease_duration_secs=600)
        before = now_utc()
        r = heartbeat(c, job_id, "w1", job["lease_id"], 5)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        expires = parse_ts(body["lease_expires_at"])
        assert timedelta(seconds=3) < expires - before < timedelta(seconds=8)  # replaced, not added
        assert get_job(c, job_id)["lease_expires_at"] == body["lease_expires_at"]
        for bad in (4, 3601):
            assert_error(heartbeat(c, job_id, "w1", job["lease_id"], bad), 400, "VALIDATION_ERROR")
        r = c.post(f"{API}/jobs/{job_id}/heartbeat", json={"worker_id": "w1", "lease_id": job["lease_id"]})
        assert_error(r, 422, "VALIDATION_ERROR")


def test_progress(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        pending = enqueue(c, q, priority=-1)
        job = claim_one(c, q)
        r = c.post(
            f"{API}/jobs/{job_id}/progress",
            json={"worker_id": "w1", "lease_id": job["lease_id"], "percent": 42.5, "message": "half"},
        )
        assert r.status_code == 200 and r.json() == {"success": True}
        view = get_job(c, job_id)
        assert view["progress"] == 42.5 and view["progress_message"] == "half"
        assert view["progress_updated_at"] is not None
        r = c.post(f"{API}/jobs/{job_id}/progress", json={"progress": 60})  # alias, no worker or lease
        assert r.status_code == 200, r.text
        assert get_job(c, job_id)["progress"] == 60
        assert_error(c.post(f"{API}/jobs/{pending}/progress", json={"progress": 1}), 409, "CONFLICT")
        r = c.post(
            f"{API}/jobs/{job_id}/progress",
            json={"worker_id": "w1", "lease_id": str(uuid.uuid4()), "percent": 1},
        )
        assert_error(r, 409, "LEASE_EXPIRED")
        r = c.post(
            f"{API}/jobs/{job_id}/progress",
            json={"worker_id": "w9", "lease_id": job["lease_id"], "percent": 1},
        )
        assert_error(r, 404, "NOT_FOUND")
        for bad in ({"percent": 101}, {"percent": -1}, {"percent": 5, "message": "m" * 1001}):
            assert_error(c.post(f"{API}/jobs/{job_id}/progress", json=bad), 400, "VALIDATION_ERROR")
        body = assert_error(
            c.post(f"{API}/jobs/{job_id}/progress", json={"message": "m"}), 422, "VALIDATION_ERROR"
        )
        assert body["details"][0]["code"] == "missing_field"
        # Progress does not extend the lease.
        assert get_job(c, job_id)["lease_expires_at"] == job["lease_expires_at"]
        assert complete(c, job_id, "w1", job["lease_id"]).status_code == 200


async def test_a_new_attempt_starts_without_progress(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        first = claim_one(c, q, "w1")
        r = c.post(
            f"{API}/jobs/{job_id}/progress",
            json={"worker_id": "w1", "lease_id": first["lease_id"], "percent": 80, "message": "almost"},
        )
        assert r.status_code == 200
        await expire_lease(owner_db, job_id)
        wait_until(lambda: claim(c, q, "w2"), timeout=10)
        view = get_job(c, job_id)
        assert view["status"] == "processing" and view["assigned_worker_id"] == "w2"
        assert (
            view["progress"] is None
            and view["progress_message"] is None
            and view["progress_updated_at"] is None
        )


# --- fail, backoff, DLQ -------------------------------------------------------------------------------------


def _fail_and_measure(c: httpx.Client, job_id: str, worker: str, lease: str) -> tuple[dict[str, Any], float]:
    before = now_utc()
    r = fail(c, job_id, worker, lease, "boom")
    after = now_utc()
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"success", "will_retry", "retry_count", "next_retry_at"}
    if body["next_retry_at"] is None:
        return body, -1.0
    nxt = parse_ts(body["next_retry_at"])
    assert get_job(c, job_id)["scheduled_at"] == body["next_retry_at"]
    # The delay counts from the server's clock at the fail; bracket it by our clock around the request.
    lo, hi = (nxt - after).total_seconds(), (nxt - before).total_seconds()
    return body, (lo + hi) / 2


async def _run_backoff_schedule(
    c: httpx.Client, owner_db: asyncpg.Connection, q: str, max_retries: int, base: int, cap: int
) -> None:
    job_id = enqueue(c, q, max_retries=max_retries)
    for n in range(max_retries + 1):
        job = claim_one(c, q, f"w{n}")
        assert job["retry_count"] == n
        body, delay = _fail_and_measure(c, job_id, f"w{n}", job["lease_id"])
        assert body["retry_count"] == n + 1
        if n < max_retries:
            assert body["will_retry"] is True
            assert abs(delay - backoff_delay_secs(n, base, cap)) < 5, (n, delay)
            view = get_job(c, job_id)
            assert view["status"] == "pending" and view["last_error"] == "boom"
            assert view["assigned_worker_id"] is None and view["lease_id"] is None
            assert claim(c, q) == []  # not before the delay
            await make_due(owner_db, job_id)
        else:
            assert body["will_retry"] is False and body["next_retry_at"] is None
    view = get_job(c, job_id)
    assert view["status"] == "deadletter" and view["retry_count"] == max_retries + 1


async def test_backoff_schedule_with_defaults(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    """1, 2, 4, 8, 16, 32 minutes, then capped at 60 (semantics.md §4)."""
    assert [backoff_delay_secs(n, 60, 3600) / 60 for n in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    with tenant.client() as c:
        await _run_backoff_schedule(c, owner_db, new_queue(), 8, 60, 3600)


async def test_backoff_uses_the_queue_config(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    assert [backoff_delay_secs(n, 10, 45) for n in range(4)] == [10, 20, 40, 45]
    with tenant.client() as c:
        r = c.put(
            f"{API}/queues/{q}/config", json={"retry_backoff_base_secs": 10, "retry_backoff_max_secs": 45}
        )
        assert r.status_code == 200, r.text
        await _run_backoff_schedule(c, owner_db, q, 4, 10, 45)
        # A config change applies to the next failure of jobs already waiting.
        r = c.put(
            f"{API}/queues/{q}/config", json={"retry_backoff_base_secs": 300, "retry_backoff_max_secs": 600}
        )
        assert r.status_code == 200, r.text
        job_id = enqueue(c, q)
        job = claim_one(c, q)
        _, delay = _fail_and_measure(c, job_id, "w1", job["lease_id"])
        assert abs(delay - 300) < 5


async def test_a_paused_queue_claims_nothing(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        r = c.post(f"{API}/queues/{q}/pause", json={"reason": "maintenance"})
        assert r.status_code == 200, r.text
        assert claim(c, q, limit=10) == []
        assert get_job(c, job_id)["status"] == "pending"
        assert c.post(f"{API}/queues/{q}/resume").status_code == 200
        assert claim_one(c, q)["id"] == job_id


async def test_backoff_cap_holds_for_huge_retry_counts(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=100)
        await owner_db.execute("UPDATE jobs SET retry_count = 90 WHERE id = $1", uuid.UUID(job_id))
        job = claim_one(c, q)
        body, delay = _fail_and_measure(c, job_id, "w1", job["lease_id"])
        assert body["retry_count"] == 91 and body["will_retry"] is True
        assert abs(delay - 3600) < 5


def test_max_retries_zero_dead_letters_on_the_first_failure(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=0, payload={"p": 1})
        lease = claim_one(c, q)["lease_id"]
        r = fail(c, job_id, "w1", lease, "x" * 2048)
        assert r.status_code == 200
        assert r.json() == {"success": True, "will_retry": False, "retry_count": 1, "next_retry_at": None}
        view = get_job(c, job_id)
        assert view["status"] == "deadletter" and view["last_error"] == "x" * 2048
        assert view["completed_at"] is not None and view["lease_expires_at"] is None
        assert claim(c, q) == []


async def test_dead_letter_writes_an_audit_row_and_retry_removes_it(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=1, payload={"order": 7})
        for n in range(2):
            lease = claim_one(c, q)["lease_id"]
            fail(c, job_id, "w1", lease, f"attempt {n}")
            await make_due(owner_db, job_id)
        rows = await owner_db.fetch("SELECT * FROM dlq_entries WHERE job_id = $1", uuid.UUID(job_id))
        assert len(rows) == 1
        row = rows[0]
        assert row["queue_name"] == q and str(row["organization_id"]) == tenant.org_id
        assert row["reason"] == "max_retries_exceeded"
        import json

        assert json.loads(row["original_payload"]) == {"order": 7}
        assert json.loads(row["error_details"]) == {"final_error": "attempt 1", "total_retries": 2}
        assert c.post(f"{API}/jobs/{job_id}/retry").status_code == 200
        assert (
            await owner_db.fetchval("SELECT count(*) FROM dlq_entries WHERE job_id = $1", uuid.UUID(job_id))
            == 0
        )


def test_fail_validates_the_error_text(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q)
        lease = claim_one(c, q)["lease_id"]
        for bad in ("", "x" * 2049):
            assert_error(fail(c, job_id, "w1", lease, bad), 400, "VALIDATION_ERROR")
        assert_error(
            c.post(f"{API}/jobs/{job_id}/fail", json={"worker_id": "w1", "lease_id": lease}),
            422,
            "VALIDATION_ERROR",
        )
        assert get_job(c, job_id)["status"] == "processing"


# --- lease recovery -----------------------------------------------------------------------------------------


async def test_recovery_requeues_without_delay_then_dead_letters(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    q = new_queue()
    with tenant.client() as c:
        job_id = enqueue(c, q, max_retries=1)
        claim_one(c, q, "w1")
        await expire_lease(owner_db, job_id)

        async def status_is(want: str) -> bool:
            return await db_status(owner_db, job_id) == want

        await async_wait_until(lambda: status_is("pending"), timeout=10)
        view = get_job(c, job_id)
        assert view["retry_count"] == 1 and view["last_error"] == "Lease expired"
        assert (
            view["scheduled_at"] is None and view["lease_id"] is None and view["assigned_worker_id"] is None
        )
        again = claim_one(c, q, "w2")  # no backoff delay after a lease expiry
        assert again["retry_count"] == 1
        await expire_lease(owner_db, job_id)
        await async_wait_until(lambda: status_is("deadletter"), timeout=10)
        view = get_job(c, job_id)
        assert view["retry_count"] == 2 and view["last_error"] == "Lease expired"
        assert view["completed_at"] is not None
        reason = await owner_db.fetchval(
            "SELECT reason FROM dlq_entries WHERE job_id = $1", uuid.UUID(job_id)
        )
        assert reason == "lease_expired"
        events = [(h["event_type"], h["worker_id"]) for h in history(c, job_id)]
        assert events == [
            ("created", None),
            ("claimed", "w1"),
            ("requeued", "w1"),
            ("claimed", "w2"),
            ("deadlettered", "w2"),
        ]
        assert_error(
            complete(c, job_id, "w2", again["lease_id"]), 409, "CONFLICT", "Job is already deadletter"
        )


async def test_recovery_leaves_live_leases_alone(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    q = new_queue()
    with tenant.client() as c:
        live = enqueue(c, q)
        dead = enqueue(c, q)
        leases = {j["id"]: j["lease_id"] for j in claim(c, q, limit=2)}
        await expire_lease(owner_db, dead)
        wait_until(lambda: get_job(c, dead)["status"] == "pending", timeout=10)
        assert get_job(c, live)["status"] == "processing"
        assert heartbeat(c, live, "w1", leases[live]).status_code == 200


# --- long-poll claim ----------------------------------------------------------------------------------------


async def test_long_poll_claim_wakes_on_enqueue(tenant: Tenant) -> None:
    q = new_queue()
    async with tenant.async_client() as claimer, tenant.async_client() as producer:
        # Warm both connections so the measurement is the wake-up, not a TCP connect.
        await claimer.post(f"{API}/jobs/claim", json={"queue_name": q, "worker_id": "w"})
        await producer.get(f"{API}/jobs/stats")
        t_start = time.monotonic()
        waiting = asyncio.create_task(
            claimer.post(f"{API}/jobs/claim", json={"queue_name": q, "worker_id": "w", "wait_secs": 20})
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()
        r = await producer.post(f"{API}/jobs", json={"queue_name": q, "payload": {"wake": 1}})
        enqueued = time.monotonic()
        assert r.status_code == 201
        claimed = await waiting
        latency = time.monotonic() - enqueued
        assert claimed.status_code == 200, claimed.text
        assert [j["id"] for j in claimed.json()["jobs"]] == [r.json()["id"]]
        # Woken by the enqueue, far sooner than the 5 s fallback poll (generous for a busy 2-core box).
        assert latency < 1.0, latency
        assert time.monotonic() - t_start < 5


async def test_long_poll_returns_empty_after_the_wait(tenant: Tenant) -> None:
    q = new_queue()
    async with tenant.async_client() as c:
        t0 = time.monotonic()
        r = await c.post(f"{API}/jobs/claim", json={"queue_name": q, "worker_id": "w", "wait_secs": 1})
        elapsed = time.monotonic() - t0
        assert r.status_code == 200 and r.json() == {"jobs": []}
        assert 0.9 < elapsed < 5


async def test_long_poll_wakes_when_a_delayed_job_comes_due(tenant: Tenant) -> None:
    q = new_queue()
    async with tenant.async_client() as c:
        job_id = await aenqueue(c, q, scheduled_at=(now_utc() + timedelta(seconds=1)).isoformat())
        t0 = time.monotonic()
        r = await c.post(f"{API}/jobs/claim", json={"queue_name": q, "worker_id": "w", "wait_secs": 15})
        assert [j["id"] for j in r.json()["jobs"]] == [job_id]
        assert time.monotonic() - t0 < 4  # the activation loop wakes it (fallback poll would take 5 s)


@pytest.mark.parametrize("limit", [1, 5])
async def test_long_poll_claimers_share_a_burst(tenant: Tenant, limit: int) -> None:
    q = new_queue()
    async with tenant.async_client() as c:
        waiters = [
            asyncio.create_task(
                c.post(
                    f"{API}/jobs/claim",
                    json={"queue_name": q, "worker_id": f"w{i}", "limit": limit, "wait_secs": 3},
                )
            )
            for i in range(4)
        ]
        await asyncio.sleep(0.3)
        r = await c.post(
            f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"payload": i} for i in range(4)]}
        )
        assert r.json()["success_count"] == 4
        got: list[str] = []
        for task in waiters:
            got += [j["id"] for j in (await task).json()["jobs"]]
        got += [j["id"] for j in await aclaim(c, q, limit=10)]
        assert sorted(got) == sorted(s["job_id"] for s in r.json()["succeeded"])
