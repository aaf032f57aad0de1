"""The Python SDK's worker draining a queue with a no-op handler, on both transports.

- ``spooled.sdk.grpc_worker``: N jobs are bulk-enqueued (REST bulk, 100 per request) into an idle queue;
  then ONE worker process (``python -m benchmarks.sdk_bench worker``) runs ``AsyncSpooledWorker`` with
  ``transport="grpc"`` (one ProcessJobs stream, batched dequeues) and a no-op handler until every job is
  completed. Time runs from ``worker.start()`` to the last ``job:completed``. Compared with the raw gRPC
  worker of ``grpc_bench`` (``spooled.grpc.process_jobs``, same job count, same machine, same run):
  the ratio ``sdk_grpc_worker`` is the share of the raw figure the SDK keeps (target >= 0.8).
- ``spooled.sdk.rest_worker``: the same with ``transport="rest"`` (long-poll claims of up to 100 jobs,
  one complete request per job).
- ``spooled.sdk.grpc_worker_sync``: the blocking ``SpooledWorker`` (thread pool) on gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import asyncpg

from benchmarks.core import Benchmark, Context, Measurement
from benchmarks.grpc_bench import (
    DRAIN_JOBS,
    DRAIN_JOBS_QUICK,
    REPO_ROOT,
    bulk_enqueue,
    spooled_server,
)
from benchmarks.pg import connect_kwargs

# In-flight jobs per worker: enough to keep two 100-job batches moving, like the raw worker's prefetch.
CONCURRENCY = 200
REST_JOBS = 10_000
REST_JOBS_QUICK = 4_000


async def async_drain(transport: str, base_url: str, grpc_target: str, key: str, queue: str,
                      expect: int) -> dict[str, Any]:
    from spooled import AsyncSpooledClient, AsyncSpooledWorker

    async with AsyncSpooledClient(key, base_url=base_url, grpc_address=grpc_target) as client:
        worker = AsyncSpooledWorker(client, queue, concurrency=CONCURRENCY, transport=transport,  # type: ignore[arg-type]
                                    batch_size=100, claim_wait_secs=1.0, install_signal_handlers=False)
        completed = 0
        failed = 0
        finished = 0.0

        @worker.process
        async def noop(ctx: Any) -> None:
            return None

        def on_completed(job: Any, result: Any) -> None:
            nonlocal completed, finished
            completed += 1
            if completed == expect:
                finished = time.perf_counter()
                worker.stop()

        def on_failed(*args: Any) -> None:
            nonlocal failed
            failed += 1

        worker.on("job:completed", on_completed)
        worker.on("job:failed", on_failed)
        worker.on("job:lease_lost", on_failed)
        started = time.perf_counter()
        await worker.start()
    return {"completed": completed, "errors": failed, "elapsed": (finished or time.perf_counter()) - started}


def sync_drain(transport: str, base_url: str, grpc_target: str, key: str, queue: str, expect: int) -> dict[str, Any]:
    import threading

    from spooled import SpooledClient, SpooledWorker

    with SpooledClient(key, base_url=base_url, grpc_address=grpc_target) as client:
        worker = SpooledWorker(client, queue, concurrency=CONCURRENCY, transport=transport,  # type: ignore[arg-type]
                               batch_size=100, claim_wait_secs=1.0, install_signal_handlers=False)
        lock = threading.Lock()
        state = {"completed": 0, "errors": 0, "finished": 0.0}
        worker.process(lambda ctx: None)

        def on_completed(job: Any, result: Any) -> None:
            with lock:
                state["completed"] += 1
                if state["completed"] == expect:
                    state["finished"] = time.perf_counter()
                    worker.stop(wait=False)

        def on_failed(*args: Any) -> None:
            with lock:
                state["errors"] += 1

        worker.on("job:completed", on_completed)
        worker.on("job:failed", on_failed)
        worker.on("job:lease_lost", on_failed)
        started = time.perf_counter()
        worker.start()
    return {"completed": state["completed"], "errors": state["errors"],
            "elapsed": (state["finished"] or time.perf_counter()) - started}


async def _measure(ctx: Context, name: str, transport: str, mode: str, count: int) -> Measurement:
    queue = f"bench-sdk-{transport}-{mode}"
    async with spooled_server(ctx) as srv:
        await bulk_enqueue(srv, queue, count)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.sdk_bench", "worker", "--transport", transport, "--mode", mode,
            "--base-url", srv.base_url, "--target", srv.grpc_target, "--queue", queue, "--count", str(count),
            cwd=REPO_ROOT, env={**os.environ, "SPOOLED_BENCH_API_KEY": srv.api_key}, stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the SDK worker failed with exit code {proc.returncode}")
        result = json.loads(out.decode().strip().splitlines()[-1])
        conn = await asyncpg.connect(**connect_kwargs(srv.dsn))
        try:
            done = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE queue_name = $1 AND status = 'completed'", queue
            )
        finally:
            await conn.close()
    if result["completed"] != count or done != count or result["errors"]:
        raise RuntimeError(f"SDK drain incomplete: {result}, {done} completed in the database")
    note = (f"1 worker process, {mode} SpooledWorker, transport={transport}, concurrency {CONCURRENCY}, "
            f"no-op handler, {count} jobs, {result['elapsed']:.2f} s")
    return Measurement(name, round(count / result["elapsed"]), "jobs/s", note)


async def grpc_worker(ctx: Context) -> list[Measurement]:
    count = DRAIN_JOBS_QUICK if ctx.quick else DRAIN_JOBS
    return [await _measure(ctx, "spooled.sdk.grpc_worker", "grpc", "async", count)]


async def grpc_worker_sync(ctx: Context) -> list[Measurement]:
    count = DRAIN_JOBS_QUICK if ctx.quick else DRAIN_JOBS
    return [await _measure(ctx, "spooled.sdk.grpc_worker_sync", "grpc", "sync", count)]


async def rest_worker(ctx: Context) -> list[Measurement]:
    count = REST_JOBS_QUICK if ctx.quick else REST_JOBS
    return [await _measure(ctx, "spooled.sdk.rest_worker", "rest", "async", count)]


SDK_WORKER: list[Benchmark] = [
    Benchmark("sdk_grpc_worker", grpc_worker),
    Benchmark("sdk_grpc_worker_sync", grpc_worker_sync),
    Benchmark("sdk_rest_worker", rest_worker),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sdk_bench")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="drain a queue with the SDK worker and print a JSON result")
    w.add_argument("--transport", choices=["rest", "grpc"], required=True)
    w.add_argument("--mode", choices=["async", "sync"], default="async")
    w.add_argument("--base-url", required=True)
    w.add_argument("--target", required=True)
    w.add_argument("--queue", required=True)
    w.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    key = os.environ["SPOOLED_BENCH_API_KEY"]
    if args.mode == "sync":
        result = sync_drain(args.transport, args.base_url, args.target, key, args.queue, args.count)
    else:
        coro = async_drain(args.transport, args.base_url, args.target, key, args.queue, args.count)
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
