"""Helpers for the gRPC tests: real channels to the real server on loopback, with the generated stubs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import grpc

from spooled_server.grpc._generated import spooled_pb2 as pb
from spooled_server.grpc._generated import spooled_pb2_grpc as pb_grpc

from ..support import ServerProcess

__all__ = ["pb", "pb_grpc"]

# A client that cannot absorb much: without BDP probing the HTTP/2 window stays at 64 KiB, so a reply bigger
# than that is not accepted by the transport until the client reads.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


def new_queue(prefix: str = "g") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def md(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


@contextlib.asynccontextmanager
async def channel(server: ServerProcess, options: list[tuple[str, Any]] | None = None) -> AsyncIterator[
        grpc.aio.Channel]:
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options)
    try:
        yield ch
    finally:
        await ch.close()


class Client:
    """Both services of one channel, calling with one API key."""

    def __init__(self, ch: grpc.aio.Channel, key: str) -> None:
        self.channel = ch
        self.key = key
        self.queue = pb_grpc.QueueServiceStub(ch)
        self.workers = pb_grpc.WorkerServiceStub(ch)
        self.metadata = md(key)

    async def enqueue(self, queue: str, payload: dict[str, Any] | None = None, **fields: Any) -> str:
        reply = await self.queue.Enqueue(
            pb.EnqueueRequest(queue_name=queue, payload=payload if payload is not None else {"n": 1}, **fields),
            metadata=self.metadata)
        return str(reply.job_id)

    async def dequeue(self, queue: str, worker: str = "w1", batch_size: int = 1, **fields: Any) -> list[pb.Job]:
        reply = await self.queue.Dequeue(
            pb.DequeueRequest(queue_name=queue, worker_id=worker, batch_size=batch_size, **fields),
            metadata=self.metadata)
        return list(reply.jobs)

    async def complete(self, job: pb.Job, worker: str = "w1", lease_id: str | None = None,
                       **fields: Any) -> pb.CompleteResponse:
        lease = job.lease_id if lease_id is None else lease_id
        return await self.queue.Complete(
            pb.CompleteRequest(job_id=job.id, worker_id=worker, lease_id=lease, **fields), metadata=self.metadata)

    async def get(self, job_id: str) -> pb.Job:
        return (await self.queue.GetJob(pb.GetJobRequest(job_id=job_id), metadata=self.metadata)).job

    def process(self, **kwargs: Any) -> Any:
        return self.queue.ProcessJobs(metadata=self.metadata, **kwargs)


async def rpc_error(awaitable: Awaitable[Any], code: grpc.StatusCode, message: str | None = None) -> grpc.aio.AioRpcError:
    """Await a call that must fail with `code` (and exactly `message`, if given)."""
    try:
        await awaitable
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == code, f"expected {code}, got {exc.code()}: {exc.details()}"
        if message is not None:
            assert exc.details() == message, exc.details()
        return exc
    raise AssertionError(f"expected {code}, the call succeeded")


def dequeue_request(queue: str, worker: str = "w1", batch_size: int = 0, batch: bool = False,
                    **fields: Any) -> pb.ProcessRequest:
    return pb.ProcessRequest(dequeue=pb.DequeueRequest(queue_name=queue, worker_id=worker, batch_size=batch_size,
                                                       batch_response=batch, **fields))


def complete_request(job: pb.Job, worker: str = "w1", lease: str | None = None, **fields: Any) -> pb.ProcessRequest:
    return pb.ProcessRequest(complete=pb.CompleteRequest(
        job_id=job.id, worker_id=worker, lease_id=job.lease_id if lease is None else lease, **fields))


async def statuses(conn: asyncpg.Connection, ids: list[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT id::text AS id, status FROM jobs WHERE id = ANY($1::uuid[])", ids)
    return {r["id"]: r["status"] for r in rows}


async def count_status(conn: asyncpg.Connection, queue: str, status: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM jobs WHERE queue_name = $1 AND status = $2", queue, status))


async def eventually(predicate: Any, within: float = 10.0, interval: float = 0.05) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def final_status(call: Any) -> tuple[grpc.StatusCode, str]:
    """Read a stream to its end; its status code and details (messages on the way are dropped)."""
    try:
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return await call.code(), await call.details()
