"""QueueService and WorkerService (grpc.md sections 1-3) over the same core functions as REST."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from ..core import jobs, workers
from ..core import validation as v
from ..core.auth import Principal
from . import convert
from . import runtime as r
from ._generated import spooled_pb2 as pb
from ._generated import spooled_pb2_grpc as pb_grpc
from .runtime import Runtime
from .status import Kind, to_status
from .streams import process_jobs, stream_jobs

T = TypeVar("T")

# RegisterWorkerResponse carries the gRPC lease and heartbeat cadence, whatever REST's settings are.
GRPC_HEARTBEAT_INTERVAL_SECS = 10


async def call(rt: Runtime, context: grpc.aio.ServicerContext, fn: Callable[[Principal], Awaitable[T]],
               kind: str = Kind.DEFAULT) -> T:
    """Authenticate, rate-limit and run one unary call; a failure ends it with the contract's status."""
    try:
        principal, _ = await rt.authenticate(context.invocation_metadata())
        await rt.limit(principal)
        return await fn(principal)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        status = to_status(exc, kind=kind, hard_payload_cap=rt.hard_payload_cap)
    await context.abort(status.code, status.message, trailing_metadata=status.trailers)
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


class QueueService(pb_grpc.QueueServiceServicer):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.core = rt.core

    async def Enqueue(
        self, request: pb.EnqueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnqueueResponse:
        async def run(principal: Principal) -> pb.EnqueueResponse:
            job = jobs.NewJob(
                queue_name=request.queue_name,
                payload=convert.json_from_struct(request, "payload") or jobs.NULL_JSON,
                priority=r.clamp(request.priority, -100, 100),
                max_retries=None if request.max_retries == 0 else r.clamp(request.max_retries, 1, 100),
                timeout_seconds=(None if request.timeout_seconds == 0
                                 else r.clamp(request.timeout_seconds, 1, 86400)),
                scheduled_at=convert.datetime_from(request, "scheduled_at"),
                tags=convert.json_object(request.tags),
                idempotency_key=request.idempotency_key or None,
            )
            job_id, created = await jobs.create_job(self.core, principal, job, queue_max_len=r.MAX_QUEUE_NAME)
            return pb.EnqueueResponse(job_id=str(job_id), created=created)

        return await call(self.rt, context, run)

    async def Dequeue(
        self, request: pb.DequeueRequest, context: grpc.aio.ServicerContext
    ) -> pb.DequeueResponse:
        async def run(principal: Principal) -> pb.DequeueResponse:
            queue = r.queue_name(request.queue_name)
            worker = r.required(request.worker_id, "worker_id")
            lease = r.lease_secs(request.lease_duration_secs)
            limit = 1 if request.batch_size == 0 else r.clamp(request.batch_size, 1, 100)
            principal.require_queue(queue)
            rows = await self.rt.claim(principal, queue, worker, limit, lease)
            if rows:
                # A unary reply cannot report a failed send; if the call ended without delivering it
                # (cancelled), the jobs go back at once rather than after their lease.
                ids = [row["id"] for row in rows]

                def on_done(ctx: Any) -> None:
                    if ctx.cancelled():
                        self.rt.release_later(principal.org_id, worker, ids)

                context.add_done_callback(on_done)
            to_job = convert.ClaimedJobs(principal.org_id, worker, lease).job
            return pb.DequeueResponse(jobs=[to_job(row) for row in rows])

        return await call(self.rt, context, run)

    async def Complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteResponse:
        async def run(principal: Principal) -> pb.CompleteResponse:
            job_id = r.job_id(request.job_id)
            worker = r.required(request.worker_id, "worker_id")
            lease = r.lease_id(request.lease_id)
            result = convert.json_from_struct(request, "result")
            await self.rt.guarded(jobs.complete_job(self.core, principal, job_id, worker, lease, result))
            return pb.CompleteResponse(success=True)

        return await call(self.rt, context, run, Kind.SETTLE)

    async def Fail(self, request: pb.FailRequest, context: grpc.aio.ServicerContext) -> pb.FailResponse:
        async def run(principal: Principal) -> pb.FailResponse:
            job_id = r.job_id(request.job_id)
            worker = r.required(request.worker_id, "worker_id")
            lease = r.lease_id(request.lease_id)
            # Absent and false both dead-letter (older copies of the proto cannot tell them apart).
            retry = request.HasField("retry") and request.retry
            outcome = await self.rt.guarded(jobs.fail_job(
                self.core, principal, job_id, worker, lease, r.truncate_error(request.error), retry=retry))
            return pb.FailResponse(success=True, will_retry=outcome.will_retry,
                                   next_retry_delay_secs=outcome.delay_secs)

        return await call(self.rt, context, run, Kind.SETTLE)

    async def RenewLease(
        self, request: pb.RenewLeaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.RenewLeaseResponse:
        async def run(principal: Principal) -> pb.RenewLeaseResponse:
            job_id = r.job_id(request.job_id)
            worker = r.required(request.worker_id, "worker_id")
            lease = r.lease_id(request.lease_id)
            expires = await jobs.heartbeat_job(self.core, principal, job_id, worker, lease,
                                               r.lease_secs(request.extension_secs))
            return pb.RenewLeaseResponse(success=True, new_expires_at=convert.timestamp(expires))

        return await call(self.rt, context, run, Kind.SETTLE)

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.GetJobResponse:
        async def run(principal: Principal) -> pb.GetJobResponse:
            wire = await jobs.get_job(self.core, principal, r.job_id(request.job_id))
            return pb.GetJobResponse(job=convert.job_from_wire(wire))

        return await call(self.rt, context, run, Kind.SETTLE)

    async def GetQueueStats(
        self, request: pb.GetQueueStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQueueStatsResponse:
        async def run(principal: Principal) -> pb.GetQueueStatsResponse:
            queue = r.queue_name(request.queue_name)
            stats = await jobs.queue_stats(self.core, principal, queue)
            return pb.GetQueueStatsResponse(queue_name=queue, **stats)

        return await call(self.rt, context, run)

    async def StreamJobs(self, request: pb.StreamJobsRequest, context: grpc.aio.ServicerContext) -> None:
        await stream_jobs(self.rt, request, context)

    ProcessJobs = process_jobs  # an async generator method: (self, request_iterator, context)


class WorkerService(pb_grpc.WorkerServiceServicer):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.core = rt.core

    async def Register(
        self, request: pb.RegisterWorkerRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterWorkerResponse:
        async def run(principal: Principal) -> pb.RegisterWorkerResponse:
            info = await workers.register_worker(
                self.core, principal,
                worker_id=request.worker_id if request.HasField("worker_id") else None,
                queue_name=request.queue_name,
                hostname=request.hostname,
                worker_type=request.worker_type or None,
                max_concurrency=(5 if request.max_concurrency == 0
                                 else r.clamp(request.max_concurrency, 1, 1000)),
                metadata=dict(request.metadata) or None,
                version=request.version or None,
                queue_max_len=r.MAX_QUEUE_NAME,
            )
            return pb.RegisterWorkerResponse(worker_id=info["id"], lease_duration_secs=r.DEFAULT_LEASE_SECS,
                                             heartbeat_interval_secs=GRPC_HEARTBEAT_INTERVAL_SECS)

        return await call(self.rt, context, run, Kind.REGISTER)

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatResponse:
        async def run(principal: Principal) -> pb.HeartbeatResponse:
            if not request.worker_id or not v.WORKER_ID.match(request.worker_id):
                return pb.HeartbeatResponse(acknowledged=False, should_drain=False)
            acknowledged, drain = await workers.heartbeat_worker(
                self.core, principal, request.worker_id,
                current_jobs=max(0, request.current_jobs),
                status=request.status or None,
                metadata=dict(request.metadata) or None,
            )
            return pb.HeartbeatResponse(acknowledged=acknowledged, should_drain=drain)

        return await call(self.rt, context, run)

    async def Deregister(
        self, request: pb.DeregisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeregisterResponse:
        async def run(principal: Principal) -> pb.DeregisterResponse:
            if not request.worker_id or not v.WORKER_ID.match(request.worker_id):
                return pb.DeregisterResponse(success=False)
            released = await workers.deregister_worker(self.core, principal, request.worker_id)
            return pb.DeregisterResponse(success=released is not None)

        return await call(self.rt, context, run)
