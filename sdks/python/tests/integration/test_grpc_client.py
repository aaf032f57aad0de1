"""client.grpc: the unary RPCs and both streams, with errors mapped like REST."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from spooled import (
    AsyncSpooledClient,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    SpooledClient,
    ValidationError,
)
from spooled.grpc import from_struct, pb


def test_unary_calls(client: SpooledClient) -> None:
    g = client.grpc
    first = g.enqueue("grpc-q", {"n": 1}, priority=5, max_retries=2, idempotency_key="g-1", tags={"k": "v"})
    again = g.enqueue("grpc-q", {"n": 2}, idempotency_key="g-1")
    assert first.created and not again.created and again.job_id == first.job_id
    job = g.get_job(first.job_id)
    assert (job.queue_name, job.status, job.priority, from_struct(job.payload)) == (
        "grpc-q",
        pb.JOB_STATUS_PENDING,
        5,
        {"n": 1},
    )
    assert g.get_queue_stats("grpc-q").pending == 1
    registered = g.register("grpc-q", hostname="grpc-host", max_concurrency=3, worker_id="grpc-w")
    assert registered.worker_id == "grpc-w"
    claimed = g.dequeue("grpc-q", "grpc-w", batch_size=10, lease_duration_secs=30).jobs
    assert [j.id for j in claimed] == [first.job_id]
    lease = claimed[0].lease_id
    renewed = g.renew_lease(first.job_id, "grpc-w", lease, 60)
    assert renewed.success and renewed.HasField("new_expires_at")
    assert g.complete(first.job_id, "grpc-w", lease, {"done": True}).success
    assert client.jobs.get(first.job_id).result == {"done": True}
    assert g.heartbeat("grpc-w", current_jobs=0).acknowledged
    assert g.deregister("grpc-w").success


def test_fail_without_retry_dead_letters(client: SpooledClient) -> None:
    g = client.grpc
    job_id = g.enqueue("grpc-fail", {}, max_retries=5).job_id
    lease = g.dequeue("grpc-fail", "w").jobs[0].lease_id
    outcome = g.fail(job_id, "w", lease, "fatal", retry=False)
    assert outcome.success and not outcome.will_retry
    assert client.jobs.get(job_id).status == "deadletter"


def test_errors_are_mapped(client: SpooledClient, tenant: Any) -> None:
    g = client.grpc
    job_id = g.enqueue("grpc-err", {}).job_id
    g.dequeue("grpc-err", "w")
    with pytest.raises(ConflictError) as lease:
        g.complete(job_id, "w", "00000000-0000-4000-8000-000000000000")
    assert lease.value.code == "LEASE_EXPIRED"
    with pytest.raises(NotFoundError):
        g.get_job("00000000-0000-4000-8000-000000000000")
    with pytest.raises(ValidationError):
        g.enqueue("bad queue name!", {})
    with SpooledClient("sp_test_nope", grpc_address=client.config.grpc_address) as bad:
        with pytest.raises(AuthenticationError):
            bad.grpc.get_queue_stats("x")


def test_stream_jobs_pushes_new_jobs(client: SpooledClient) -> None:
    g = client.grpc
    got: list[Any] = []
    ready = threading.Event()

    def consume() -> None:
        ready.set()
        for job in g.stream_jobs("pushed", "stream-w", lease_duration_secs=30):
            got.append(job)
            if len(got) == 2:
                return

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    ready.wait(5)
    ids = {g.enqueue("pushed", {"n": n}).job_id for n in range(2)}
    reader.join(30)
    assert {j.id for j in got} == ids
    for job in got:
        g.complete(job.id, "stream-w", job.lease_id)


def test_process_jobs_stream_batches(client: SpooledClient) -> None:
    g = client.grpc
    ids = {g.enqueue("bidi", {"n": n}).job_id for n in range(3)}
    stream = g.process_jobs()
    try:
        reply = stream.send(
            pb.ProcessRequest(
                dequeue=pb.DequeueRequest(
                    queue_name="bidi", worker_id="bidi-w", batch_size=10, batch_response=True
                )
            )
        ).result(10)
        jobs = list(reply.job_batch.jobs)
        assert {j.id for j in jobs} == ids
        futures = [
            stream.send(
                pb.ProcessRequest(
                    complete=pb.CompleteRequest(job_id=j.id, worker_id="bidi-w", lease_id=j.lease_id)
                )
            )
            for j in jobs
        ]
        assert all(f.result(10).complete.success for f in futures)
        empty = stream.send(
            pb.ProcessRequest(
                dequeue=pb.DequeueRequest(
                    queue_name="bidi", worker_id="bidi-w", batch_size=10, batch_response=True
                )
            )
        ).result(10)
        assert list(empty.job_batch.jobs) == []
    finally:
        stream.close()


async def test_async_grpc(aclient: AsyncSpooledClient) -> None:
    g = aclient.grpc
    job_id = (await g.enqueue("agrpc", {"a": 1})).job_id
    stream = g.process_jobs()
    try:
        reply = await stream.send(
            pb.ProcessRequest(
                dequeue=pb.DequeueRequest(
                    queue_name="agrpc", worker_id="aw", batch_size=5, batch_response=True
                )
            )
        )
        job = reply.job_batch.jobs[0]
        assert job.id == job_id
        done = await stream.send(
            pb.ProcessRequest(
                complete=pb.CompleteRequest(job_id=job.id, worker_id="aw", lease_id=job.lease_id)
            )
        )
        assert done.complete.success
    finally:
        await stream.close()
    assert (await g.get_job(job_id)).status == pb.JOB_STATUS_COMPLETED
    pushed: list[str] = []

    async def consume() -> None:
        async for item in g.stream_jobs("apush", "aw2"):
            pushed.append(item.id)
            return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    new_id = (await g.enqueue("apush", {})).job_id
    await asyncio.wait_for(task, 30)
    assert pushed == [new_id]
