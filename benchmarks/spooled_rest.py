"""Spooled's REST API under load: single enqueue, bulk enqueue, claim+complete, enqueue→claim latency.

A real `spooled-server serve` runs on loopback against a fresh database in the benchmark's PostgreSQL, with
an organization created through the public API. Single and bulk enqueue are driven by wrk (as the
minimal-endpoint baseline is); claim+complete and latency by an httpx client in this process.
"""

from __future__ import annotations

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

import asyncpg
import httpx

from benchmarks import httpbench
from benchmarks.core import Benchmark, Context, Measurement, percentile
from benchmarks.pg import connect_kwargs

REPO_ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "spooled_bench_server"


@dataclass(frozen=True)
class SpooledServer:
    base_url: str
    api_key: str
    dsn: str


def _with_database(dsn: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _fresh_database(ctx: Context) -> str:
    conn = await asyncpg.connect(**connect_kwargs(ctx.db.dsn))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
    return _with_database(ctx.db.dsn, DB_NAME)


@contextlib.asynccontextmanager
async def spooled_server(ctx: Context) -> AsyncIterator[SpooledServer]:
    dsn = await _fresh_database(ctx)
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
                r = await client.post(base_url + "/api/v1/organizations", json={"name": "Benchmark", "slug": slug})
                r.raise_for_status()
                key = r.json()["api_key"]["key"]
            yield SpooledServer(base_url, key, dsn)
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


def _wrk_script(api_key: str, body: object) -> Path:
    fd, name = tempfile.mkstemp(prefix="spooled-wrk-", suffix=".lua")
    text = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {api_key}"\n'
        f"wrk.body = {json.dumps(json.dumps(body, separators=(',', ':')))}\n"
    )
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return Path(name)


async def _count_jobs(srv: SpooledServer) -> int:
    conn = await asyncpg.connect(**connect_kwargs(srv.dsn))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jobs"))
    finally:
        await conn.close()


async def rest_enqueue(ctx: Context) -> list[Measurement]:
    """POST /api/v1/jobs, one job per request, wrk -c64 (same load as the minimal-endpoint baseline)."""
    if ctx.loadgen != "wrk":
        raise RuntimeError("the REST benchmarks need wrk (apt-get install wrk)")
    async with spooled_server(ctx) as srv:
        single = _wrk_script(srv.api_key, {"queue_name": "bench-rest", "payload": {"n": 1}, "priority": 0})
        bulk_body = {"queue_name": "bench-bulk", "jobs": [{"payload": {"n": i}} for i in range(100)]}
        bulk = _wrk_script(srv.api_key, bulk_body)
        try:
            url = srv.base_url + "/api/v1/jobs"
            await httpbench.wrk(url, duration=max(1.0, ctx.duration / 3), connections=64, threads=2, script=single)
            result = await httpbench.wrk(url, duration=ctx.duration, connections=64, threads=2, script=single)
            before = await _count_jobs(srv)
            bulk_result = await httpbench.wrk(srv.base_url + "/api/v1/jobs/bulk", duration=ctx.duration,
                                              connections=8, threads=2, script=bulk)
            after = await _count_jobs(srv)
        finally:
            single.unlink(missing_ok=True)
            bulk.unlink(missing_ok=True)
    if result.errors > 0.01 * max(1, result.requests):
        raise RuntimeError(f"REST enqueue: {result.errors} errors in {result.requests} requests")
    stored_bulk = after - before
    if stored_bulk < (bulk_result.requests - bulk_result.errors) * 100:
        raise RuntimeError("bulk enqueue answered more jobs than it stored")
    bulk_rate = stored_bulk / max(ctx.duration, 1.0)
    return [
        Measurement("spooled.rest.enqueue", round(result.requests_per_s), "req/s",
                    f"wrk -c64, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"),
        Measurement("spooled.rest.bulk_enqueue", round(bulk_rate), "jobs/s",
                    f"wrk -c8, 100 jobs per request, p50 {bulk_result.p50_ms:.1f} ms per request"),
    ]


async def rest_claim_complete(ctx: Context) -> list[Measurement]:
    """Workers over REST: claim a batch of 10, complete each job (one request per completion)."""
    preload = 20_000 if not ctx.quick else 6_000
    async with spooled_server(ctx) as srv:
        headers = {"Authorization": f"Bearer {srv.api_key}"}
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with httpx.AsyncClient(base_url=srv.base_url, headers=headers, limits=limits, timeout=30) as client:
            for start in range(0, preload, 100):
                r = await client.post("/api/v1/jobs/bulk", json={
                    "queue_name": "bench-claim", "jobs": [{"payload": {"n": start + i}} for i in range(100)]})
                r.raise_for_status()
            done = 0
            deadline = time.perf_counter() + ctx.duration
            started = time.perf_counter()

            async def worker(index: int) -> None:
                nonlocal done
                wid = f"bench-{index}"
                while time.perf_counter() < deadline:
                    r = await client.post("/api/v1/jobs/claim",
                                          json={"queue_name": "bench-claim", "worker_id": wid, "limit": 10})
                    jobs = r.json()["jobs"]
                    if not jobs:
                        return
                    replies = await asyncio.gather(*(
                        client.post(f"/api/v1/jobs/{j['id']}/complete",
                                    json={"worker_id": wid, "lease_id": j["lease_id"]}) for j in jobs))
                    done += sum(1 for x in replies if x.status_code == 200)

            await asyncio.gather(*(worker(i) for i in range(4)))
            elapsed = time.perf_counter() - started
    return [Measurement("spooled.rest.claim_complete", round(done / elapsed), "jobs/s",
                        "4 httpx workers, claim limit 10, one complete request per job")]


async def rest_latency(ctx: Context) -> list[Measurement]:
    """Enqueue → claimed, with a worker already waiting in a long-poll claim (wait_secs)."""
    samples = 200 if not ctx.quick else 80
    async with spooled_server(ctx) as srv:
        headers = {"Authorization": f"Bearer {srv.api_key}"}
        async with httpx.AsyncClient(base_url=srv.base_url, headers=headers, timeout=30) as claimer, \
                httpx.AsyncClient(base_url=srv.base_url, headers=headers, timeout=30) as producer:
            latencies: list[float] = []
            for i in range(samples):
                claim = asyncio.create_task(claimer.post(
                    "/api/v1/jobs/claim", json={"queue_name": "bench-latency", "worker_id": "w", "wait_secs": 10}))
                await asyncio.sleep(0.02)  # the claim is parked on the server
                sent = time.perf_counter()
                r = await producer.post("/api/v1/jobs", json={"queue_name": "bench-latency", "payload": {"i": i}})
                r.raise_for_status()
                claimed = await claim
                got = time.perf_counter()
                jobs = claimed.json()["jobs"]
                if not jobs or jobs[0]["id"] != r.json()["id"]:
                    raise RuntimeError("the waiting claimer did not get the new job")
                latencies.append((got - sent) * 1000)
    note = f"{samples} samples, one long-polling claimer, enqueue sent → claim response received"
    return [
        Measurement("spooled.latency_p50", round(percentile(latencies, 50), 3), "ms", note),
        Measurement("spooled.latency_p99", round(percentile(latencies, 99), 3), "ms", note),
    ]


SPOOLED_REST: list[Benchmark] = [
    Benchmark("spooled_rest_enqueue", rest_enqueue),
    Benchmark("spooled_rest_claim_complete", rest_claim_complete),
    Benchmark("spooled_rest_latency", rest_latency),
]
