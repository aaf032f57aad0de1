"""gRPC client for ``spooled.v1`` (QueueService and WorkerService), blocking and asyncio.

Unary calls return the protobuf responses; failures raise the same :mod:`spooled.errors` classes as REST
(``FAILED_PRECONDITION "Lease expired"`` -> :class:`ConflictError` with ``code == "LEASE_EXPIRED"``,
``RESOURCE_EXHAUSTED`` -> :class:`RateLimitError`, ``UNAVAILABLE`` -> :class:`NetworkError`, ...).
``process_jobs()`` opens the bidirectional stream as a :class:`ProcessStream`, whose ``send`` returns a
future for the one reply the server sends per request, in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

import grpc
import grpc.aio
from google.protobuf import struct_pb2, timestamp_pb2

from ._grpc import spooled_pb2 as pb
from ._grpc import spooled_pb2_grpc as pb_grpc
from ._transport import ClientConfig
from .errors import NetworkError, SpooledError, error_from_grpc

__all__ = ["AsyncProcessStream", "AsyncSpooledGrpcClient", "ProcessStream", "SpooledGrpcClient", "pb"]

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
]


def map_rpc_error(exc: grpc.RpcError) -> SpooledError:
    """The SDK error for a failed RPC."""
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    message = exc.details() if hasattr(exc, "details") else str(exc)
    trailing: dict[str, str] = {}
    if hasattr(exc, "trailing_metadata"):
        for key, value in exc.trailing_metadata() or ():
            trailing[str(key)] = value if isinstance(value, str) else value.decode(errors="replace")
    return error_from_grpc(name, message or name, trailing)


def to_struct(value: Any) -> struct_pb2.Struct:
    """A JSON value as a Struct; non-objects are wrapped as ``{"value": ...}`` (grpc.md)."""
    struct = struct_pb2.Struct()
    if value is None:
        return struct
    struct.update(value if isinstance(value, Mapping) else {"value": value})
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain JSON. Struct stores every number as a double; whole numbers come back as ``int``
    so a payload reads the same over gRPC as over REST (``{"n": 1}``, not ``{"n": 1.0}``)."""
    return {key: _from_value(value) for key, value in struct.fields.items()}


def _from_value(value: struct_pb2.Value) -> Any:
    # Walks the Value tree directly: json_format.MessageToDict does the same through its generic message
    # printer at several times the cost, paid for every job a worker receives.
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) <= 2**53:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: _from_value(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_from_value(item) for item in value.list_value.values]
    return None  # null_value, or no kind set


def to_timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return ts


def _enqueue_request(queue_name: str, payload: Any, **fields: Any) -> pb.EnqueueRequest:
    request = pb.EnqueueRequest(queue_name=queue_name, payload=to_struct(payload))
    for key in ("priority", "max_retries", "timeout_seconds", "idempotency_key"):
        if fields.get(key) is not None:
            setattr(request, key, fields[key])
    if fields.get("scheduled_at") is not None:
        request.scheduled_at.CopyFrom(to_timestamp(fields["scheduled_at"]))
    for key, value in (fields.get("tags") or {}).items():
        request.tags[str(key)] = str(value)
    return request


def _register_request(queue_name: str, **fields: Any) -> pb.RegisterWorkerRequest:
    request = pb.RegisterWorkerRequest(queue_name=queue_name, hostname=fields.get("hostname") or "localhost")
    for key in ("worker_type", "max_concurrency", "version", "worker_id"):
        if fields.get(key) is not None:
            setattr(request, key, fields[key])
    for key, value in (fields.get("metadata") or {}).items():
        request.metadata[str(key)] = str(value)
    return request


def _metadata(config: ClientConfig) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", config.api_key),) if config.api_key else ()


