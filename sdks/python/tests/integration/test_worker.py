"""SpooledWorker and AsyncSpooledWorker on both transports, against a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from spooled import (
    AsyncSpooledClient,
    AsyncSpooledWorker,
    JobContext,
    NonRetryableError,
    SpooledClient,
    SpooledWorker,
)
from spooled.worker._common import Transport

from ..conftest import wait_until

TRANSPORTS: list[Transport] = ["rest", "grpc"]


def run_in_background(worker: SpooledWorker) -> None:
    worker.start(block=False)


def status(client: SpooledClient, job_id: str) -> str:
    return str(client.jobs.get(job_id).status)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_concurrency_is_really_parallel(client: SpooledClient, transport: Transport) -> None:
    ids = [client.jobs.create(queue_name="par", payload={"n": n}).id for n in range(4)]
    barrier = threading.Barrier(4, timeout=20)  # breaks unless four handlers run at the same time
    worker = SpooledWorker(client, "par", concurrency=4, transport=transport, install_signal_handlers=False)

    @worker.process
    def handle(ctx: JobContext) -> dict[str, int]:
        barrier.wait()
        return {"n": ctx.payload["n"]}

    completed: list[str] = []
    worker.on("job:completed", lambda job, result: completed.append(job.id))
    run_in_background(worker)
    try:
        wait_until(lambda: len(completed) == 4, timeout=30)
    finally:
        worker.stop()
    assert sorted(completed) == sorted(ids)
    assert {client.jobs.get(i).result["n"] for i in ids} == {0, 1, 2, 3}


def test_an_unencodable_result_is_reported_and_the_worker_goes_on(client: SpooledClient) -> None:
    """A result gRPC cannot carry never costs the worker a thread: the error is reported, the job keeps its
    lease (it is retried when the lease runs out) and the next jobs still run."""
    bad = client.jobs.create(queue_name="unencodable", payload={"bad": True}).id
    good = [client.jobs.create(queue_name="unencodable", payload={"bad": False}).id for _ in range(3)]
    worker = SpooledWorker(client, "unencodable", concurrency=1, transport="grpc",
                           install_signal_handlers=False)

    @worker.process
    def handle(ctx: JobContext) -> Any:
        return {"value": object()} if ctx.payload["bad"] else {"ok": True}

    errors: list[BaseException] = []
    completed: list[str] = []
    worker.on("error", errors.append)
    worker.on("job:completed", lambda job, result: completed.append(job.id))
    run_in_background(worker)
    try:
        wait_until(lambda: len(completed) == 3, timeout=30)
        assert status(client, bad) == "processing"  # still leased: retried when the lease runs out
    finally:
        worker.stop()
    assert sorted(completed) == sorted(good)
    assert len(errors) == 1
    assert status(client, bad) == "pending"  # deregistering handed it back, nothing lost


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_result_progress_and_context(client: SpooledClient, transport: Transport) -> None:
    job_id = client.jobs.create(queue_name="ctx", payload={"to": "a@example.com"}, max_retries=4).id
    seen: dict[str, Any] = {}
    worker = SpooledWorker(client, queue_name="ctx", transport=transport, install_signal_handlers=False)

    @worker.process
    def handle(ctx: JobContext) -> dict[str, bool]:
        seen.update(
            job_id=ctx.job_id,
            queue=ctx.queue_name,
            attempt=ctx.attempt,
            max_retries=ctx.max_retries,
            retry_count=ctx.retry_count,
            worker_id=ctx.worker_id,
            payload=ctx.payload,
        )
        ctx.progress(30, "warming up")
        seen["progress_on_job"] = client.jobs.get(ctx.job_id).progress
        return {"sent": True}

    events: list[str] = []
    worker.on("*", lambda name, *args: events.append(name))
    run_in_background(worker)
    try:
        wait_until(lambda: status(client, job_id) == "completed", timeout=20)
    finally:
        worker.stop()
    assert seen == {
        "job_id": job_id,
        "queue": "ctx",
        "attempt": 1,
        "max_retries": 4,
        "retry_count": 0,
        "worker_id": worker.worker_id,
        "payload": {"to": "a@example.com"},
        "progress_on_job": 30,
    }
    job = client.jobs.get(job_id)
    assert job.result == {"sent": True} and job.progress_message == "warming up"
    for name in (
        "started",
        "job:claimed",
        "job:started",
        "job:progress",
        "job:completed",
        "stopping",
        "stopped",
    ):
        assert name in events
    assert client.workers.get(worker.worker_id).status == "offline"  # deregistered on stop


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exception_fails_the_job_with_a_retry(client: SpooledClient, transport: Transport) -> None:
    job_id = client.jobs.create(queue_name="boom", payload={}, max_retries=3).id
    worker = SpooledWorker(client, "boom", transport=transport, install_signal_handlers=False)
    failures: list[tuple[str, Any]] = []

    @worker.process
    def handle(ctx: JobContext) -> None:
        raise ValueError("boom")

    worker.on("job:failed", lambda job, error, will_retry: failures.append((job.id, will_retry)))
    run_in_background(worker)
    try:
        wait_until(lambda: failures, timeout=20)
    finally:
        worker.stop()
    job = client.jobs.get(job_id)
    assert (job.status, job.retry_count, job.last_error) == ("pending", 1, "ValueError: boom")
    assert failures == [(job_id, True)]


@pytest.mark.parametrize(("transport", "expected"), [("rest", "pending"), ("grpc", "deadletter")])
def test_non_retryable_error(client: SpooledClient, transport: Transport, expected: str) -> None:
    job_id = client.jobs.create(queue_name="fatal", payload={}, max_retries=5).id
    worker = SpooledWorker(client, "fatal", transport=transport, install_signal_handlers=False)

    @worker.process
    def handle(ctx: JobContext) -> None:
        raise NonRetryableError("invalid card number")

    run_in_background(worker)
    try:
        wait_until(lambda: client.jobs.get(job_id).retry_count == 1, timeout=20)
    finally:
        worker.stop()
    job = client.jobs.get(job_id)
    # gRPC sends FailRequest.retry=false; REST has no such flag, so the queue's retry policy applies.
    assert job.status == expected and job.last_error == "NonRetryableError: invalid card number"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_leases_are_renewed_for_long_jobs(client: SpooledClient, transport: Transport) -> None:
    job_id = client.jobs.create(queue_name="long", payload={}).id
    worker = SpooledWorker(
        client, "long", transport=transport, lease_duration_secs=5, install_signal_handlers=False
    )
    lost: list[str] = []

    @worker.process
    def handle(ctx: JobContext) -> str:
        time.sleep(7)  # longer than the lease: only renewals keep the job
        return "done"

    worker.on("job:lease_lost", lambda job, error: lost.append(job.id))
    run_in_background(worker)
    try:
        wait_until(lambda: status(client, job_id) == "completed", timeout=30)
    finally:
        worker.stop()
    job = client.jobs.get(job_id)
    assert lost == [] and job.retry_count == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_lost_lease_cancels_the_handler_and_never_completes_twice(
    client: SpooledClient, owner_db: asyncpg.Connection, transport: Transport
) -> None:
    job_id = client.jobs.create(queue_name="fenced", payload={}, max_retries=3).id
    worker = SpooledWorker(
        client, "fenced", transport=transport, lease_duration_secs=6, install_signal_handlers=False
    )
    first_attempt_running = threading.Event()
    first_saw_cancel = threading.Event()
    lost: list[Any] = []

    @worker.process
    def handle(ctx: JobContext) -> dict[str, int]:
        if ctx.attempt == 1:
            first_attempt_running.set()
            if ctx.cancel_event.wait(timeout=30):
                first_saw_cancel.set()
            return {"attempt": 1}  # dropped: the lease is gone
        return {"attempt": ctx.attempt}

    worker.on("job:lease_lost", lambda job, error: lost.append(error))
    run_in_background(worker)
    try:
        assert await asyncio.to_thread(first_attempt_running.wait, 20)
        await owner_db.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1::uuid", job_id
        )
        assert await asyncio.to_thread(first_saw_cancel.wait, 20)
        for _ in range(400):
            if status(client, job_id) == "completed":
                break
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(worker.stop)
    job = client.jobs.get(job_id)
    assert job.status == "completed" and job.result == {"attempt": 2}
    assert len(lost) == 1 and getattr(lost[0], "code", None) in ("LEASE_EXPIRED", "NOT_FOUND", "CONFLICT")
    completions = [h for h in client.jobs.history(job_id) if h.event_type == "completed"]
    assert len(completions) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_worker_parallel_and_complete(aclient: AsyncSpooledClient, transport: Transport) -> None:
    ids = [(await aclient.jobs.create(queue_name="apar", payload={"n": n})).id for n in range(5)]
    barrier = asyncio.Barrier(5)
    worker = AsyncSpooledWorker(
        aclient, "apar", concurrency=5, transport=transport, install_signal_handlers=False
    )
    done: list[str] = []

    @worker.process
    async def handle(ctx: Any) -> dict[str, int]:
        await asyncio.wait_for(barrier.wait(), 20)
        await ctx.progress(100, "done")
        done.append(ctx.job_id)
        if len(done) == 5:
            worker.stop()
        return {"n": ctx.payload["n"]}

    await asyncio.wait_for(worker.start(), 60)
    assert sorted(done) == sorted(ids)
    for job_id in ids:
        job = await aclient.jobs.get(job_id)
        assert job.status == "completed" and job.progress == 100


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_worker_sync_handler_and_failure(
    aclient: AsyncSpooledClient, transport: Transport
) -> None:
    job_id = (await aclient.jobs.create(queue_name="async-fail", payload={}, max_retries=1)).id
    worker = AsyncSpooledWorker(aclient, "async-fail", transport=transport, install_signal_handlers=False)
    failed = asyncio.Event()

    @worker.process
    def handle(ctx: Any) -> None:  # a plain function runs in a thread
        raise RuntimeError("nope")

    worker.on("job:failed", lambda job, error, will_retry: failed.set())
    task = asyncio.create_task(worker.start())
    await asyncio.wait_for(failed.wait(), 20)
    worker.stop()
    await asyncio.wait_for(task, 30)
    job = await aclient.jobs.get(job_id)
    assert job.retry_count == 1 and job.last_error == "RuntimeError: nope"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_from_inside_a_handler_does_not_deadlock(client: SpooledClient, transport: Transport) -> None:
    job_id = client.jobs.create(queue_name="self-stop", payload={}).id
    worker = SpooledWorker(client, "self-stop", transport=transport, install_signal_handlers=False)

    @worker.process
    def handle(ctx: JobContext) -> dict[str, bool]:
        worker.stop()  # waits only when called from outside the worker's threads
        return {"stopped_myself": True}

    started = time.monotonic()
    worker.start()  # blocks until the worker has stopped
    assert time.monotonic() - started < 20  # well under the 30 s shutdown timeout
    assert client.jobs.get(job_id).result == {"stopped_myself": True}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_idle_worker_stops_promptly(client: SpooledClient, transport: Transport) -> None:
    worker = SpooledWorker(client, "idle-stop", transport=transport, claim_wait_secs=0.5,
                           install_signal_handlers=False)
    worker.process(lambda ctx: None)
    started: list[str] = []
    worker.on("started", started.append)
    run_in_background(worker)
    wait_until(lambda: bool(started), timeout=20)
    began = time.monotonic()
    worker.stop()
    took = time.monotonic() - began
    assert not worker.running
    # Nothing runs, so nothing is waited for but the claim on the wire and the deregistration; the lease
    # keeper once held every stop back by its 5 s join timeout.
    assert took < 3, f"stop() took {took:.1f} s"


# --- separate processes: signals ---------------------------------------------------------------------------


def spawn_worker(tenant: Any, transport: Transport, queue: str, mode: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "SPOOLED_API_KEY": tenant.api_key,
        "SPOOLED_BASE_URL": tenant.server.base_url,
        "SPOOLED_GRPC_ADDRESS": f"127.0.0.1:{tenant.server.grpc_port}",
    }
    script = Path(__file__).with_name("_worker_process.py")
    return subprocess.Popen(
        [sys.executable, str(script), transport, queue, mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    result: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                result.append(line.strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert result, f"worker never printed {prefix!r}"
    return result[0]


def reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_mid_job_finishes_it(client: SpooledClient, tenant: Any, transport: Transport) -> None:
    job_id = client.jobs.create(queue_name="term", payload={}).id
    proc = spawn_worker(tenant, transport, "term", "finish")
    try:
        assert wait_for_line(proc, "STARTED") == f"STARTED {job_id}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        reap(proc)
    job = client.jobs.get(job_id)
    assert job.status == "completed" and job.result == {"mode": "finish"}


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_with_a_stuck_job_releases_it(
    client: SpooledClient, tenant: Any, transport: Transport
) -> None:
    job_id = client.jobs.create(queue_name="stuck", payload={}).id
    proc = spawn_worker(tenant, transport, "stuck", "stuck")
    try:
        wait_for_line(proc, "STARTED")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        reap(proc)
    job = client.jobs.get(job_id)
    # Handed back by deregistration: pending again, and the retry budget is untouched.
    assert (job.status, job.retry_count, job.assigned_worker_id) == ("pending", 0, None)


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigkill_loses_nothing(client: SpooledClient, tenant: Any, transport: Transport) -> None:
    job_id = client.jobs.create(queue_name="killed", payload={}, max_retries=3).id
    proc = spawn_worker(tenant, transport, "killed", "stuck")
    try:
        wait_for_line(proc, "STARTED")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        reap(proc)
    assert client.jobs.get(job_id).status == "processing"
    # The 5 s lease runs out, the server requeues the job, and another worker finishes it.
    wait_until(lambda: status(client, job_id) == "pending", timeout=30)
    survivor = SpooledWorker(client, "killed", transport=transport, install_signal_handlers=False)
    survivor.process(lambda ctx: {"recovered": True})
    run_in_background(survivor)
    try:
        wait_until(lambda: status(client, job_id) == "completed", timeout=30)
    finally:
        survivor.stop()
    job = client.jobs.get(job_id)
    assert job.result == {"recovered": True} and job.retry_count == 1 and job.last_error == "Lease expired"
