"""The gRPC worker settles through ``settle_batch`` and falls back to one message per settlement when the
server predates that extension. The server here is a stand-in for such an older server (an in-process
grpc.aio servicer on loopback): it answers a request with no member it knows by INVALID_REQUEST."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from spooled import AsyncSpooledClient, AsyncSpooledWorker
from spooled._grpc import spooled_pb2 as pb
from spooled._grpc import spooled_pb2_grpc as pb_grpc

JOBS = 5


class OldQueueService(pb_grpc.QueueServiceServicer):
    """ProcessJobs as a server without settle_batch sees it."""

    def __init__(self, knows_settle_batch: bool) -> None:
        self.knows_settle_batch = knows_settle_batch
        self.jobs = [pb.Job(id=str(uuid.uuid4()), queue_name="old", lease_id=str(uuid.uuid4()))
                     for _ in range(JOBS)]
        self.completed: list[str] = []
        self.kinds: list[str] = []

    async def ProcessJobs(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.ProcessResponse]:
        async for request in request_iterator:
            which = request.WhichOneof("request")
            if which == "settle_batch" and not self.knows_settle_batch:
                which = None  # an unknown member: the older server sees an empty request
            self.kinds.append(str(which))
            if which == "dequeue":
                batch, self.jobs = self.jobs, []
                yield pb.ProcessResponse(job_batch=pb.JobBatch(jobs=batch))
            elif which == "complete":
                self.completed.append(request.complete.job_id)
                yield pb.ProcessResponse(complete=pb.CompleteResponse(success=True))
            elif which == "settle_batch":
                results = []
                for item in request.settle_batch.settlements:
                    self.completed.append(item.complete.job_id)
                    results.append(pb.SettlementResult(complete=pb.CompleteResponse(success=True)))
                yield pb.ProcessResponse(settle_batch=pb.SettleBatchResponse(results=results))
            else:
                yield pb.ProcessResponse(error=pb.ErrorResponse(code="INVALID_REQUEST", message="No request"))


@pytest.mark.parametrize("knows_settle_batch", [False, True])
async def test_worker_settles_on_servers_with_and_without_settle_batch(knows_settle_batch: bool) -> None:
    service = OldQueueService(knows_settle_batch)
    server = grpc.aio.server()
    pb_grpc.add_QueueServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncSpooledClient(api_key="sp_test_x", base_url="http://127.0.0.1:9",
                                      grpc_address=f"127.0.0.1:{port}") as client:
            worker = AsyncSpooledWorker(client, "old", concurrency=JOBS, transport="grpc", register=False,
                                        install_signal_handlers=False)
            gate = asyncio.Event()
            started = 0

            @worker.process
            async def handle(ctx: Any) -> None:
                nonlocal started
                started += 1
                if started == JOBS:
                    gate.set()
                await gate.wait()  # all five finish together: their completions gather

            runner = asyncio.create_task(worker.start())
            for _ in range(200):
                if len(service.completed) == JOBS:
                    break
                await asyncio.sleep(0.05)
            worker.stop()
            await asyncio.wait_for(runner, 20)
    finally:
        await server.stop(None)
    assert len(set(service.completed)) == JOBS
    if knows_settle_batch:
        assert "complete" not in service.kinds and service.kinds.count("settle_batch") < JOBS
    else:  # one refused batch, then every job settled on its own
        assert service.kinds.count("None") >= 1 and service.kinds.count("complete") == JOBS
