"""Spooled's gRPC worker path: one worker process draining a queue over ProcessJobs, and enqueue → worker
start latency with a worker waiting on StreamJobs.

- ``spooled.grpc.process_jobs``: 50,000 jobs are bulk-enqueued (REST bulk, 100 per request) into an idle
  queue; then ONE Python worker process (``python -m benchmarks.grpc_bench worker``) opens ONE ProcessJobs
  stream and drains it with a no-op handler: dequeue with ``batch_size=100, batch_response=true`` (two
  dequeues kept in flight); each batch's completions go back, fenced by their leases, in one
  ``settle_batch`` message (the stream's batched-settlement extension). The time runs from the worker's first
  request to the reply of its last completion. Server, PostgreSQL and worker share the machine.
- ``baseline.sql.claim_complete_n100_1conn``: the same 50,000 jobs drained by raw asyncpg over one
  connection, claim 100 (SKIP LOCKED) + one fenced UPDATE completing them, measured in the same run on the
  baseline table (benchmarks/schema.py).
- ``spooled.grpc.latency_p50`` / ``_p99``: a worker waits on StreamJobs; a producer enqueues one job at a time
  over gRPC (``Enqueue``) into the idle queue; latency runs from sending the Enqueue to the job arriving on
  the stream. Both ends in the benchmark process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from benchmarks import httpbench, schema
from benchmarks.core import Benchmark, Context, Measurement, percentile
from benchmarks.pg import connect_kwargs

REPO_ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "spooled_bench_grpc"
DRAIN_JOBS = 50_000
DRAIN_JOBS_QUICK = 20_000
BATCH = 100
PREFETCH = 2
LATENCY_SAMPLES = 300
LATENCY_SAMPLES_QUICK = 100
LATENCY_GAP_SECS = 0.01  # the queue is idle between samples


@dataclass(frozen=True)
class GrpcServer:
    base_url: str
    grpc_target: str
    api_key: str
    dsn: str
    pid: int


def _with_database(dsn: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def spooled_server(ctx: Context) -> AsyncIterator[GrpcServer]:
    """`spooled-server serve` on loopback against a fresh database, with one organization."""
    conn = await asyncpg.connect(**connect_kwargs(ctx.db.dsn))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
    dsn = _with_database(ctx.db.dsn, DB_NAME)
    port, grpc_port = httpbench.free_port(), httpbench.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "SPOOLED_ENV": "development",
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
        "HOST": httpbench.LOOPBACK,
        "LOG_LEVEL": "warning",
    }
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spooled_server.cli", "serve",
            cwd=REPO_ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        base_url = f"http://{httpbench.LOOPBACK}:{port}"
        try:
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient(timeout=2.0) as client:
                while True:
                    if proc.returncode is not None:
                        raise RuntimeError("spooled-server exited early")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(base_url + "/health")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError("spooled-server did not start")
                    await asyncio.sleep(0.2)
                slug = "bench-" + uuid.uuid4().hex[:8]
                r = await client.post(base_url + "/api/v1/organizations",
                                      json={"name": "Benchmark", "slug": slug})
                r.raise_for_status()
                key = r.json()["api_key"]["key"]
            yield GrpcServer(base_url, f"{httpbench.LOOPBACK}:{grpc_port}", key, dsn, proc.pid)
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()


async def bulk_enqueue(srv: GrpcServer, queue: str, count: int) -> None:
    headers = {"Authorization": f"Bearer {srv.api_key}"}
    async with httpx.AsyncClient(base_url=srv.base_url, headers=headers, timeout=60) as client:
        sem = asyncio.Semaphore(8)

        async def one(start: int) -> None:
            async with sem:
                r = await client.post("/api/v1/jobs/bulk", json={
                    "queue_name": queue, "jobs": [{"payload": {"n": start + i}} for i in range(BATCH)]})
                r.raise_for_status()
                if r.json()["success_count"] != BATCH:
                    raise RuntimeError(f"bulk enqueue stored {r.json()['success_count']} of {BATCH}")

        await asyncio.gather(*(one(s) for s in range(0, count, BATCH)))
    conn = await asyncpg.connect(**connect_kwargs(srv.dsn))
    try:
        await conn.execute("ANALYZE jobs")
    finally:
        await conn.close()


# --------------------------------------------------------------------------- the worker process


async def drain_worker(target: str, key: str, queue: str, expect: int) -> dict[str, Any]:
    """ONE ProcessJobs stream, no-op handler: returns how many jobs it completed and how long it took."""
    import grpc
    from spooled_server.grpc._generated import spooled_pb2 as pb
    from spooled_server.grpc._generated import spooled_pb2_grpc as pb_grpc

    worker = "bench-grpc-worker"
    dequeue = pb.ProcessRequest(dequeue=pb.DequeueRequest(
        queue_name=queue, worker_id=worker, batch_size=BATCH, batch_response=True))
    async with grpc.aio.insecure_channel(target) as channel:
        call = pb_grpc.QueueServiceStub(channel).ProcessJobs(metadata=(("x-api-key", key),))
        completed = errors = 0
        dequeues_in_flight = 0
        started = time.perf_counter()
        for _ in range(PREFETCH):
            await call.write(dequeue)
            dequeues_in_flight += 1
        outstanding = 0  # completes sent, replies not yet read
        drained = False
        while True:
            reply = await call.read()
            if reply is grpc.aio.EOF:
                raise RuntimeError("the server ended the stream")
            which = reply.WhichOneof("response")
            if which == "job_batch":
                dequeues_in_flight -= 1
                jobs = reply.job_batch.jobs
                if not jobs:
                    drained = True
                elif not drained:
                    await call.write(dequeue)
                    dequeues_in_flight += 1
                if jobs:
                    # the no-op handler; the batch's completions go back in one settle_batch message
                    await call.write(pb.ProcessRequest(settle_batch=pb.SettleBatchRequest(settlements=[
                        pb.Settlement(complete=pb.CompleteRequest(
                            job_id=job.id, worker_id=worker, lease_id=job.lease_id))
                        for job in jobs])))
                    outstanding += len(jobs)
            elif which == "settle_batch":
                for result in reply.settle_batch.results:
                    if result.WhichOneof("result") == "complete":
                        completed += 1
                    else:
                        errors += 1
                    outstanding -= 1
            else:
                raise RuntimeError(f"unexpected reply: {reply}")
            if drained and outstanding == 0 and dequeues_in_flight == 0:
                break
        elapsed = time.perf_counter() - started
        await call.done_writing()
    return {"completed": completed, "errors": errors, "elapsed": elapsed, "expected": expect}


async def process_jobs(ctx: Context) -> list[Measurement]:
    count = DRAIN_JOBS_QUICK if ctx.quick else DRAIN_JOBS
    queue = "bench-grpc-drain"
    async with spooled_server(ctx) as srv:
        await bulk_enqueue(srv, queue, count)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.grpc_bench", "worker", "--target", srv.grpc_target,
            "--queue", queue, "--count", str(count),
            cwd=REPO_ROOT, env={**os.environ, "SPOOLED_BENCH_API_KEY": srv.api_key},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the gRPC worker failed with exit code {proc.returncode}")
        result = json.loads(out.decode().strip().splitlines()[-1])
        conn = await asyncpg.connect(**connect_kwargs(srv.dsn))
        try:
            done = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE queue_name = $1 AND status = 'completed'", queue)
        finally:
            await conn.close()
    if result["completed"] != count or done != count or result["errors"]:
        raise RuntimeError(f"drain incomplete: {result}, {done} completed in the database")
    rate = count / result["elapsed"]
    note = (f"1 worker process, 1 ProcessJobs stream, {count} jobs, dequeue batch {BATCH} "
            f"x{PREFETCH} in flight, 1 settle_batch per batch, {result['elapsed']:.2f} s")
    return [Measurement("spooled.grpc.process_jobs", round(rate), "jobs/s", note)]


async def raw_claim_complete(ctx: Context) -> list[Measurement]:
    """The physical limit for one worker connection: claim 100 + complete 100, raw asyncpg, one connection."""
    count = DRAIN_JOBS_QUICK if ctx.quick else DRAIN_JOBS
    queue = "bench-raw-drain"
    conn = await asyncpg.connect(**ctx.db.connect_kwargs(),
                                 server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        await schema.reset(conn)
        await conn.execute(schema.PRELOAD, queue, count)
        await schema.analyze(conn)
        done = 0
        started = time.perf_counter()
        while rows := await conn.fetch(schema.CLAIM, queue, BATCH):
            done += schema.affected_rows(await conn.execute(
                schema.COMPLETE, [r["id"] for r in rows], [r["lease_id"] for r in rows]))
        elapsed = time.perf_counter() - started
        await schema.reset(conn)
    finally:
        await conn.close()
    if done != count:
        raise RuntimeError(f"raw drain completed {done} of {count}")
    note = f"1 connection, {count} jobs, claim {BATCH} + one fenced UPDATE per batch, {elapsed:.2f} s"
    return [Measurement("baseline.sql.claim_complete_n100_1conn", round(count / elapsed), "jobs/s", note)]


async def latency(ctx: Context) -> list[Measurement]:
    """Enqueue (unary gRPC) → the job arrives on a waiting StreamJobs stream, on an idle queue."""
    import grpc
    from spooled_server.grpc._generated import spooled_pb2 as pb
    from spooled_server.grpc._generated import spooled_pb2_grpc as pb_grpc

    samples = LATENCY_SAMPLES_QUICK if ctx.quick else LATENCY_SAMPLES
    queue = "bench-grpc-latency"
    async with spooled_server(ctx) as srv:
        metadata = (("x-api-key", srv.api_key),)
        async with grpc.aio.insecure_channel(srv.grpc_target) as worker_channel, \
                grpc.aio.insecure_channel(srv.grpc_target) as producer_channel:
            stream = pb_grpc.QueueServiceStub(worker_channel).StreamJobs(
                pb.StreamJobsRequest(queue_name=queue, worker_id="bench-latency"), metadata=metadata)
            producer = pb_grpc.QueueServiceStub(producer_channel)
            settle = pb_grpc.QueueServiceStub(producer_channel)
            latencies: list[float] = []
            for i in range(samples + 10):
                await asyncio.sleep(LATENCY_GAP_SECS)
                sent = time.perf_counter()
                reply = await producer.Enqueue(pb.EnqueueRequest(queue_name=queue, payload={"i": i}),
                                               metadata=metadata)
                job = await stream.read()
                got = time.perf_counter()
                if job is grpc.aio.EOF or job.id != reply.job_id:
                    raise RuntimeError("the waiting stream did not get the new job")
                if i >= 10:  # warm-up: connections, prepared statements
                    latencies.append((got - sent) * 1000)
                await settle.Complete(pb.CompleteRequest(job_id=job.id, worker_id="bench-latency",
                                                         lease_id=job.lease_id), metadata=metadata)
            stream.cancel()
    note = f"{samples} samples, 1 StreamJobs worker waiting, Enqueue sent -> job received on the stream"
    return [
        Measurement("spooled.grpc.latency_p50", round(percentile(latencies, 50), 3), "ms", note),
        Measurement("spooled.grpc.latency_p99", round(percentile(latencies, 99), 3), "ms", note),
    ]


SPOOLED_GRPC: list[Benchmark] = [
    Benchmark("grpc_raw_claim_complete_n100_1conn", raw_claim_complete),
    Benchmark("grpc_process_jobs", process_jobs),
    Benchmark("grpc_latency", latency),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grpc_bench")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="drain a queue over one ProcessJobs stream and print a JSON result")
    w.add_argument("--target", required=True)
    w.add_argument("--queue", required=True)
    w.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    key = os.environ["SPOOLED_BENCH_API_KEY"]
    coro = drain_worker(args.target, key, args.queue, args.count)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
