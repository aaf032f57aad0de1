"""Jobs, the worker protocol, dependencies and the DLQ through the SDK against a real server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from spooled import AsyncSpooledClient, ConflictError, NotFoundError, SpooledClient
from spooled.types import Job, JobSummary


def test_create_is_idempotent_with_a_key(client: SpooledClient) -> None:
    first = client.jobs.create(
        queue_name="emails",
        payload={"to": "a@example.com"},
        idempotency_key="welcome-1",
        max_retries=5,
        priority=7,
        tags={"team": "growth"},
    )
    again = client.jobs.create(
        {"queue_name": "emails", "payload": {"other": 1}, "idempotency_key": "welcome-1"}
    )
    assert first.created and not again.created and again.id == first.id
    job = client.jobs.get(first.id)
    assert isinstance(job, Job)
    assert (job.queue_name, job.status, job.max_retries, job.priority, job.payload) == (
        "emails",
        "pending",
        5,
        7,
        {"to": "a@example.com"},
    )
    assert job.idempotency_key == "welcome-1"


def test_scheduled_job_and_datetime_inputs(client: SpooledClient) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    created = client.jobs.create(queue_name="later", payload={}, scheduled_at=later)
    job = client.jobs.get(created.id)
    assert job.status == "scheduled"
    assert isinstance(job.scheduled_at, dt.datetime) and abs((job.scheduled_at - later).total_seconds()) < 1


def test_list_filters_and_auto_pagination(client: SpooledClient) -> None:
    ids = {client.jobs.create(queue_name="pages", payload={"n": n}).id for n in range(7)}
    client.jobs.create(queue_name="elsewhere", payload={})
    page = client.jobs.list(queue_name="pages", limit=3)
    assert len(page) == 3 and all(isinstance(j, JobSummary) for j in page)
    seen = [j.id for j in client.jobs.list_all(queue_name="pages", page_size=3)]
    assert len(seen) == 7 and set(seen) == ids
    assert {
        j.id for j in client.jobs.list_all({"queue_name": "pages", "status": "pending"}, page_size=2)
    } == ids


async def test_async_pagination(aclient: AsyncSpooledClient) -> None:
    ids = {(await aclient.jobs.create(queue_name="apages", payload={"n": n})).id for n in range(5)}
    seen = [j.id async for j in aclient.jobs.list_all(queue_name="apages", page_size=2)]
    assert sorted(seen) == sorted(ids)


def test_stats_status_cancel_priority_history(client: SpooledClient) -> None:
    a = client.jobs.create(queue_name="ctl", payload={}).id
    b = client.jobs.create(queue_name="ctl", payload={}).id
    boosted = client.jobs.boost_priority(a, 50)
    assert (boosted.old_priority, boosted.new_priority) == (0, 50)
    client.jobs.cancel(b)
    with pytest.raises(ConflictError):
        client.jobs.cancel(b)
    stats = client.jobs.stats("ctl")
    assert (stats.pending, stats.cancelled, stats.total) == (1, 1, 2)
    statuses = {s.id: s.status for s in client.jobs.batch_status([a, b])}
    assert statuses == {a: "pending", b: "cancelled"}
    history = client.jobs.history(b)
    assert [h.event_type for h in history] == ["created", "cancelled"]
    assert [h.event_type for h in client.jobs.history_all(b, page_size=1)] == ["created", "cancelled"]


def test_bulk_create(client: SpooledClient) -> None:
    result = client.jobs.bulk_create(
        queue_name="bulk",
        jobs=[{"payload": {"n": n}, "idempotency_key": f"b{n}"} for n in range(3)]
        + [{"payload": {}, "idempotency_key": "b0"}],
    )
    assert result.total == 4 and result.success_count == 4
    assert [s.created for s in result.succeeded] == [True, True, True, False]


def test_worker_protocol_round_trip_and_progress(client: SpooledClient) -> None:
    job_id = client.jobs.create(queue_name="proto", payload={"x": 1}).id
    claimed = client.jobs.claim("proto", "w-1", limit=5, lease_duration_secs=30)
    assert [j.id for j in claimed.jobs] == [job_id]
    lease = claimed.jobs[0].lease_id
    beat = client.jobs.heartbeat(job_id, worker_id="w-1", lease_id=lease, lease_duration_secs=60)
    assert beat.success
    client.jobs.progress(job_id, 40, "downloading", worker_id="w-1", lease_id=lease)
    job = client.jobs.get(job_id)
    assert (job.progress, job.progress_message) == (40, "downloading")
    client.jobs.complete(job_id, worker_id="w-1", lease_id=lease, result={"ok": True})
    done = client.jobs.get(job_id)
    assert (done.status, done.result) == ("completed", {"ok": True})
    with pytest.raises(ConflictError) as replay:
        client.jobs.complete(job_id, worker_id="w-1", lease_id=lease, result={"ok": True})
    assert "already" in replay.value.message


def test_wrong_lease_is_fenced(client: SpooledClient) -> None:
    job_id = client.jobs.create(queue_name="fence", payload={}).id
    client.jobs.claim("fence", "w-1")
    with pytest.raises(ConflictError) as info:
        client.jobs.complete(job_id, worker_id="w-1", lease_id="00000000-0000-4000-8000-000000000000")
    assert info.value.code == "LEASE_EXPIRED" and info.value.lease_expired
    with pytest.raises(NotFoundError):
        client.jobs.complete(job_id, worker_id="someone-else", lease_id="x")


def test_long_poll_claim_waits_for_a_job(client: SpooledClient) -> None:
    empty = client.jobs.claim("idle", "w-1", wait_secs=0.3)
    assert empty.jobs == []


def test_fail_retry_dlq_retry_and_purge(client: SpooledClient) -> None:
    job_id = client.jobs.create(queue_name="dlq", payload={"job_type": "charge"}, max_retries=0).id
    lease = client.jobs.claim("dlq", "w-1").jobs[0].lease_id
    failed = client.jobs.fail(job_id, worker_id="w-1", lease_id=lease, error="card declined")
    assert failed.will_retry is False
    dead = client.jobs.dlq.list(queue_name="dlq")
    assert [d.id for d in dead] == [job_id] and dead[0].last_error == "card declined"
    assert [d.id for d in client.jobs.dlq.list_all(queue_name="dlq", page_size=1)] == [job_id]
    retried = client.jobs.dlq.retry(job_ids=[job_id])
    assert retried.retried_count == 1 and client.jobs.get(job_id).status == "pending"
    lease = client.jobs.claim("dlq", "w-1").jobs[0].lease_id
    client.jobs.fail(job_id, worker_id="w-1", lease_id=lease, error="again")
    single = client.jobs.retry(job_id)
    assert single.status == "pending" and single.retry_count == 0
    lease = client.jobs.claim("dlq", "w-1").jobs[0].lease_id
    client.jobs.fail(job_id, worker_id="w-1", lease_id=lease, error="and again")
    assert client.jobs.dlq.purge(queue_name="dlq").purged_count == 1
    with pytest.raises(NotFoundError):
        client.jobs.get(job_id)


def test_failure_with_retries_left_goes_back_to_pending(client: SpooledClient) -> None:
    job_id = client.jobs.create(queue_name="retry", payload={}, max_retries=2).id
    lease = client.jobs.claim("retry", "w-1").jobs[0].lease_id
    outcome = client.jobs.fail(job_id, worker_id="w-1", lease_id=lease, error="boom")
    assert outcome.will_retry is True and outcome.retry_count == 1
    job = client.jobs.get(job_id)
    assert (job.status, job.retry_count, job.last_error) == ("pending", 1, "boom")


def test_dependencies(client: SpooledClient) -> None:
    parent = client.jobs.create(queue_name="deps", payload={}).id
    child = client.jobs.create(queue_name="deps", payload={}).id
    added = client.jobs.add_dependencies(child, depends_on=[parent])
    assert added.success and added.dependencies_met is False
    deps = client.jobs.get_dependencies(child)
    assert [d.job_id for d in deps.dependencies] == [parent] and deps.dependencies_met is False


async def test_async_resources_match(aclient: AsyncSpooledClient, owner_db: asyncpg.Connection) -> None:
    created = await aclient.jobs.create(queue_name="async", payload={"n": 1}, idempotency_key="ak")
    job = await aclient.jobs.get(created.id)
    assert job.payload == {"n": 1}
    claimed = await aclient.jobs.claim("async", "aw", limit=1)
    lease = claimed.jobs[0].lease_id
    await aclient.jobs.complete(created.id, worker_id="aw", lease_id=lease, result=[1, 2])
    row: Any = await owner_db.fetchrow("SELECT status FROM jobs WHERE id = $1::uuid", created.id)
    assert row["status"] == "completed"
