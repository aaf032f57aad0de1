"""gRPC QueueService unary RPCs over real gRPC on loopback (grpc.md sections 1-3 and 6)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2

from ..support import ServerProcess, Tenant, create_tenant
from .grpc_helpers import Client, channel, md, new_queue, pb, rpc_error

API = "/api/v1"
OK = grpc.StatusCode


@pytest.fixture
async def client(server: ServerProcess, tenant: Tenant) -> AsyncIterator[Client]:
    async with channel(server) as ch:
        yield Client(ch, tenant.api_key)


def scoped_key(tenant: Tenant, queues: list[str], **fields: object) -> str:
    with tenant.client() as c:
        r = c.post(f"{API}/api-keys", json={"name": "scoped", "queues": queues, **fields})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


def future(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return ts


# --- Enqueue and GetJob -----------------------------------------------------------------------------------


async def test_enqueue_then_get_job_round_trips_every_field(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    reply = await client.queue.Enqueue(pb.EnqueueRequest(
        queue_name=queue, payload={"to": "a@example.com", "n": 3, "nested": {"x": [1, 2.5, True, None]}},
        priority=7, max_retries=4, timeout_seconds=60, idempotency_key="k-1", tags={"env": "test"},
    ), metadata=client.metadata)
    assert reply.created is True
    job = await client.get(reply.job_id)
    assert job.id == reply.job_id
    assert job.organization_id == tenant.org_id
    assert job.queue_name == queue
    assert job.status == pb.JOB_STATUS_PENDING
    assert dict(job.payload) == {"to": "a@example.com", "n": 3, "nested": job.payload["nested"]}
    assert list(job.payload["nested"]["x"]) == [1, 2.5, True, None]
    assert (job.priority, job.max_retries, job.timeout_seconds) == (7, 4, 60)
    assert job.idempotency_key == "k-1"
    assert job.HasField("created_at") and not job.HasField("started_at") and not job.HasField("completed_at")
    # Null strings are "" and null timestamps unset.
    assert job.last_error == "" and job.assigned_worker_id == "" and job.lease_id == ""
    assert not job.HasField("result")
    # The same job as REST sees it: integers stay integers, the tags are a JSON object.
    with tenant.client() as c:
        body = c.get(f"{API}/jobs/{reply.job_id}").json()
    assert body["payload"] == {"to": "a@example.com", "n": 3, "nested": {"x": [1, 2.5, True, None]}}
    assert body["tags"] == {"env": "test"}


async def test_enqueue_is_idempotent_per_key(client: Client) -> None:
    queue = new_queue()
    first = await client.queue.Enqueue(pb.EnqueueRequest(queue_name=queue, idempotency_key="same"),
                                       metadata=client.metadata)
    again = await client.queue.Enqueue(pb.EnqueueRequest(queue_name=queue, idempotency_key="same"),
                                       metadata=client.metadata)
    assert first.created is True and again.created is False
    assert again.job_id == first.job_id


async def test_enqueue_zero_means_default_and_values_are_clamped(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    default = await client.get(await client.enqueue(queue))
    assert (default.priority, default.max_retries, default.timeout_seconds) == (0, 3, 300)
    assert default.status == pb.JOB_STATUS_PENDING and dict(default.payload) == {"n": 1}
    high = await client.get(await client.enqueue(queue, priority=500, max_retries=1000, timeout_seconds=10**9))
    assert (high.priority, high.max_retries, high.timeout_seconds) == (100, 100, 86400)
    low = await client.get(await client.enqueue(queue, priority=-500, max_retries=-4, timeout_seconds=-1))
    assert (low.priority, low.max_retries, low.timeout_seconds) == (-100, 1, 1)
    # Zero takes the queue's configured default, not 3 / 300.
    with tenant.client() as c:
        r = c.put(f"{API}/queues/{queue}/config", json={"max_retries": 9, "default_timeout": 77})
        assert r.status_code == 200, r.text
    configured = await client.get(await client.enqueue(queue))
    assert (configured.max_retries, configured.timeout_seconds) == (9, 77)


async def test_enqueue_without_payload_stores_null_and_scheduled_at(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    reply = await client.queue.Enqueue(pb.EnqueueRequest(queue_name=queue), metadata=client.metadata)
    job = await client.get(reply.job_id)
    assert not job.HasField("payload")
    with tenant.client() as c:
        assert c.get(f"{API}/jobs/{reply.job_id}").json()["payload"] is None
    later = await client.get(await client.enqueue(queue, scheduled_at=future(3600)))
    assert later.status == pb.JOB_STATUS_SCHEDULED and later.HasField("scheduled_at")
    past = await client.get(await client.enqueue(queue, scheduled_at=future(-60)))
    assert past.status == pb.JOB_STATUS_PENDING


async def test_enqueue_validation_errors(client: Client) -> None:
    enqueue = client.queue.Enqueue
    m = client.metadata
    await rpc_error(enqueue(pb.EnqueueRequest(queue_name=""), metadata=m), OK.INVALID_ARGUMENT)
    await rpc_error(enqueue(pb.EnqueueRequest(queue_name="bad name!"), metadata=m), OK.INVALID_ARGUMENT)
    await rpc_error(enqueue(pb.EnqueueRequest(queue_name=".hidden"), metadata=m), OK.INVALID_ARGUMENT)
    await rpc_error(enqueue(pb.EnqueueRequest(queue_name="q" * 256), metadata=m), OK.INVALID_ARGUMENT)
    assert (await enqueue(pb.EnqueueRequest(queue_name="q" * 255), metadata=m)).created  # gRPC allows 255
    err = await rpc_error(enqueue(pb.EnqueueRequest(queue_name=new_queue(), idempotency_key="k" * 256),
                                  metadata=m), OK.INVALID_ARGUMENT)
    assert "idempotency_key" in err.details()
    huge = pb.EnqueueRequest(queue_name=new_queue(), payload={"blob": "x" * (1_048_576 + 10)})
    await rpc_error(enqueue(huge, metadata=m), OK.INVALID_ARGUMENT)
    bad_time = pb.EnqueueRequest(queue_name=new_queue(), scheduled_at=timestamp_pb2.Timestamp(seconds=2**40))
    await rpc_error(enqueue(bad_time, metadata=m), OK.INVALID_ARGUMENT)


async def test_get_job_errors_and_non_object_json(client: Client, tenant: Tenant, other_tenant: Tenant) -> None:
    await rpc_error(client.queue.GetJob(pb.GetJobRequest(job_id=""), metadata=client.metadata),
                    OK.INVALID_ARGUMENT)
    await rpc_error(client.queue.GetJob(pb.GetJobRequest(job_id="not-a-uuid"), metadata=client.metadata),
                    OK.NOT_FOUND)
    await rpc_error(client.queue.GetJob(pb.GetJobRequest(job_id="6f1c1a7e-8f57-4b7e-9a36-3d1f0f0a3a11"),
                                        metadata=client.metadata), OK.NOT_FOUND)
    queue = new_queue()
    with tenant.client() as c:
        r = c.post(f"{API}/jobs", json={"queue_name": queue, "payload": [1, "two"]})
        array_id = r.json()["id"]
    job = await client.get(array_id)
    assert list(job.payload["value"]) == [1, "two"]  # a non-object is wrapped as {"value": ...}
    # Another organization's job does not exist for this key.
    other = await rpc_error(client.queue.GetJob(pb.GetJobRequest(job_id=array_id), metadata=md(other_tenant.api_key)),
                            OK.NOT_FOUND)
    assert other.details()


# --- authentication ---------------------------------------------------------------------------------------


async def test_authentication(server: ServerProcess, tenant: Tenant, client: Client) -> None:
    queue = new_queue()
    request = pb.EnqueueRequest(queue_name=queue)
    await rpc_error(client.queue.Enqueue(request), OK.UNAUTHENTICATED)
    await rpc_error(client.queue.Enqueue(request, metadata=md("sp_test_wrong")), OK.UNAUTHENTICATED)
    await rpc_error(client.queue.Enqueue(request, metadata=md("k" * 5000)), OK.UNAUTHENTICATED)
    await rpc_error(client.queue.Enqueue(request, metadata=(("authorization", "Basic abc"),)), OK.UNAUTHENTICATED)
    bearer = await client.queue.Enqueue(request, metadata=(("authorization", f"Bearer {tenant.api_key}"),))
    assert bearer.created
    # A JWT is refused even though REST accepts it.
    with tenant.client() as c:
        token = c.post(f"{API}/auth/login", json={"api_key": tenant.api_key}).json()["access_token"]
        assert c.get(f"{API}/jobs/{bearer.job_id}", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    await rpc_error(client.queue.Enqueue(request, metadata=(("authorization", f"Bearer {token}"),)),
                    OK.UNAUTHENTICATED)
    # A revoked key stops working (this replica forgets it at once).
    with tenant.client() as c:
        r = c.post(f"{API}/api-keys", json={"name": "short-lived"})
        key_id, key = r.json()["id"], r.json()["key"]
        assert (await client.queue.Enqueue(request, metadata=md(key))).job_id
        assert c.delete(f"{API}/api-keys/{key_id}").status_code == 204
    await rpc_error(client.queue.Enqueue(request, metadata=md(key)), OK.UNAUTHENTICATED)


async def test_scoped_key_is_confined(client: Client, tenant: Tenant) -> None:
    allowed, other = new_queue("mine"), new_queue("theirs")
    key = scoped_key(tenant, [allowed])
    m = md(key)
    outside = await client.enqueue(other)
    await rpc_error(client.queue.Enqueue(pb.EnqueueRequest(queue_name=other), metadata=m), OK.PERMISSION_DENIED)
    await rpc_error(client.queue.Dequeue(pb.DequeueRequest(queue_name=other, worker_id="w"), metadata=m),
                    OK.PERMISSION_DENIED)
    await rpc_error(client.queue.GetQueueStats(pb.GetQueueStatsRequest(queue_name=other), metadata=m),
                    OK.PERMISSION_DENIED)
    await rpc_error(client.queue.GetJob(pb.GetJobRequest(job_id=outside), metadata=m), OK.NOT_FOUND)
    assert (await client.queue.Enqueue(pb.EnqueueRequest(queue_name=allowed), metadata=m)).created


# --- plans: quotas and rate limits ------------------------------------------------------------------------


async def test_quota_and_rate_limit_are_resource_exhausted(server: ServerProcess) -> None:
    free = create_tenant(server, plan_tier="free")
    async with channel(server) as ch:
        c = Client(ch, free.api_key)
        queue = new_queue()
        # Over the plan's payload cap (64 KiB) but under the 1 MiB hard limit: a quota.
        big = pb.EnqueueRequest(queue_name=queue, payload={"blob": "x" * 70_000})
        err = await rpc_error(c.queue.Enqueue(big, metadata=c.metadata), OK.RESOURCE_EXHAUSTED)
        assert "limit reached" in err.details()
        assert "retry-after" not in dict(err.trailing_metadata() or ())
        # The free plan allows 5 requests/s with a burst of 10 on the gRPC bucket.
        codes = []
        trailers: dict[str, str] = {}
        for _ in range(30):
            try:
                await c.queue.GetQueueStats(pb.GetQueueStatsRequest(queue_name=queue), metadata=c.metadata)
                codes.append(OK.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
                if exc.code() == OK.RESOURCE_EXHAUSTED:
                    trailers = dict(exc.trailing_metadata() or ())
                    assert "limit reached" not in exc.details()
        assert OK.RESOURCE_EXHAUSTED in codes
        assert int(trailers["retry-after"]) >= 1


async def test_active_jobs_quota(server: ServerProcess) -> None:
    free = create_tenant(server, plan_tier="free")
    async with channel(server) as ch:
        c = Client(ch, free.api_key)
        queue = new_queue()
        with free.client() as rest:
            r = rest.post(f"{API}/jobs/bulk", json={"queue_name": queue, "jobs": [{"payload": {}}] * 10})
            assert r.json()["success_count"] == 10, r.text
        err = await rpc_error(c.queue.Enqueue(pb.EnqueueRequest(queue_name=queue), metadata=c.metadata),
                              OK.RESOURCE_EXHAUSTED)
        assert err.details() == "active_jobs limit reached (10/10)"


# --- Dequeue and the settlement RPCs ----------------------------------------------------------------------


async def test_dequeue_fields_defaults_and_clamping(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    ids = [await client.enqueue(queue, {"i": i}) for i in range(3)]
    before = datetime.now(UTC)
    one = await client.dequeue(queue, "w-1", batch_size=0)  # 0 means 1
    assert [j.id for j in one] == ids[:1]
    job = one[0]
    assert job.status == pb.JOB_STATUS_PROCESSING and job.assigned_worker_id == "w-1"
    assert job.organization_id == tenant.org_id and job.queue_name == queue and job.lease_id
    assert dict(job.payload) == {"i": 0}
    lease_secs = job.lease_expires_at.ToDatetime(UTC) - job.started_at.ToDatetime(UTC)
    assert lease_secs == timedelta(seconds=300)  # gRPC's default lease
    assert abs((job.started_at.ToDatetime(UTC) - before).total_seconds()) < 30
    stored = await client.get(job.id)
    assert stored.started_at == job.started_at and stored.lease_expires_at == job.lease_expires_at
    short = await client.dequeue(queue, "w-1", lease_duration_secs=1)
    assert short[0].lease_expires_at.seconds - short[0].started_at.seconds == 5  # clamped to 5..3600
    rest = await client.dequeue(queue, "w-1", batch_size=1000)
    assert [j.id for j in rest] == ids[2:]
    assert await client.dequeue(queue, "w-1") == []
    await rpc_error(client.queue.Dequeue(pb.DequeueRequest(queue_name=queue), metadata=client.metadata),
                    OK.INVALID_ARGUMENT)
    await rpc_error(client.queue.Dequeue(pb.DequeueRequest(queue_name="", worker_id="w"), metadata=client.metadata),
                    OK.INVALID_ARGUMENT)


async def test_dequeue_batch_is_capped_at_100_and_ordered(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    with tenant.client() as c:
        for start in (0, 100):
            r = c.post(f"{API}/jobs/bulk", json={"queue_name": queue,
                                                   "jobs": [{"payload": {"i": start + i}} for i in range(100)]})
            assert r.json()["success_count"] == 100
        urgent = c.post(f"{API}/jobs", json={"queue_name": queue, "payload": {}, "priority": 5}).json()["id"]
    jobs = await client.dequeue(queue, batch_size=500)
    assert len(jobs) == 100
    assert jobs[0].id == urgent  # priority first, then FIFO
    assert [j.payload["i"] for j in jobs[1:]] == list(range(99))


async def test_paused_queue_yields_nothing(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    await client.enqueue(queue)
    with tenant.client() as c:
        assert c.post(f"{API}/queues/{queue}/pause", json={}).status_code == 200
        assert await client.dequeue(queue) == []
        assert c.post(f"{API}/queues/{queue}/resume").status_code == 200
    assert len(await client.dequeue(queue)) == 1


async def test_complete_and_its_errors(client: Client, owner_db: asyncpg.Connection) -> None:
    queue = new_queue()
    await client.enqueue(queue)
    await client.enqueue(queue)
    job, other = await client.dequeue(queue, "w1", batch_size=2)
    q, m = client.queue, client.metadata
    # Every field is required; a missing lease gets the contract's exact message.
    await rpc_error(q.Complete(pb.CompleteRequest(worker_id="w1", lease_id=job.lease_id), metadata=m),
                    OK.INVALID_ARGUMENT)
    await rpc_error(q.Complete(pb.CompleteRequest(job_id=job.id, lease_id=job.lease_id), metadata=m),
                    OK.INVALID_ARGUMENT)
    await rpc_error(q.Complete(pb.CompleteRequest(job_id=job.id, worker_id="w1"), metadata=m),
                    OK.INVALID_ARGUMENT, "lease_id is required for job settlement")
    # Wrong lease or expired lease: FAILED_PRECONDITION with exactly "Lease expired".
    await rpc_error(client.complete(job, lease_id="00000000-0000-4000-8000-000000000000"),
                    OK.FAILED_PRECONDITION, "Lease expired")
    await rpc_error(client.complete(job, lease_id="garbage"), OK.FAILED_PRECONDITION, "Lease expired")
    await rpc_error(client.complete(job, worker="w2"), OK.NOT_FOUND, "Job not found or not authorized")
    await rpc_error(q.Complete(pb.CompleteRequest(job_id="nope", worker_id="w1", lease_id=job.lease_id), metadata=m),
                    OK.NOT_FOUND, "Job not found or not authorized")
    done = await q.Complete(pb.CompleteRequest(job_id=job.id, worker_id="w1", lease_id=job.lease_id,
                                               result={"ok": True, "n": 2}), metadata=m)
    assert done.success
    stored = await client.get(job.id)
    assert stored.status == pb.JOB_STATUS_COMPLETED and dict(stored.result) == {"ok": True, "n": 2}
    assert stored.HasField("completed_at")
    # Already finished: NOT_FOUND.
    await rpc_error(client.complete(job), OK.NOT_FOUND, "Job not found or not authorized")
    await owner_db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
                           other.id)
    await rpc_error(client.complete(other), OK.FAILED_PRECONDITION, "Lease expired")


async def test_fencing_a_requeued_job_cannot_be_settled_by_its_old_holder(
    client: Client, owner_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    job_id = await client.enqueue(queue)
    (first,) = await client.dequeue(queue, "w-old")
    await owner_db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", job_id)
    second = None
    deadline = time.monotonic() + 10
    while second is None and time.monotonic() < deadline:
        got = await client.dequeue(queue, "w-new")  # the recovery loop requeues it within ~0.3 s
        second = got[0] if got else None
    assert second is not None and second.id == job_id and second.lease_id != first.lease_id
    await rpc_error(client.complete(first, "w-old"), OK.FAILED_PRECONDITION, "Lease expired")
    await rpc_error(client.queue.Fail(pb.FailRequest(job_id=job_id, worker_id="w-old", lease_id=first.lease_id,
                                                     retry=True), metadata=client.metadata),
                    OK.FAILED_PRECONDITION, "Lease expired")
    await rpc_error(client.complete(first, "w-new"), OK.FAILED_PRECONDITION, "Lease expired")  # old lease
    assert (await client.complete(second, "w-new")).success


async def test_fail_retry_rules_and_truncation(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    q, m = client.queue, client.metadata
    ids = [await client.enqueue(queue, {"i": i}, max_retries=2) for i in range(3)]
    a, b, c = await client.dequeue(queue, "w", batch_size=3)
    # retry=true: the normal policy, delay = base 60 s x 2^0.
    retried = await q.Fail(pb.FailRequest(job_id=a.id, worker_id="w", lease_id=a.lease_id, error="boom",
                                          retry=True), metadata=m)
    assert retried.success and retried.will_retry and 55 <= retried.next_retry_delay_secs <= 60
    stored = await client.get(a.id)
    assert stored.status == pb.JOB_STATUS_PENDING and stored.retry_count == 1 and stored.last_error == "boom"
    assert stored.lease_id == "" and stored.assigned_worker_id == ""
    # Absent retry dead-letters at once (older copies cannot send it).
    absent = await q.Fail(pb.FailRequest(job_id=b.id, worker_id="w", lease_id=b.lease_id, error="x"), metadata=m)
    assert absent.success and not absent.will_retry and absent.next_retry_delay_secs == 0
    assert (await client.get(b.id)).status == pb.JOB_STATUS_DEADLETTER
    # Explicit false too; the error is cut to 4096 bytes with a suffix.
    long_error = "é" * 5000
    explicit = await q.Fail(pb.FailRequest(job_id=c.id, worker_id="w", lease_id=c.lease_id, error=long_error,
                                           retry=False), metadata=m)
    assert not explicit.will_retry
    stored_c = await client.get(c.id)
    assert stored_c.status == pb.JOB_STATUS_DEADLETTER
    assert stored_c.last_error.endswith("... [truncated]")
    assert len(stored_c.last_error.encode()) <= 4096 and stored_c.last_error.startswith("éé")
    await rpc_error(q.Fail(pb.FailRequest(job_id=c.id, worker_id="w", error="x"), metadata=m),
                    OK.INVALID_ARGUMENT, "lease_id is required for job settlement")
    assert ids


async def test_fail_exhausting_retries_dead_letters(client: Client, owner_db: asyncpg.Connection) -> None:
    queue = new_queue()
    job_id = await client.enqueue(queue, max_retries=1)
    q, m = client.queue, client.metadata
    (job,) = await client.dequeue(queue, "w")
    first = await q.Fail(pb.FailRequest(job_id=job.id, worker_id="w", lease_id=job.lease_id, error="1", retry=True),
                         metadata=m)
    assert first.will_retry
    await owner_db.execute("UPDATE jobs SET scheduled_at = now() WHERE id = $1", job_id)  # the backoff is over
    (again,) = await client.dequeue(queue, "w")
    assert again.id == job_id and again.retry_count == 1
    last = await q.Fail(pb.FailRequest(job_id=job_id, worker_id="w", lease_id=again.lease_id, error="2",
                                       retry=True), metadata=m)
    assert last.success and not last.will_retry and last.next_retry_delay_secs == 0
    stored = await client.get(job_id)
    assert stored.status == pb.JOB_STATUS_DEADLETTER and stored.retry_count == 2 and stored.last_error == "2"


async def test_renew_lease(client: Client, owner_db: asyncpg.Connection) -> None:
    queue = new_queue()
    await client.enqueue(queue)
    (job,) = await client.dequeue(queue, "w", lease_duration_secs=30)
    q, m = client.queue, client.metadata
    renewed = await q.RenewLease(pb.RenewLeaseRequest(job_id=job.id, worker_id="w", lease_id=job.lease_id,
                                                      extension_secs=600), metadata=m)
    assert renewed.success
    remaining = renewed.new_expires_at.ToDatetime(UTC) - datetime.now(UTC)
    assert timedelta(seconds=570) < remaining <= timedelta(seconds=600)
    default = await q.RenewLease(pb.RenewLeaseRequest(job_id=job.id, worker_id="w", lease_id=job.lease_id),
                                 metadata=m)
    remaining = default.new_expires_at.ToDatetime(UTC) - datetime.now(UTC)
    assert timedelta(seconds=270) < remaining <= timedelta(seconds=300)  # 0 means 300, replacing, not adding
    await rpc_error(q.RenewLease(pb.RenewLeaseRequest(job_id=job.id, worker_id="w",
                                                      lease_id="00000000-0000-4000-8000-000000000000"),
                                 metadata=m), OK.FAILED_PRECONDITION, "Lease expired")
    await rpc_error(q.RenewLease(pb.RenewLeaseRequest(job_id=job.id, worker_id="w"), metadata=m),
                    OK.INVALID_ARGUMENT, "lease_id is required for job settlement")
    stored = await owner_db.fetchval("SELECT lease_expires_at FROM jobs WHERE id = $1", job.id)
    assert stored == default.new_expires_at.ToDatetime(UTC)


async def test_get_queue_stats(client: Client, owner_db: asyncpg.Connection) -> None:
    queue = new_queue()
    empty = await client.queue.GetQueueStats(pb.GetQueueStatsRequest(queue_name=queue), metadata=client.metadata)
    assert (empty.queue_name, empty.total, empty.pending, empty.max_age_ms) == (queue, 0, 0, 0)
    for _ in range(3):
        await client.enqueue(queue)
    (job,) = await client.dequeue(queue, "w")
    await client.complete(job, "w")
    await client.dequeue(queue, "w")
    await owner_db.execute("UPDATE jobs SET created_at = now() - interval '2 seconds' WHERE queue_name = $1", queue)
    stats = await client.queue.GetQueueStats(pb.GetQueueStatsRequest(queue_name=queue), metadata=client.metadata)
    assert (stats.pending, stats.processing, stats.completed, stats.total) == (1, 1, 1, 3)
    assert (stats.scheduled, stats.failed, stats.deadletter) == (0, 0, 0)
    assert 2000 <= stats.max_age_ms < 60_000
    await rpc_error(client.queue.GetQueueStats(pb.GetQueueStatsRequest(queue_name="bad name"),
                                               metadata=client.metadata), OK.INVALID_ARGUMENT)


# --- across transports ------------------------------------------------------------------------------------


async def test_grpc_enqueued_job_is_claimed_and_completed_over_rest(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    job_id = await client.enqueue(queue, {"from": "grpc"})
    with tenant.client() as c:
        claimed = c.post(f"{API}/jobs/claim", json={"queue_name": queue, "worker_id": "rest-w"}).json()["jobs"]
        assert [j["id"] for j in claimed] == [job_id] and claimed[0]["payload"] == {"from": "grpc"}
        r = c.post(f"{API}/jobs/{job_id}/complete", json={"worker_id": "rest-w", "lease_id": claimed[0]["lease_id"]})
        assert r.status_code == 200, r.text
    assert (await client.get(job_id)).status == pb.JOB_STATUS_COMPLETED


async def test_rest_claimed_job_is_settled_over_grpc(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    with tenant.client() as c:
        job_id = c.post(f"{API}/jobs", json={"queue_name": queue, "payload": {}}).json()["id"]
        claimed = c.post(f"{API}/jobs/claim", json={"queue_name": queue, "worker_id": "w"}).json()["jobs"][0]
    done = await client.queue.Complete(pb.CompleteRequest(job_id=job_id, worker_id="w",
                                                          lease_id=claimed["lease_id"]), metadata=client.metadata)
    assert done.success
    with tenant.client() as c:
        assert c.get(f"{API}/jobs/{job_id}").json()["status"] == "completed"
