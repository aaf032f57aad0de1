"""Baselines: what raw PostgreSQL (via asyncpg) and a minimal Litestar endpoint can do on this machine.

Spooled's own numbers are reported as ratios to these, measured in the same run
(shared/design/PERFORMANCE.md). Every benchmark starts from a fresh ``jobs`` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from benchmarks import httpbench, schema
from benchmarks.core import (
    Benchmark,
    Context,
    LoopStats,
    Measurement,
    percentile,
    run_for,
)

PAYLOAD = '{"n": 1}'
WARMUP_FRACTION = 0.2  # of the measured duration, capped at 1 s

INSERT_CONNECTIONS = 16
BULK_CONNECTIONS = 8
BULK_SIZE = 100
CLAIM_CONNECTIONS = 8
# Rough upper bounds on claim+complete jobs/s per batch size, used to size the preload.
CLAIM_RATE_CEILING = {1: 6_000, 10: 40_000, 100: 120_000}
NOTIFY_CHANNEL = "spooled_bench"
NOTIFY_INTERVAL = 0.005  # one enqueue every 5 ms: an idle queue, not a saturated one
HTTP_CONNECTIONS = 64
HTTP_MAX_ERROR_FRACTION = 0.01


# --------------------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def connect(ctx: Context, **server_settings: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**ctx.db.connect_kwargs(), server_settings=server_settings or None)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def connections(
    ctx: Context, count: int, **server_settings: str
) -> AsyncIterator[list[asyncpg.Connection]]:
    """One dedicated connection per worker.

    Not an ``asyncpg.Pool``: its default release runs a reset query (``RESET ALL``, ``UNLISTEN *``, ...),
    one extra round trip per checkout that halved single-insert throughput here.
    """
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(connect(ctx, **server_settings)) for _ in range(count)]
        yield conns


async def fresh_table(ctx: Context) -> None:
    async with connect(ctx) as conn:
        await schema.reset(conn)


def warmup_seconds(ctx: Context) -> float:
    return min(1.0, ctx.duration * WARMUP_FRACTION)


async def timed(ctx: Context, workers: int, step: Callable[[int], Awaitable[int]]) -> LoopStats:
    """A short unmeasured warm-up (connections, prepared statements, caches), then the measured run."""
    await run_for(warmup_seconds(ctx), workers, step)
    return await run_for(ctx.duration, workers, step)


def throughput(name: str, stats: LoopStats, note: str) -> Measurement:
    if stats.drained:
        note += "; queue drained early"
    return Measurement(name, round(stats.rate), "jobs/s", note)


# --------------------------------------------------------------------------- raw SQL


async def insert_single(ctx: Context) -> list[Measurement]:
    """One job per statement and transaction, 16 concurrent connections."""
    await fresh_table(ctx)
    async with connections(ctx, INSERT_CONNECTIONS) as conns:

        async def step(worker: int) -> int:
            await conns[worker].fetchval(schema.INSERT_ONE, "bench-single", PAYLOAD, 0)
            return 1

        stats = await timed(ctx, INSERT_CONNECTIONS, step)
    return [throughput("baseline.sql.insert_single", stats, f"{INSERT_CONNECTIONS} conns, 1 row/txn")]


async def insert_bulk(ctx: Context) -> list[Measurement]:
    """``INSERT ... SELECT FROM unnest()``, 100 jobs per statement, 8 concurrent connections."""
    await fresh_table(ctx)
    payloads = [PAYLOAD] * BULK_SIZE
    priorities = [i % 5 for i in range(BULK_SIZE)]
    async with connections(ctx, BULK_CONNECTIONS) as conns:

        async def step(worker: int) -> int:
            await conns[worker].execute(schema.INSERT_BULK, "bench-bulk", payloads, priorities)
            return BULK_SIZE

        stats = await timed(ctx, BULK_CONNECTIONS, step)
    note = f"{BULK_CONNECTIONS} conns, {BULK_SIZE} rows/stmt"
    return [throughput(f"baseline.sql.insert_bulk{BULK_SIZE}", stats, note)]


async def preload(ctx: Context, queue: str, count: int) -> None:
    async with connect(ctx) as conn:
        await conn.execute(schema.PRELOAD, queue, count)
        await schema.analyze(conn)


def claim_complete(batch: int) -> Benchmark:
    """Claim up to ``batch`` jobs (SKIP LOCKED), then complete them in one fenced UPDATE."""

    async def run(ctx: Context) -> list[Measurement]:
        await fresh_table(ctx)
        queue = f"bench-claim-{batch}"
        budget = ctx.duration + warmup_seconds(ctx)
        await preload(ctx, queue, int(CLAIM_RATE_CEILING[batch] * budget))
        # asyncpg caches prepared statements; keep the claim off a generic plan (PERFORMANCE.md §3).
        async with connections(ctx, CLAIM_CONNECTIONS, plan_cache_mode="force_custom_plan") as conns:

            async def step(worker: int) -> int:
                conn = conns[worker]
                rows = await conn.fetch(schema.CLAIM, queue, batch)
                if not rows:
                    return 0
                ids = [r["id"] for r in rows]
                leases = [r["lease_id"] for r in rows]
                return schema.affected_rows(await conn.execute(schema.COMPLETE, ids, leases))

            stats = await timed(ctx, CLAIM_CONNECTIONS, step)
        note = f"{CLAIM_CONNECTIONS} conns, claim txn + complete txn"
        return [throughput(f"baseline.sql.claim_complete_n{batch}", stats, note)]

    return Benchmark(f"claim_complete_n{batch}", run)


async def notify_latency(ctx: Context) -> list[Measurement]:
    """Enqueue (INSERT + pg_notify, one statement) → claimed by a LISTENing worker, on an idle queue.

    Latency runs from sending the enqueue to the claim's rows arriving, both in this process.
    """
    await fresh_table(ctx)
    queue = "bench-latency"
    sent: dict[Any, float] = {}
    claimed: dict[Any, float] = {}
    wake = asyncio.Event()
    stop = asyncio.Event()
    producing_done = False
    all_claimed = asyncio.Event()

    async with (
        connect(ctx) as producer,
        connect(ctx) as listener,
        connect(ctx, plan_cache_mode="force_custom_plan") as claimer,
    ):
        await listener.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())

        async def claim_loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 0.5)  # fallback poll
                wake.clear()
                while rows := await claimer.fetch(schema.CLAIM, queue, 10):
                    now = time.perf_counter()
                    for row in rows:
                        claimed[row["id"]] = now
                if producing_done and len(claimed) >= len(sent):
                    all_claimed.set()

        async def enqueue() -> None:
            t0 = time.perf_counter()
            job_id = await producer.fetchval(schema.INSERT_ONE_NOTIFY, queue, PAYLOAD, 0, NOTIFY_CHANNEL)
            sent[job_id] = t0

        worker = asyncio.create_task(claim_loop())
        deadline = time.perf_counter() + ctx.duration
        while time.perf_counter() < deadline:
            await enqueue()
            await asyncio.sleep(NOTIFY_INTERVAL)
        producing_done = True
        wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_claimed.wait(), 2.0)
        stop.set()
        wake.set()
        await worker

    latencies = [(claimed[j] - t0) * 1e3 for j, t0 in sent.items() if j in claimed]
    note = f"enqueue sent -> claimed; {len(latencies)} jobs, 1 every {NOTIFY_INTERVAL * 1e3:.0f} ms"
    return [
        Measurement("baseline.sql.notify_latency_p50", round(percentile(latencies, 50), 3), "ms", note),
        Measurement("baseline.sql.notify_latency_p99", round(percentile(latencies, 99), 3), "ms", note),
    ]


# --------------------------------------------------------------------------- HTTP


def http_measurement(name: str, result: httpbench.LoadResult) -> Measurement:
    if result.errors > HTTP_MAX_ERROR_FRACTION * max(result.requests, 1):
        raise RuntimeError(f"{name}: {result.errors} errors in {result.requests} requests")
    note = f"{result.tool} -c{HTTP_CONNECTIONS}, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
    return Measurement(name, round(result.requests_per_s), "req/s", note)


async def http_minimal(ctx: Context) -> list[Measurement]:
    """Minimal Litestar app on granian (1 worker): POST /jobs (one INSERT) and GET /health (no DB)."""
    await fresh_table(ctx)
    env = {"BENCH_DATABASE_URL": ctx.db.dsn}
    tool = ctx.loadgen
    async with httpbench.granian_server("benchmarks.minimal_app:app", env) as server:
        post_url = f"{server.base_url}/jobs"
        health_url = f"{server.base_url}/health"
        await httpbench.load(post_url, duration=warmup_seconds(ctx), post=True, tool=tool)
        insert = await httpbench.load(
            post_url, duration=ctx.duration, connections=HTTP_CONNECTIONS, post=True, tool=tool
        )
        health = await httpbench.load(
            health_url, duration=ctx.duration, connections=HTTP_CONNECTIONS, tool=tool
        )
    async with connect(ctx) as conn:
        rows = await conn.fetchval(f"SELECT count(*) FROM {schema.TABLE}")
    if rows < insert.requests - insert.errors:
        raise RuntimeError(f"POST /jobs answered {insert.requests} times but stored only {rows} rows")
    return [
        http_measurement("baseline.http.insert", insert),
        http_measurement("baseline.http.health", health),
    ]


BASELINES: list[Benchmark] = [
    Benchmark("insert_single", insert_single),
    Benchmark("insert_bulk", insert_bulk),
    claim_complete(1),
    claim_complete(10),
    claim_complete(100),
    Benchmark("notify_latency", notify_latency),
    Benchmark("http_minimal", http_minimal),
]
