"""AsyncSpooledWorker: the asyncio worker (handlers may be ``async def`` or plain functions)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from ..errors import NetworkError, NonRetryableError, NotFoundError, RateLimitError, SpooledError
from ._common import (
    MAX_SETTLE_BATCH,
    SETTLE_BATCHES_IN_FLIGHT,
    ClaimedJob,
    EventEmitter,
    Transport,
    WorkerOptions,
    already_finished,
    as_settlement_result,
    batch_results,
    claim_size,
    error_text,
    inband_error,
    is_lease_lost,
    log,
    parse_time,
    registration_fields,
    renewal_refused,
    settle_batch_request,
    single_settlement_request,
)

L = TypeVar("L", bound=Callable[..., Any])

if TYPE_CHECKING:
    from .._client import AsyncSpooledClient
    from ..grpc import AsyncProcessStream, AsyncSpooledGrpcClient


class AsyncJobContext:
    """What an async handler gets; ``await ctx.progress(...)``, ``ctx.cancel_event`` is an asyncio.Event."""

    def __init__(self, job: ClaimedJob, worker: AsyncSpooledWorker) -> None:
        self.job = job
        self._worker = worker
        self._cancel_event: asyncio.Event | None = None
        self._cancelled = False

    # Made on first use (see JobContext): most handlers never touch them.

    @property
    def cancel_event(self) -> asyncio.Event:
        """Set when the handler should stop: the lease was lost or shutdown gave up waiting."""
        if self._cancel_event is None:
            self._cancel_event = asyncio.Event()
            if self._cancelled:
                self._cancel_event.set()
        return self._cancel_event

    def _cancel(self) -> None:
        self._cancelled = True
        if self._cancel_event is not None:
            self._cancel_event.set()

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(log, {"job_id": self.job.id, "queue_name": self.job.queue_name})

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def queue_name(self) -> str:
        return self.job.queue_name

    @property
    def payload(self) -> Any:
        return self.job.payload

    @property
    def retry_count(self) -> int:
        return self.job.retry_count

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def max_retries(self) -> int:
        return self.job.max_retries

    @property
    def worker_id(self) -> str:
        return self._worker.worker_id

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    async def progress(self, percent: float, message: str | None = None) -> None:
        await self._worker.client.jobs.progress(
            self.job.id, percent, message, worker_id=self._worker.worker_id, lease_id=self.job.lease_id
        )
        await self._worker._emit("job:progress", self.job, percent, message)


AsyncHandler = Callable[[AsyncJobContext], Awaitable[Any] | Any]


class _AsyncBackend(Protocol):
    long_polls: bool
    registered: bool

    async def open(self) -> None: ...
    async def claim(self, limit: int, wait_secs: float) -> list[ClaimedJob]: ...
    async def complete(self, job: ClaimedJob, result: Any) -> None: ...
    async def fail(self, job: ClaimedJob, error: str, retry: bool) -> bool | None: ...
    async def renew(self, job: ClaimedJob) -> None: ...
    async def heartbeat(self, current_jobs: int, draining: bool) -> bool: ...
    async def deregister(self) -> None: ...
    async def close(self) -> None: ...


class _AsyncRestBackend:
    long_polls = True

    def __init__(self, client: AsyncSpooledClient, options: WorkerOptions) -> None:
        self.client = client
        self.o = options
        self.registered = False

    async def open(self) -> None:
        if self.o.register:
            try:
                await self.client.workers.register(registration_fields(self.o))
                self.registered = True
            except NotFoundError:
                log.warning("server has no worker registry; running unregistered")

    async def claim(self, limit: int, wait_secs: float) -> list[ClaimedJob]:
        response = await self.client.jobs.claim(
            self.o.queue_name,
            self.o.worker_id,
            limit=limit,
            lease_duration_secs=self.o.lease_duration_secs,
            wait_secs=wait_secs or None,
        )
        return [
            ClaimedJob(
                id=j.id,
                queue_name=j.queue_name,
                payload=j.payload,
                retry_count=j.retry_count,
                max_retries=j.max_retries,
                timeout_seconds=j.timeout_seconds,
                lease_id=j.lease_id,
                lease_expires_at=parse_time(j.lease_expires_at),
            )
            for j in response.jobs
        ]

    async def complete(self, job: ClaimedJob, result: Any) -> None:
        await self.client.jobs.complete(
            job.id, worker_id=self.o.worker_id, lease_id=job.lease_id, result=result
        )

    async def fail(self, job: ClaimedJob, error: str, retry: bool) -> bool | None:
        response = await self.client.jobs.fail(
            job.id, worker_id=self.o.worker_id, lease_id=job.lease_id, error=error
        )
        return bool(response.will_retry) if isinstance(response.will_retry, bool) else None

    async def renew(self, job: ClaimedJob) -> None:
        await self.client.jobs.heartbeat(
            job.id,
            worker_id=self.o.worker_id,
            lease_id=job.lease_id,
            lease_duration_secs=self.o.lease_duration_secs,
        )

    async def heartbeat(self, current_jobs: int, draining: bool) -> bool:
        if not self.registered:
            return False
        status = "draining" if draining else "healthy"
        response = await self.client.workers.heartbeat(
            self.o.worker_id, current_jobs=current_jobs, status=status
        )
        return bool(response.should_drain)

    async def deregister(self) -> None:
        if self.registered:
            await self.client.workers.deregister(self.o.worker_id)
            self.registered = False

    async def close(self) -> None:
        pass


class _AsyncSettler:
    """Coalesces the completions and failures of concurrent handlers into ``settle_batch`` messages: whatever
    gathered goes out as one batch, with up to two batches on the wire (the server applies them in order),
    so a busy worker sends one message per batch of jobs and an idle one still settles each job at once."""

    def __init__(self, backend: _AsyncGrpcBackend) -> None:
        self.backend = backend
        self.waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.batching = True

    async def settle(self, settlement: Any) -> Any:
        """The ``SettlementResult`` for one settlement; NetworkError when the stream broke."""
        if not self.batching:
            return as_settlement_result(await self.backend.stream_send(single_settlement_request(settlement)))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((settlement, future))
        self.arrived.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        sending: set[asyncio.Task[None]] = set()
        try:
            while self.waiting or sending:
                # Single messages (an older server) go out only once nothing else is on the wire.
                room = len(sending) < SETTLE_BATCHES_IN_FLIGHT and (self.batching or not sending)
                if self.waiting and room:
                    batch = self.waiting[:MAX_SETTLE_BATCH]
                    del self.waiting[:MAX_SETTLE_BATCH]
                    sending.add(asyncio.create_task(self._send(batch)))
                    continue
                self.arrived.clear()
                arrival = asyncio.ensure_future(self.arrived.wait())
                try:
                    done, _ = await asyncio.wait({*sending, arrival}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    arrival.cancel()
                sending -= done
        except BaseException:  # cancelled: nobody may wait forever
            for task in sending:
                task.cancel()
            for _, future in self.waiting:
                if not future.done():
                    future.set_exception(NetworkError("worker stopped", code="STREAM_CLOSED"))
            raise

    async def _send(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = None
            if self.batching:
                response = await self.backend.stream_send(settle_batch_request([s for s, _ in batch]))
                results = batch_results(response, len(batch))
                self.batching = self.batching and results is not None
            if results is None:  # the server has no settle_batch: one message per settlement
                results = [
                    as_settlement_result(await self.backend.stream_send(single_settlement_request(s)))
                    for s, _ in batch
                ]
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.set_exception(NetworkError("worker stopped", code="STREAM_CLOSED"))
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


class _AsyncGrpcBackend:
    long_polls = False

    def __init__(self, client: AsyncSpooledClient, options: WorkerOptions) -> None:
        self.o = options
        self.grpc: AsyncSpooledGrpcClient = client.grpc
        self.stream: AsyncProcessStream | None = None
        self.registered = False
        self.settler = _AsyncSettler(self)

    async def open(self) -> None:
        if self.o.register:
            fields = registration_fields(self.o)
            fields["metadata"] = {k: str(v) for k, v in fields["metadata"].items()}
            await self.grpc.register(**fields)
            self.registered = True
        self._stream()

    def _stream(self) -> AsyncProcessStream:
        if self.stream is None or self.stream.closed:
            self.stream = self.grpc.process_jobs()
        return self.stream

    async def stream_send(self, request: Any) -> Any:
        return await self._stream().send(request)

    async def _send(self, request: Any) -> Any:
        response = await self._stream().send(request)
        if response.WhichOneof("response") == "error":
            raise inband_error(response.error.code, response.error.message)
        return response

    async def claim(self, limit: int, wait_secs: float) -> list[ClaimedJob]:
        from ..grpc import from_struct, pb

        request = pb.ProcessRequest(
            dequeue=pb.DequeueRequest(
                queue_name=self.o.queue_name,
                worker_id=self.o.worker_id,
                batch_size=limit,
                lease_duration_secs=self.o.lease_duration_secs,
                batch_response=True,
            )
        )
        response = await self._send(request)
        jobs = response.job_batch.jobs if response.WhichOneof("response") == "job_batch" else [response.job]
        return [
            ClaimedJob(
                id=j.id,
                queue_name=j.queue_name,
                payload=from_struct(j.payload),
                retry_count=j.retry_count,
                max_retries=j.max_retries,
                timeout_seconds=j.timeout_seconds,
                lease_id=j.lease_id,
                lease_expires_at=j.lease_expires_at.ToDatetime() if j.HasField("lease_expires_at") else None,
            )
            for j in jobs
        ]

    async def complete(self, job: ClaimedJob, result: Any) -> None:
        from ..grpc import pb, to_struct

        request = pb.CompleteRequest(job_id=job.id, worker_id=self.o.worker_id, lease_id=job.lease_id)
        if result is not None:
            request.result.CopyFrom(to_struct(result))
        try:
            outcome = await self.settler.settle(pb.Settlement(complete=request))
        except NetworkError:
            await self.grpc.complete(job.id, self.o.worker_id, job.lease_id, result)
            return
        if outcome.WhichOneof("result") == "error":
            raise inband_error(outcome.error.code, outcome.error.message)

    async def fail(self, job: ClaimedJob, error: str, retry: bool) -> bool | None:
        from ..grpc import pb

        request = pb.FailRequest(
            job_id=job.id, worker_id=self.o.worker_id, lease_id=job.lease_id, error=error, retry=retry
        )
        try:
            outcome = await self.settler.settle(pb.Settlement(fail=request))
        except NetworkError:
            response = await self.grpc.fail(job.id, self.o.worker_id, job.lease_id, error, retry=retry)
            return bool(response.will_retry)
        if outcome.WhichOneof("result") == "error":
            raise inband_error(outcome.error.code, outcome.error.message)
        return bool(outcome.fail.will_retry)

    async def renew(self, job: ClaimedJob) -> None:
        from ..grpc import pb

        request = pb.RenewLeaseRequest(
            job_id=job.id,
            worker_id=self.o.worker_id,
            lease_id=job.lease_id,
            extension_secs=self.o.lease_duration_secs,
        )
        try:
            await self._send(pb.ProcessRequest(renew_lease=request))
        except NetworkError:
            await self.grpc.renew_lease(job.id, self.o.worker_id, job.lease_id, self.o.lease_duration_secs)

    async def heartbeat(self, current_jobs: int, draining: bool) -> bool:
        if not self.registered:
            return False
        status = "draining" if draining else "healthy"
        response = await self.grpc.heartbeat(self.o.worker_id, current_jobs=current_jobs, status=status)
        return bool(response.should_drain)

    async def deregister(self) -> None:
        if self.registered:
            await self.grpc.deregister(self.o.worker_id)
            self.registered = False

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.close()
            self.stream = None


@dataclass
class _AsyncRunning:
    job: ClaimedJob
    ctx: AsyncJobContext
    next_renewal: float
    task: asyncio.Task[None] | None = None
    lost: bool = False
    settling: bool = False
    abandoned: bool = False
    handling: bool = True  # the handler has not returned yet


class AsyncSpooledWorker:
    """The asyncio twin of :class:`~spooled.worker.SpooledWorker`: ``await worker.start()`` runs until
    ``stop()``, SIGINT or SIGTERM. Async handlers run as tasks on the loop; plain functions run in the
    default thread pool."""

    def __init__(
        self,
        client: AsyncSpooledClient,
        queue_name: str | None = None,
        *,
        concurrency: int = 5,
        transport: Transport = "rest",
        handler: AsyncHandler | None = None,
        options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        merged: dict[str, Any] = {
            "concurrency": concurrency,
            "transport": transport,
            **(options or {}),
            **settings,
        }
        if queue_name is not None:
            merged["queue_name"] = queue_name
        if "queue_name" not in merged:
            raise ValueError("queue_name is required")
        self.options = WorkerOptions(**merged)
        self.client = client
        self.events = EventEmitter()
        self._handler = handler
        self._backend: _AsyncBackend = (
            _AsyncGrpcBackend(client, self.options)
            if self.options.transport == "grpc"
            else _AsyncRestBackend(client, self.options)
        )
        self._running: dict[str, _AsyncRunning] = {}
        self._handling = 0  # jobs whose handler has not returned (the rest of _running are settling)
        self._slot_free: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._force = False
        self._stop_reason = ""
        self._started = False
        self._handler_is_async = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def worker_id(self) -> str:
        return self.options.worker_id

    @property
    def active_jobs(self) -> int:
        return len(self._running)

    def process(self, handler: AsyncHandler) -> AsyncHandler:
        self._handler = handler
        return handler

    @overload
    def on(self, event: str, listener: L) -> L: ...
    @overload
    def on(self, event: str, listener: None = None) -> Callable[[L], L]: ...

    def on(self, event: str, listener: L | None = None) -> L | Callable[[L], L]:
        result: L | Callable[[L], L] = self.events.on(event, listener)
        return result

    async def _emit(self, event: str, *args: Any) -> None:
        if not self.events.wants(event):
            return
        for listener, call_args in self.events.calls(event, args):
            try:
                outcome = listener(*call_args)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("worker event listener for %s failed", event)

    async def start(self) -> None:
        """Run until stopped. Installs SIGINT/SIGTERM handlers on the running loop (when allowed)."""
        if self._handler is None:
            raise RuntimeError("no handler: decorate a function with @worker.process first")
        if self._started:
            raise RuntimeError("worker already started")
        self._started = True
        self._handler_is_async = inspect.iscoroutinefunction(self._handler)
        self._loop = asyncio.get_running_loop()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        installed = self._install_signals()
        keeper: asyncio.Task[None] | None = None
        try:
            await self._backend.open()
            await self._emit("started", self.worker_id)
            keeper = asyncio.create_task(self._keep_leases())
            await self._claim_loop()
        finally:
            self._stopping.set()
            await self._emit("stopping", self._stop_reason)
            await self._shutdown()
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            self._remove_signals(installed)
            self._stopped.set()
            await self._emit("stopped")

    run = start

    def stop(self) -> None:
        """Ask for a graceful stop (returns at once; ``await worker.wait()`` for the end)."""
        self._request_stop("stop() called")

    async def wait(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()

    def _request_stop(self, reason: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:  # e.g. a plain-function handler calling stop() from its thread
                loop.call_soon_threadsafe(self._request_stop, reason)
                return
        if self._stopping is not None and not self._stopping.is_set():
            self._stop_reason = reason
            self._stopping.set()
            assert self._slot_free is not None
            self._slot_free.set()

    def _install_signals(self) -> list[int]:
        if not self.options.install_signal_handlers:
            return []
        loop = asyncio.get_running_loop()
        installed: list[int] = []

        def handle(sig: signal.Signals) -> None:
            if self._stopping is not None and self._stopping.is_set():
                self._force = True
            self._request_stop(f"signal {sig.name}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, handle, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no support
                pass
        return installed

    @staticmethod
    def _remove_signals(installed: list[int]) -> None:
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _claim_loop(self) -> None:
        assert self._stopping is not None and self._slot_free is not None
        opts = self.options
        # Claims over one gRPC stream overlap cheaply (replies come back in order): two stay in flight, so
        # the next batch is on its way while this one runs. A REST long poll holds one.
        depth = 1 if self._backend.long_polls else 2
        claims: dict[asyncio.Task[list[ClaimedJob]], int] = {}  # in flight -> jobs asked for
        idle_backoff = 0.0
        error_backoff = 0.0
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                asked = sum(claims.values())
                n = claim_size(opts.concurrency, self._handling, len(self._running), asked, opts.batch_size)
                if len(claims) < depth and n:
                    claims[asyncio.create_task(self._backend.claim(n, opts.claim_wait_secs))] = n
                    continue
                self._slot_free.clear()
                slot = asyncio.create_task(self._slot_free.wait())
                await asyncio.wait({*claims, slot, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                slot.cancel()
                for claim in [t for t in claims if t.done()]:  # oldest first
                    del claims[claim]
                    try:
                        jobs = claim.result()
                        error_backoff = 0.0
                    except SpooledError as exc:
                        await self._emit("error", exc)
                        delay = exc.retry_after if isinstance(exc, RateLimitError) else None
                        error_backoff = min(max(error_backoff * 2, 0.5), 10.0)
                        await self._sleep_unless_stopping(delay or error_backoff)
                        continue
                    for job in jobs:
                        await self._start_job(job)
                    if jobs:
                        idle_backoff = 0.0
                    elif not self._backend.long_polls:
                        idle_backoff = min(max(idle_backoff * 2, 0.005), 0.25)
                        await self._sleep_unless_stopping(idle_backoff)
        finally:
            stop_wait.cancel()
            # Stopping during a claim (a long poll, say): let it land; its jobs run or are released at
            # shutdown.
            for claim in list(claims):
                with contextlib.suppress(Exception):
                    for job in await asyncio.wait_for(asyncio.shield(claim), opts.claim_wait_secs + 5):
                        await self._start_job(job)

    async def _start_job(self, job: ClaimedJob) -> None:
        running = _AsyncRunning(
            job=job,
            ctx=AsyncJobContext(job, self),
            next_renewal=time.monotonic() + self.options.heartbeat_interval,
        )
        # Keyed by lease: a job re-claimed after its lease expired is a new attempt, the old one
        # must still be found (and fenced) by the lease keeper.
        self._running[job.lease_id] = running
        self._handling += 1
        if self.events.wants("job:claimed"):
            await self._emit("job:claimed", job)
        running.task = asyncio.create_task(self._execute(running))

    async def _execute(self, running: _AsyncRunning) -> None:
        job, ctx = running.job, running.ctx
        assert self._handler is not None and self._slot_free is not None
        error: BaseException | None = None
        result: Any = None
        try:
            if self.events.wants("job:started"):
                await self._emit("job:started", job)
            if self._handler_is_async:
                result = await self._handler(ctx)
            else:
                result = await asyncio.to_thread(self._handler, ctx)
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError:
            self._handler_returned(running)
            if not running.abandoned:
                raise
            return
        except Exception as exc:
            error = exc
        self._handler_returned(running)
        try:
            await self._settle(running, result, error)
        finally:
            self._running.pop(job.lease_id, None)
            self._slot_free.set()

    def _handler_returned(self, running: _AsyncRunning) -> None:
        """The job's slot is free for the next claim; its settlement may still be on the wire."""
        if running.handling:
            running.handling = False
            self._handling -= 1
            assert self._slot_free is not None
            self._slot_free.set()

    async def _settle(self, running: _AsyncRunning, result: Any, error: BaseException | None) -> None:
        job = running.job
        if running.lost or running.abandoned:
            return
        running.settling = True
        try:
            if error is None:
                await self._backend.complete(job, result)
                if self.events.wants("job:completed"):
                    await self._emit("job:completed", job, result)
            else:
                will_retry = await self._backend.fail(
                    job, error_text(error), not isinstance(error, NonRetryableError)
                )
                await self._emit("job:failed", job, error, will_retry)
        except SpooledError as exc:
            if already_finished(exc):
                if error is None:
                    await self._emit("job:completed", job, result)
                else:
                    await self._emit("job:failed", job, error, None)
            elif is_lease_lost(exc):
                running.lost = True
                running.ctx._cancel()
                await self._emit("job:lease_lost", job, exc)
            else:
                await self._emit("error", exc)

    async def _renew(self, running: _AsyncRunning) -> None:
        try:
            await self._backend.renew(running.job)
            running.next_renewal = time.monotonic() + self.options.heartbeat_interval
        except SpooledError as exc:
            if running.settling:
                return
            if renewal_refused(exc):
                running.lost = True
                running.ctx._cancel()
                await self._emit("job:lease_lost", running.job, exc)
            else:
                running.next_renewal = time.monotonic() + 1.0
                await self._emit("error", exc)

    async def _keep_leases(self) -> None:
        assert self._stopping is not None
        next_worker_beat = time.monotonic() + self.options.worker_heartbeat_interval
        tick = min(1.0, self.options.heartbeat_interval / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            due = [
                r
                for r in self._running.values()
                if r.next_renewal <= now and not (r.settling or r.lost or r.abandoned)
            ]
            if due:
                await asyncio.gather(*(self._renew(r) for r in due))
            if now >= next_worker_beat and not self._stopping.is_set():
                next_worker_beat = now + self.options.worker_heartbeat_interval
                try:
                    if await self._backend.heartbeat(len(self._running), False):
                        self._request_stop("server asked the worker to drain")
                except SpooledError as exc:
                    await self._emit("error", exc)

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + self.options.shutdown_timeout
        while self._running and not self._force and time.monotonic() < deadline:
            tasks = [r.task for r in self._running.values() if r.task is not None]
            if not tasks:
                break
            await asyncio.wait(tasks, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        leftovers = [r for r in self._running.values() if not r.settling]
        for running in leftovers:
            running.abandoned = True
            running.ctx._cancel()
            if running.task is not None:
                running.task.cancel()
        try:
            await self._backend.deregister()
            for running in leftovers:
                await self._emit("job:released", running.job)
        except SpooledError as exc:
            await self._emit("error", exc)
        finally:
            await self._backend.close()