class ProcessStream:
    """One open ProcessJobs stream (blocking). Thread-safe: ``send`` from any thread."""

    def __init__(self, stub: pb_grpc.QueueServiceStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self._requests: queue.SimpleQueue[pb.ProcessRequest | None] = queue.SimpleQueue()
        self._pending: deque[Future[pb.ProcessResponse]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._error: SpooledError | None = None
        self._call = stub.ProcessJobs(self._iter_requests(), metadata=metadata)
        self._reader = threading.Thread(target=self._read, name="spooled-grpc-reader", daemon=True)
        self._reader.start()

    def _iter_requests(self) -> Iterator[pb.ProcessRequest]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for response in self._call:
                with self._lock:
                    future = self._pending.popleft() if self._pending else None
                if future is not None:
                    future.set_result(response)
            error: SpooledError = NetworkError("ProcessJobs stream ended", code="STREAM_CLOSED")
        except grpc.RpcError as exc:
            error = map_rpc_error(exc)
        with self._lock:
            self._error = error
            self._closed = True
            pending, self._pending = list(self._pending), deque()
        for future in pending:
            future.set_exception(error)

    def send(self, request: pb.ProcessRequest) -> Future[pb.ProcessResponse]:
        future: Future[pb.ProcessResponse] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(self._error or NetworkError("stream closed", code="STREAM_CLOSED"))
                return future
            # Appending and queueing under one lock keeps replies matched to requests in order.
            self._pending.append(future)
            self._requests.put(request)
        return future

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._requests.put(None)
        self._reader.join(timeout=5)
        if self._reader.is_alive():
            self._call.cancel()


class SpooledGrpcClient:
    """Blocking gRPC client. ``client.grpc`` builds one from the REST client's settings."""

    def __init__(self, config: ClientConfig, channel: grpc.Channel | None = None) -> None:
        self.config = config
        if channel is None:
            if config.grpc_secure:
                channel = grpc.secure_channel(
                    config.grpc_address, grpc.ssl_channel_credentials(), _CHANNEL_OPTIONS
                )
            else:
                channel = grpc.insecure_channel(config.grpc_address, _CHANNEL_OPTIONS)
        self.channel = channel
        self.queue = pb_grpc.QueueServiceStub(channel)  # type: ignore[no-untyped-call]
        self.worker_service = pb_grpc.WorkerServiceStub(channel)  # type: ignore[no-untyped-call]
        self._md = _metadata(config)
        self._timeout = config.timeout

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self._md, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise map_rpc_error(exc) from exc

    def enqueue(self, queue_name: str, payload: Any = None, **fields: Any) -> pb.EnqueueResponse:
        """Optional: ``priority``, ``max_retries``, ``timeout_seconds``, ``scheduled_at``,
        ``idempotency_key``, ``tags``."""
        response: pb.EnqueueResponse = self._unary(
            self.queue.Enqueue, _enqueue_request(queue_name, payload, **fields)
        )
        return response

    def dequeue(
        self, queue_name: str, worker_id: str, *, batch_size: int = 1, lease_duration_secs: int = 0
    ) -> pb.DequeueResponse:
        request = pb.DequeueRequest(
            queue_name=queue_name,
            worker_id=worker_id,
            batch_size=batch_size,
            lease_duration_secs=lease_duration_secs,
        )
        response: pb.DequeueResponse = self._unary(self.queue.Dequeue, request)
        return response

    def complete(self, job_id: str, worker_id: str, lease_id: str, result: Any = None) -> pb.CompleteResponse:
        request = pb.CompleteRequest(job_id=job_id, worker_id=worker_id, lease_id=lease_id)
        if result is not None:
            request.result.CopyFrom(to_struct(result))
        response: pb.CompleteResponse = self._unary(self.queue.Complete, request)
        return response

    def fail(
        self, job_id: str, worker_id: str, lease_id: str, error: str, *, retry: bool = True
    ) -> pb.FailResponse:
        request = pb.FailRequest(
            job_id=job_id, worker_id=worker_id, lease_id=lease_id, error=error, retry=retry
        )
        response: pb.FailResponse = self._unary(self.queue.Fail, request)
        return response

    def renew_lease(
        self, job_id: str, worker_id: str, lease_id: str, extension_secs: int
    ) -> pb.RenewLeaseResponse:
        request = pb.RenewLeaseRequest(
            job_id=job_id, worker_id=worker_id, lease_id=lease_id, extension_secs=extension_secs
        )
        response: pb.RenewLeaseResponse = self._unary(self.queue.RenewLease, request)
        return response

    def get_job(self, job_id: str) -> pb.Job:
        response: pb.GetJobResponse = self._unary(self.queue.GetJob, pb.GetJobRequest(job_id=job_id))
        return response.job

    def get_queue_stats(self, queue_name: str) -> pb.GetQueueStatsResponse:
        request = pb.GetQueueStatsRequest(queue_name=queue_name)
        response: pb.GetQueueStatsResponse = self._unary(self.queue.GetQueueStats, request)
        return response

    def stream_jobs(
        self, queue_name: str, worker_id: str, *, lease_duration_secs: int = 0
    ) -> Iterator[pb.Job]:
        """Jobs pushed by the server as they become claimable; settle each with complete/fail."""
        request = pb.StreamJobsRequest(
            queue_name=queue_name, worker_id=worker_id, lease_duration_secs=lease_duration_secs
        )
        call = self.queue.StreamJobs(request, metadata=self._md)
        try:
            yield from call
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise map_rpc_error(exc) from exc
        finally:
            call.cancel()

    def process_jobs(self) -> ProcessStream:
        return ProcessStream(self.queue, self._md)

    def register(self, queue_name: str, **fields: Any) -> pb.RegisterWorkerResponse:
        """``hostname``, ``worker_type``, ``max_concurrency``, ``version``, ``metadata``, ``worker_id``."""
        response: pb.RegisterWorkerResponse = self._unary(
            self.worker_service.Register, _register_request(queue_name, **fields)
        )
        return response

    def heartbeat(
        self,
        worker_id: str,
        *,
        current_jobs: int = 0,
        status: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> pb.HeartbeatResponse:
        request = pb.HeartbeatRequest(
            worker_id=worker_id, current_jobs=current_jobs, status=status, metadata=dict(metadata or {})
        )
        response: pb.HeartbeatResponse = self._unary(self.worker_service.Heartbeat, request)
        return response

    def deregister(self, worker_id: str) -> pb.DeregisterResponse:
        request = pb.DeregisterRequest(worker_id=worker_id)
        response: pb.DeregisterResponse = self._unary(self.worker_service.Deregister, request)
        return response

    def close(self) -> None:
        self.channel.close()


class AsyncProcessStream:
    """One open ProcessJobs stream on asyncio."""

    def __init__(self, stub: pb_grpc.QueueServiceStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self._call = stub.ProcessJobs(metadata=metadata)
        self._pending: deque[asyncio.Future[pb.ProcessResponse]] = deque()
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._error: SpooledError | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        error: SpooledError
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    error = NetworkError("ProcessJobs stream ended", code="STREAM_CLOSED")
                    break
                if self._pending:
                    future = self._pending.popleft()
                    if not future.done():
                        future.set_result(response)
        except grpc.RpcError as exc:
            error = map_rpc_error(exc)
        except asyncio.CancelledError:
            error = NetworkError("ProcessJobs stream closed", code="STREAM_CLOSED")
        self._closed = True
        self._error = error
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(error)

    async def send(self, request: pb.ProcessRequest) -> pb.ProcessResponse:
        if self._closed:
            raise self._error or NetworkError("stream closed", code="STREAM_CLOSED")
        future: asyncio.Future[pb.ProcessResponse] = asyncio.get_running_loop().create_future()
        async with self._write_lock:
            self._pending.append(future)
            try:
                await self._call.write(request)
            except (grpc.RpcError, asyncio.InvalidStateError) as exc:
                if not future.done():
                    future.cancel()
                raise (
                    map_rpc_error(exc) if isinstance(exc, grpc.RpcError) else NetworkError(str(exc))
                ) from exc
        return await future

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if not self._closed:
            try:
                await self._call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                pass
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            except TimeoutError:
                self._call.cancel()
        if not self._reader.done():
            self._reader.cancel()


class AsyncSpooledGrpcClient:
    """The asyncio twin of :class:`SpooledGrpcClient` (``grpc.aio``)."""

    def __init__(self, config: ClientConfig, channel: grpc.aio.Channel | None = None) -> None:
        self.config = config
        if channel is None:
            if config.grpc_secure:
                channel = grpc.aio.secure_channel(
                    config.grpc_address, grpc.ssl_channel_credentials(), _CHANNEL_OPTIONS
                )
            else:
                channel = grpc.aio.insecure_channel(config.grpc_address, _CHANNEL_OPTIONS)
        self.channel = channel
        self.queue = pb_grpc.QueueServiceStub(channel)  # type: ignore[no-untyped-call]
        self.worker_service = pb_grpc.WorkerServiceStub(channel)  # type: ignore[no-untyped-call]
        self._md = _metadata(config)
        self._timeout = config.timeout

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self._md, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise map_rpc_error(exc) from exc

    async def enqueue(self, queue_name: str, payload: Any = None, **fields: Any) -> pb.EnqueueResponse:
        response: pb.EnqueueResponse = await self._unary(
            self.queue.Enqueue, _enqueue_request(queue_name, payload, **fields)
        )
        return response

    async def dequeue(
        self, queue_name: str, worker_id: str, *, batch_size: int = 1, lease_duration_secs: int = 0
    ) -> pb.DequeueResponse:
        request = pb.DequeueRequest(
            queue_name=queue_name,
            worker_id=worker_id,
            batch_size=batch_size,
            lease_duration_secs=lease_duration_secs,
        )
        response: pb.DequeueResponse = await self._unary(self.queue.Dequeue, request)
        return response

    async def complete(
        self, job_id: str, worker_id: str, lease_id: str, result: Any = None
    ) -> pb.CompleteResponse:
        request = pb.CompleteRequest(job_id=job_id, worker_id=worker_id, lease_id=lease_id)
        if result is not None:
            request.result.CopyFrom(to_struct(result))
        response: pb.CompleteResponse = await self._unary(self.queue.Complete, request)
        return response

    async def fail(
        self, job_id: str, worker_id: str, lease_id: str, error: str, *, retry: bool = True
    ) -> pb.FailResponse:
        request = pb.FailRequest(
            job_id=job_id, worker_id=worker_id, lease_id=lease_id, error=error, retry=retry
        )
        response: pb.FailResponse = await self._unary(self.queue.Fail, request)
        return response

    async def renew_lease(
        self, job_id: str, worker_id: str, lease_id: str, extension_secs: int
    ) -> pb.RenewLeaseResponse:
        request = pb.RenewLeaseRequest(
            job_id=job_id, worker_id=worker_id, lease_id=lease_id, extension_secs=extension_secs
        )
        response: pb.RenewLeaseResponse = await self._unary(self.queue.RenewLease, request)
        return response

    async def get_job(self, job_id: str) -> pb.Job:
        response: pb.GetJobResponse = await self._unary(self.queue.GetJob, pb.GetJobRequest(job_id=job_id))
        return response.job

    async def get_queue_stats(self, queue_name: str) -> pb.GetQueueStatsResponse:
        request = pb.GetQueueStatsRequest(queue_name=queue_name)
        response: pb.GetQueueStatsResponse = await self._unary(self.queue.GetQueueStats, request)
        return response

    async def stream_jobs(
        self, queue_name: str, worker_id: str, *, lease_duration_secs: int = 0
    ) -> AsyncIterator[pb.Job]:
        request = pb.StreamJobsRequest(
            queue_name=queue_name, worker_id=worker_id, lease_duration_secs=lease_duration_secs
        )
        call = self.queue.StreamJobs(request, metadata=self._md)
        try:
            async for job in call:
                yield job
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise map_rpc_error(exc) from exc
        finally:
            call.cancel()

    def process_jobs(self) -> AsyncProcessStream:
        return AsyncProcessStream(self.queue, self._md)

    async def register(self, queue_name: str, **fields: Any) -> pb.RegisterWorkerResponse:
        response: pb.RegisterWorkerResponse = await self._unary(
            self.worker_service.Register, _register_request(queue_name, **fields)
        )
        return response

    async def heartbeat(
        self,
        worker_id: str,
        *,
        current_jobs: int = 0,
        status: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> pb.HeartbeatResponse:
        request = pb.HeartbeatRequest(
            worker_id=worker_id, current_jobs=current_jobs, status=status, metadata=dict(metadata or {})
        )
        response: pb.HeartbeatResponse = await self._unary(self.worker_service.Heartbeat, request)
        return response

    async def deregister(self, worker_id: str) -> pb.DeregisterResponse:
        request = pb.DeregisterRequest(worker_id=worker_id)
        response: pb.DeregisterResponse = await self._unary(self.worker_service.Deregister, request)
        return response

    async def close(self) -> None:
        await self.channel.close()
