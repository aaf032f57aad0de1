"""The worker streams over real gRPC: ProcessJobs (bidirectional) and StreamJobs (server push), grpc.md sections 3-5."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from ..support import ServerProcess, Tenant
from .grpc_helpers import (
    SMALL_WINDOW,
    Client,
    channel,
    complete_request,
    count_status,
    dequeue_request,
    eventually,
    md,
    new_queue,
    pb,
    rpc_error,
)

API = "/api/v1"
BIG = "x" * 100_000  # one job bigger than a small client window: its write cannot complete unread


@pytest.fixture
async def client(server: ServerProcess, tenant: Tenant) -> AsyncIterator[Client]:
    async with channel(server) as ch:
        yield Client(ch, tenant.api_key)


def bulk(tenant: Tenant, queue: str, count: int, payload: dict[str, object] | None = None) -> None:
    step = 100 if payload is None else 5  # keep each request body well under the REST body limit
    with tenant.client() as c:
        for start in range(0, count, step):
            n = min(step, count - start)
            jobs = [{"payload": payload if payload is not None else {"i": start + i}} for i in range(n)]
            r = c.post(f"{API}/jobs/bulk", json={"queue_name": queue, "jobs": jobs})
            assert r.json()["success_count"] == n, r.text


async def exchange(call: grpc.aio.StreamStreamCall, requests: list[pb.ProcessRequest]) -> list[pb.ProcessResponse]:
    """Write every request at once (pipelined), then read exactly one reply per request."""
    for request in requests:
        await call.write(request)
    return [await call.read() for _ in requests]


# --- ProcessJobs ------------------------------------------------------------------------------------------


async def test_process_jobs_batch_replies_and_settlements(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    bulk(tenant, queue, 30)
    call = client.process()
    (reply,) = await exchange(call, [dequeue_request(queue, "w", batch_size=25, batch=True)])
    assert reply.WhichOneof("response") == "job_batch"
    jobs = list(reply.job_batch.jobs)
    assert len(jobs) == 25 and [j.payload["i"] for j in jobs] == list(range(25))
    assert all(j.status == pb.JOB_STATUS_PROCESSING and j.assigned_worker_id == "w" and j.lease_id for j in jobs)
    replies = await exchange(call, [complete_request(j, "w") for j in jobs])
    assert [r.WhichOneof("response") for r in replies] == ["complete"] * 25
    assert all(r.complete.success for r in replies)
    # batch_response with batch_size 0 claims one; an empty batch is a batch, never NO_JOBS.
    replies = await exchange(call, [dequeue_request(queue, "w", batch=True),
                                    dequeue_request(queue, "w", batch_size=100, batch=True),
                                    dequeue_request(queue, "w", batch_size=100, batch=True)])
    assert [len(r.job_batch.jobs) for r in replies] == [1, 4, 0]
    assert all(r.WhichOneof("response") == "job_batch" for r in replies)
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_process_jobs_legacy_single_dequeue_ignores_batch_size(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    bulk(tenant, queue, 3)
    call = client.process()
    replies = await exchange(call, [dequeue_request(queue, "w", batch_size=50), dequeue_request(queue, "w"),
                                    dequeue_request(queue, "w"), dequeue_request(queue, "w")])
    kinds = [r.WhichOneof("response") for r in replies]
    assert kinds == ["job", "job", "job", "error"]
    assert (replies[3].error.code, replies[3].error.message) == ("NO_JOBS", "No jobs available")
    assert len({r.job.id for r in replies[:3]}) == 3
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_process_jobs_replies_in_order_with_in_band_errors(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    bulk(tenant, queue, 4)
    call = client.process()
    (first,) = await exchange(call, [dequeue_request(queue, "w", batch_size=4, batch=True)])
    a, b, c, d = first.job_batch.jobs
    wrong_lease = "00000000-0000-4000-8000-000000000000"
    requests = [
        pb.ProcessRequest(),  # no member set
        complete_request(a, "w"),
        complete_request(b, "w", lease=wrong_lease),
        pb.ProcessRequest(fail=pb.FailRequest(job_id=c.id, worker_id="w", lease_id=c.lease_id, error="e",
                                              retry=True)),
        complete_request(a, "w"),  # the same job again: already finished
        pb.ProcessRequest(renew_lease=pb.RenewLeaseRequest(job_id=d.id, worker_id="w", lease_id=d.lease_id,
                                                           extension_secs=120)),
        complete_request(d, "w", lease=""),
        pb.ProcessRequest(complete=pb.CompleteRequest(job_id="not-a-uuid", worker_id="w", lease_id=d.lease_id)),
        pb.ProcessRequest(complete=pb.CompleteRequest(job_id=d.id, lease_id=d.lease_id)),
        dequeue_request("bad name", "w"),
        dequeue_request(queue, ""),
        pb.ProcessRequest(fail=pb.FailRequest(job_id=b.id, worker_id="w", lease_id=b.lease_id, error="x")),
        complete_request(d, "w"),
        dequeue_request(queue, "w"),
    ]
    replies = await exchange(call, requests)
    got = [(r.WhichOneof("response"), r.error.code if r.HasField("error") else "") for r in replies]
    assert got == [
        ("error", "INVALID_REQUEST"),
        ("complete", ""),
        ("error", "LEASE_EXPIRED"),
        ("fail", ""),
        ("error", "NOT_FOUND"),
        ("renew_lease", ""),
        ("error", "INVALID_ARGUMENT"),
        ("error", "NOT_FOUND"),
        ("error", "INVALID_ARGUMENT"),
        ("error", "INVALID_ARGUMENT"),
        ("error", "INVALID_ARGUMENT"),
        ("fail", ""),
        ("complete", ""),
        ("error", "NO_JOBS"),
    ]
    assert replies[2].error.message == "Lease expired"
    assert replies[3].fail.will_retry and replies[3].fail.next_retry_delay_secs >= 55
    assert replies[4].error.message == "Job not found or not authorized"
    assert replies[5].renew_lease.success and replies[5].renew_lease.HasField("new_expires_at")
    assert replies[6].error.message == "lease_id is required for job settlement"
    assert not replies[11].fail.will_retry  # retry absent: dead-letter
    assert (await client.get(b.id)).status == pb.JOB_STATUS_DEADLETTER
    assert (await client.get(c.id)).status == pb.JOB_STATUS_PENDING
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_pipelined_messages_keep_their_effects_in_order(client: Client, tenant: Tenant) -> None:
    """Claims may overtake earlier settlements, but settlements and renewals apply in the order sent, even
    when they land in different groups: a renewal sent right after a completion always finds the job
    finished, and each job's claim reply comes back in request order."""
    queue = new_queue()
    bulk(tenant, queue, 60)
    call = client.process()
    (first,) = await exchange(call, [dequeue_request(queue, "w", batch_size=30, batch=True)])
    jobs = list(first.job_batch.jobs)
    assert len(jobs) == 30
    requests: list[pb.ProcessRequest] = []
    for job in jobs:
        requests += [
            complete_request(job, "w"),
            pb.ProcessRequest(renew_lease=pb.RenewLeaseRequest(job_id=job.id, worker_id="w", lease_id=job.lease_id,
                                                               extension_secs=60)),
            dequeue_request(queue, "w", batch_size=1, batch=True),
        ]
    replies: list[pb.ProcessResponse] = []
    for request in requests:  # one message at a time on the wire, read afterwards: many small groups
        await call.write(request)
        await asyncio.sleep(0)
    replies = [await call.read() for _ in requests]
    kinds = [r.WhichOneof("response") for r in replies]
    assert kinds == ["complete", "error", "job_batch"] * 30, kinds
    assert {r.error.code for r in replies[1::3]} == {"NOT_FOUND"}  # finished: no lease left to renew
    claimed = [job.id for r in replies[2::3] for job in r.job_batch.jobs]
    assert len(claimed) == len(set(claimed)) == 30  # each of the other 30 jobs claimed exactly once
    assert not set(claimed) & {j.id for j in jobs}
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_settlements_sent_together_are_applied_in_one_statement(
    client: Client, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    bulk(tenant, queue, 100)
    call = client.process()
    (reply,) = await exchange(call, [dequeue_request(queue, "w", batch_size=100, batch=True)])
    jobs = list(reply.job_batch.jobs)
    # One write of all 100 completes arrives together; a job completed in the same statement shares its
    # transaction's now(), so few distinct completion times means few statements.
    replies = await exchange(call, [complete_request(j, "w") for j in jobs])
    assert all(r.complete.success for r in replies)
    distinct = await owner_db.fetchval(
        "SELECT count(DISTINCT completed_at) FROM jobs WHERE queue_name = $1 AND status = 'completed'", queue)
    # How many groups depends on how the messages arrive (a loaded machine reads them in smaller pieces);
    # one statement per completion would make 100.
    assert 1 <= distinct <= 25, f"{distinct} statements for 100 completions"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_batched_settlements_keep_per_job_fencing(
    client: Client, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    bulk(tenant, queue, 6)
    call = client.process()
    (reply,) = await exchange(call, [dequeue_request(queue, "w", batch_size=6, batch=True)])
    j = list(reply.job_batch.jobs)
    await owner_db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", j[3].id)
    requests = [
        complete_request(j[0], "w"),
        complete_request(j[1], "w", lease=j[2].lease_id),  # another job's lease
        complete_request(j[2], "intruder"),  # another worker
        complete_request(j[3], "w"),  # expired
        pb.ProcessRequest(fail=pb.FailRequest(job_id=j[4].id, worker_id="w", lease_id=j[5].lease_id, error="x")),
        pb.ProcessRequest(fail=pb.FailRequest(job_id=j[5].id, worker_id="w", lease_id=j[5].lease_id, error="x",
                                              retry=True)),
    ]
    replies = await exchange(call, requests)
    got = [r.error.code if r.HasField("error") else r.WhichOneof("response") for r in replies]
    assert got == ["complete", "LEASE_EXPIRED", "NOT_FOUND", "LEASE_EXPIRED", "LEASE_EXPIRED", "fail"]
    rows = {r["id"]: r["status"] for r in await owner_db.fetch(
        "SELECT id::text, status FROM jobs WHERE queue_name = $1", queue)}
    assert [rows[x.id] for x in j[:3]] == ["completed", "processing", "processing"]
    assert rows[j[3].id] in ("processing", "pending")  # the lease-recovery loop may have requeued it already
    assert [rows[x.id] for x in j[4:]] == ["processing", "pending"]
    await call.done_writing()


def settle(*items: pb.Settlement) -> pb.ProcessRequest:
    return pb.ProcessRequest(settle_batch=pb.SettleBatchRequest(settlements=list(items)))


def done(job: pb.Job, worker: str = "w", lease: str | None = None, **fields: object) -> pb.Settlement:
    return pb.Settlement(complete=pb.CompleteRequest(
        job_id=job.id, worker_id=worker, lease_id=job.lease_id if lease is None else lease, **fields))


async def test_settle_batch_one_reply_per_message_with_per_job_fencing(
    client: Client, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    bulk(tenant, queue, 7)
    call = client.process()
    (reply,) = await exchange(call, [dequeue_request(queue, "w", batch_size=7, batch=True)])
    j = list(reply.job_batch.jobs)
    await owner_db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", j[3].id)
    batch = settle(
        done(j[0], result={"ok": True}),
        done(j[1], lease=j[2].lease_id),  # another job's lease
        done(j[2], worker="intruder"),  # another worker
        done(j[3]),  # expired
        pb.Settlement(fail=pb.FailRequest(job_id=j[4].id, worker_id="w", lease_id=j[4].lease_id, error="boom",
                                          retry=True)),
        pb.Settlement(complete=pb.CompleteRequest(job_id="not-a-uuid", worker_id="w", lease_id=j[5].lease_id)),
        pb.Settlement(),  # neither member set
        done(j[6]),
        done(j[6]),  # the same job twice: the second finds it finished
    )
    # One message in, one reply out, and the stream goes on (a single-message complete after it).
    replies = await exchange(call, [batch, complete_request(j[5], "w")])
    assert replies[0].WhichOneof("response") == "settle_batch"
    results = list(replies[0].settle_batch.results)
    kinds = [r.error.code if r.HasField("error") else r.WhichOneof("result") for r in results]
    assert kinds == ["complete", "LEASE_EXPIRED", "NOT_FOUND", "LEASE_EXPIRED", "fail", "NOT_FOUND",
                     "INVALID_ARGUMENT", "complete", "NOT_FOUND"], kinds
    assert results[4].fail.success and results[4].fail.will_retry and results[4].fail.next_retry_delay_secs > 0
    assert "neither complete nor fail" in results[6].error.message
    assert replies[1].complete.success
    rows = {r["id"]: (r["status"], r["result"]) for r in await owner_db.fetch(
        "SELECT id::text, status, result::text FROM jobs WHERE queue_name = $1", queue)}
    assert rows[j[0].id] == ("completed", '{"ok": true}')
    assert [rows[x.id][0] for x in j[1:3]] == ["processing"] * 2
    assert rows[j[3].id][0] in ("processing", "pending")  # the lease-recovery loop may have requeued it already
    assert rows[j[4].id][0] in ("pending", "scheduled")  # back for a retry after its backoff
    assert rows[j[5].id][0] == "completed" and rows[j[6].id][0] == "completed"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_settle_batch_limits(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    call = client.process()
    filler = pb.Settlement(complete=pb.CompleteRequest(job_id="00000000-0000-4000-8000-000000000000",
                                                       worker_id="w", lease_id="00000000-0000-4000-8000-000000000001"))
    too_many = settle(*([filler] * 1001))
    replies = await exchange(call, [too_many, settle(), dequeue_request(queue, "w")])
    assert replies[0].error.code == "INVALID_ARGUMENT" and "at most 1000" in replies[0].error.message
    assert replies[1].WhichOneof("response") == "settle_batch" and not replies[1].settle_batch.results
    assert replies[2].error.code == "NO_JOBS"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_process_jobs_auth_and_scope(client: Client, tenant: Tenant) -> None:
    # The server authenticates before it reads a message, so the stream ends without one: writing first
    # would race the server's close (grpcio then reports a local INTERNAL instead of the server's status).
    call = client.queue.ProcessJobs()
    await rpc_error(call.read(), grpc.StatusCode.UNAUTHENTICATED)
    queue, other = new_queue("mine"), new_queue("theirs")
    with tenant.client() as c:
        key = c.post(f"{API}/api-keys", json={"name": "scoped", "queues": [queue]}).json()["key"]
    call = client.queue.ProcessJobs(metadata=md(key))
    replies = await exchange(call, [dequeue_request(other, "w"), dequeue_request(queue, "w")])
    assert replies[0].error.code == "PERMISSION_DENIED"
    assert replies[1].error.code == "NO_JOBS"  # the stream stays open
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_process_jobs_key_revoked_mid_stream(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    with tenant.client() as c:
        r = c.post(f"{API}/api-keys", json={"name": "revoked-later"})
        key_id, key = r.json()["id"], r.json()["key"]
    call = client.queue.ProcessJobs(metadata=md(key))
    (before,) = await exchange(call, [dequeue_request(queue, "w")])
    assert before.error.code == "NO_JOBS"
    with tenant.client() as c:
        assert c.delete(f"{API}/api-keys/{key_id}").status_code == 204
    (after,) = await exchange(call, [dequeue_request(queue, "w")])
    assert after.error.code == "UNAUTHENTICATED"
    await call.done_writing()


async def test_rate_limited_stream_messages_get_in_band_errors(server: ServerProcess) -> None:
    from ..support import create_tenant

    free = create_tenant(server, plan_tier="free")  # 5 requests/s, burst 10
    queue = new_queue()
    async with channel(server) as ch:
        call = Client(ch, free.api_key).process()
        replies = await exchange(call, [dequeue_request(queue, "w") for _ in range(30)])
        codes = [r.error.code for r in replies]
        assert "RATE_LIMIT_EXCEEDED" in codes and codes[0] == "NO_JOBS"
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


# --- broken streams release what they claimed ---------------------------------------------------------------


async def test_stream_broken_mid_batch_releases_the_jobs_at_once(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    bulk(tenant, queue, 20, {"blob": BIG})
    async with channel(server, SMALL_WINDOW) as ch:
        call = Client(ch, tenant.api_key).process()
        await call.write(dequeue_request(queue, "w-broken", batch_size=20, batch=True))

        async def claimed() -> bool:
            return await count_status(owner_db, queue, "processing") == 20

        await eventually(claimed)  # claimed; the 2 MB reply cannot pass a 64 KiB window unread
        call.cancel()
    started = time.monotonic()

    async def released() -> bool:
        return await count_status(owner_db, queue, "pending") == 20

    await eventually(released, within=5)
    assert time.monotonic() - started < 5  # not the 300 s lease
    rows = await owner_db.fetch("SELECT retry_count, assigned_worker_id, lease_id FROM jobs WHERE queue_name = $1",
                                queue)
    assert all(r["retry_count"] == 0 and r["assigned_worker_id"] is None and r["lease_id"] is None for r in rows)


async def test_a_flooding_client_that_never_reads_leaks_nothing(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    bulk(tenant, queue, 30, {"blob": BIG})
    async with channel(server, SMALL_WINDOW) as ch:
        call = Client(ch, tenant.api_key).process()
        for _ in range(3000):  # far more than the server reads ahead
            await call.write(dequeue_request(queue, "w-flood"))

        async def some_claimed() -> bool:
            return await count_status(owner_db, queue, "processing") >= 1

        await eventually(some_claimed)
        call.cancel()

    async def all_back() -> bool:
        return await count_status(owner_db, queue, "pending") == 30

    await eventually(all_back, within=5)
    assert await count_status(owner_db, queue, "processing") == 0


# --- StreamJobs -------------------------------------------------------------------------------------------


async def test_stream_jobs_pushes_rest_enqueued_jobs_as_they_arrive(
    client: Client, tenant: Tenant
) -> None:
    queue = new_queue()
    stream = client.queue.StreamJobs(pb.StreamJobsRequest(queue_name=queue, worker_id="s1"), metadata=client.metadata)
    await asyncio.sleep(0.3)  # the stream is idle, waiting
    with tenant.client() as c:
        sent = time.monotonic()
        job_id = c.post(f"{API}/jobs", json={"queue_name": queue, "payload": {"via": "rest"}}).json()["id"]
    job = await asyncio.wait_for(stream.read(), 10)
    waited = time.monotonic() - sent
    assert job.id == job_id and job.status == pb.JOB_STATUS_PROCESSING and job.assigned_worker_id == "s1"
    assert job.lease_expires_at.seconds - job.started_at.seconds == 300
    assert dict(job.payload) == {"via": "rest"}
    assert waited < 2.5  # woken by the enqueue, not by the 5 s fallback poll
    # The worker settles it over REST with the stream's lease.
    with tenant.client() as c:
        r = c.post(f"{API}/jobs/{job.id}/complete", json={"worker_id": "s1", "lease_id": job.lease_id})
        assert r.status_code == 200, r.text
    # A gRPC-enqueued job arrives the same way.
    second = await client.enqueue(queue)
    assert (await asyncio.wait_for(stream.read(), 10)).id == second
    stream.cancel()


async def test_stream_jobs_validation_and_scope(client: Client, tenant: Tenant) -> None:
    bad = client.queue.StreamJobs(pb.StreamJobsRequest(queue_name=new_queue()), metadata=client.metadata)
    await rpc_error(bad.read(), grpc.StatusCode.INVALID_ARGUMENT)
    bad = client.queue.StreamJobs(pb.StreamJobsRequest(queue_name="no spaces", worker_id="w"),
                                  metadata=client.metadata)
    await rpc_error(bad.read(), grpc.StatusCode.INVALID_ARGUMENT)
    anonymous = client.queue.StreamJobs(pb.StreamJobsRequest(queue_name=new_queue(), worker_id="w"))
    await rpc_error(anonymous.read(), grpc.StatusCode.UNAUTHENTICATED)
    allowed = new_queue("mine")
    with tenant.client() as c:
        key = c.post(f"{API}/api-keys", json={"name": "scoped", "queues": [allowed]}).json()["key"]
    denied = client.queue.StreamJobs(pb.StreamJobsRequest(queue_name=new_queue(), worker_id="w"), metadata=md(key))
    await rpc_error(denied.read(), grpc.StatusCode.PERMISSION_DENIED)


async def test_stream_jobs_idles_while_paused_and_resume_wakes_it(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    job_id = await client.enqueue(queue)
    with tenant.client() as c:
        assert c.post(f"{API}/queues/{queue}/pause", json={}).status_code == 200
    stream = client.queue.StreamJobs(pb.StreamJobsRequest(queue_name=queue, worker_id="p"), metadata=client.metadata)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(read_task := asyncio.ensure_future(stream.read())), 1.0)
    with tenant.client() as c:
        assert c.post(f"{API}/queues/{queue}/resume").status_code == 200
    job = await asyncio.wait_for(read_task, 3)  # resume wakes the stream (well before the 5 s poll)
    assert job.id == job_id
    stream.cancel()


async def test_stream_jobs_holds_at_most_one_unwritten_job_and_releases_it(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    bulk(tenant, queue, 5, {"blob": BIG})
    async with channel(server, SMALL_WINDOW) as ch:
        c = Client(ch, tenant.api_key)
        stream = c.queue.StreamJobs(pb.StreamJobsRequest(queue_name=queue, worker_id="slow"), metadata=c.metadata)

        async def one_claimed() -> bool:
            return await count_status(owner_db, queue, "processing") == 1

        await eventually(one_claimed)
        await asyncio.sleep(0.5)  # flow control: nothing more is claimed while the client does not read
        assert await count_status(owner_db, queue, "processing") == 1
        stream.cancel()

    async def released() -> bool:
        return await count_status(owner_db, queue, "pending") == 5

    await eventually(released, within=5)


async def test_stream_jobs_ends_when_the_key_is_revoked(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    with tenant.client() as c:
        r = c.post(f"{API}/api-keys", json={"name": "revoked-later"})
        key_id, key = r.json()["id"], r.json()["key"]
    stream = client.queue.StreamJobs(pb.StreamJobsRequest(queue_name=queue, worker_id="r"), metadata=md(key))
    await asyncio.sleep(0.3)
    with tenant.client() as c:
        assert c.delete(f"{API}/api-keys/{key_id}").status_code == 204
    job_id = await client.enqueue(queue)  # wakes the stream, which re-checks its key first
    await rpc_error(stream.read(), grpc.StatusCode.UNAUTHENTICATED)
    assert (await client.get(job_id)).status == pb.JOB_STATUS_PENDING
