"""SpooledWorker: a blocking worker that runs handlers on a thread pool."""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import FrameType
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

PARTIAL_CLAIM_WAIT_SECS = 0.002  # how long a claim for part of a batch waits for more handlers to return

if TYPE_CHECKING:
    from .._client import SpooledClient
    from ..grpc import ProcessStream, SpooledGrpcClient


_CONTEXT_LOCK = threading.Lock()


class JobContext:
    """What a handler gets: the job, a cancellation signal, progress reporting and a logger."""

    def __init__(self, job: ClaimedJob, worker: SpooledWorker) -> None:
        self.job = job
        self._worker = worker
        self._cancel_event: threading.Event | None = None
        self._cancelled = False

    # The event and the logger are made on first use: most handlers never touch them, and a worker
    # running thousands of jobs a second would otherwise build both for every job.

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the handler should stop: the lease was lost or shutdown gave up waiting."""
        if self._cancel_event is None:
            with _CONTEXT_LOCK:
                if self._cancel_event is None:
                    event = threading.Event()
                    if self._cancelled:
                        event.set()
                    self._cancel_event = event
        return self._cancel_event

    def _cancel(self) -> None:
        with _CONTEXT_LOCK:
            self._cancelled = True
            event = self._cancel_event
        if event is not None:
            event.set()

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
        """True once the lease was lost or shutdown gave up waiting: stop work, the result is dropped."""
        return self._cancelled

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0..100); visible on the job and sent as a realtime ``job.progress`` event."""
        self._worker.client.jobs.progress(
            self.job.id, percent, message, worker_id=self._worker.worker_id, lease_id=self.job.lease_id
        )
        self._worker._emit("job:progress", self.job, percent, message)


Handler = Callable[[JobContext], Any]


class _Backend(Protocol):
    long_polls: bool
    registered: bool

    def open(self) -> None: ...
    def claim(self, limit: int, wait_secs: float) -> Future[list[ClaimedJob]]: ...
    def send_complete(self, job: ClaimedJob, result: Any) -> _Settling: ...
    def finish_complete(self, job: ClaimedJob, result: Any, sent: _Settling) -> None: ...
    def send_fail(self, job: ClaimedJob, error: str, retry: bool) -> _Settling: ...
    def finish_fail(self, job: ClaimedJob, error: str, retry: bool, sent: _Settling) -> bool | None: ...
    def renew(self, job: ClaimedJob) -> None: ...
    def heartbeat(self, current_jobs: int, draining: bool) -> bool: ...
    def deregister(self) -> None: ...
    def close(self) -> None: ...


class _Settling(Protocol):
    """A settlement on its way: a finished ``Future`` or an :class:`_Outcome`."""

    def done(self) -> bool: ...
    def result(self) -> Any: ...
    def exception(self) -> BaseException | None: ...
    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...


class _Outcome:
    """The outcome of one batched settlement: a future without a Condition. ``concurrent.futures.Future``
    takes its Condition's lock four or five times per job, and with many handler threads those locks were
    where they queued. Callbacks run on the thread that sets the outcome; ``result()`` never blocks (it is
    read only once the outcome is in)."""

    __slots__ = ("_callbacks", "_done", "_error", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Any], object]] = []

    def _set(self, value: Any, error: BaseException | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done, self._value, self._error = True, value, error
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def set_result(self, value: Any) -> None:
        self._set(value, None)

    def set_exception(self, error: BaseException) -> None:
        self._set(None, error)

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)

    def result(self) -> Any:
        if not self._done:
            raise RuntimeError("the settlement has no outcome yet")
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self) -> BaseException | None:
        return self._error


def _resolved(call: Callable[[], Any]) -> Future[Any]:
    """Runs a blocking call now and returns its outcome (value or exception) as a finished future."""
    done: Future[Any] = Future()
    try:
        done.set_result(call())
    except BaseException as exc:
        done.set_exception(exc)
    return done


class _RestBackend:
    long_polls = True

    def __init__(self, client: SpooledClient, options: WorkerOptions) -> None:
        self.client = client
        self.o = options
        self.registered = False

    def open(self) -> None:
        if self.o.register:
            try:
                self.client.workers.register(registration_fields(self.o))
                self.registered = True
            except NotFoundError:
                log.warning("server has no worker registry; running unregistered")

    def claim(self, limit: int, wait_secs: float) -> Future[list[ClaimedJob]]:
        """A long poll, answered before this returns (one is in flight at a time)."""
        claimed: Future[list[ClaimedJob]] = Future()
        try:
            claimed.set_result(self._claim(limit, wait_secs))
        except BaseException as exc:
            claimed.set_exception(exc)
        return claimed

    def _claim(self, limit: int, wait_secs: float) -> list[ClaimedJob]:
        response = self.client.jobs.claim(
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

    # A settlement is one blocking request: "sending" it runs it, and its outcome waits in the future.

    def send_complete(self, job: ClaimedJob, result: Any) -> _Settling:
        return _resolved(lambda: self.client.jobs.complete(
            job.id, worker_id=self.o.worker_id, lease_id=job.lease_id, result=result))

    def finish_complete(self, job: ClaimedJob, result: Any, sent: _Settling) -> None:
        sent.result()

    def send_fail(self, job: ClaimedJob, error: str, retry: bool) -> _Settling:
        # REST has no "do not retry" flag: the server's retry policy decides.
        return _resolved(lambda: self.client.jobs.fail(
            job.id, worker_id=self.o.worker_id, lease_id=job.lease_id, error=error))

    def finish_fail(self, job: ClaimedJob, error: str, retry: bool, sent: _Settling) -> bool | None:
        will_retry = sent.result().will_retry
        return bool(will_retry) if isinstance(will_retry, bool) else None

    def renew(self, job: ClaimedJob) -> None:
        self.client.jobs.heartbeat(
            job.id,
            worker_id=self.o.worker_id,
            lease_id=job.lease_id,
            lease_duration_secs=self.o.lease_duration_secs,
        )

    def heartbeat(self, current_jobs: int, draining: bool) -> bool:
        if not self.registered:
            return False
        status = "draining" if draining else "healthy"
        response = self.client.workers.heartbeat(self.o.worker_id, current_jobs=current_jobs, status=status)
        return bool(response.should_drain)

    def deregister(self) -> None:
        if self.registered:
            self.client.workers.deregister(self.o.worker_id)
            self.registered = False

    def close(self) -> None:
        pass


_LANDED = object()  # settler inbox: a settle_batch reply was read
_CLOSE = object()  # settler inbox: send what is left, then stop


class _SyncSettler:
    """Coalesces the completions and failures of the handler threads into ``settle_batch`` messages (see
    the async twin). One daemon thread sends whatever gathered, keeping up to two batches on the wire; their
    replies are read where they land.

    Everything reaches that thread through one ``SimpleQueue``: up to ``concurrency`` handler threads hand
    settlements in, and a shared lock (or a Condition notified per settlement) made them queue up behind
    each other; a put takes no Python-level lock and wakes the thread only when it waits."""

    def __init__(self, backend: _GrpcBackend) -> None:
        self.backend = backend
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.start_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.exited = False
        self.batching = True

    def submit(self, settlement: Any) -> _Settling:
        """Queues one settlement without waiting: the future gets its ``SettlementResult``, or NetworkError
        when the stream broke."""
        if not self.batching:
            return _resolved(lambda: as_settlement_result(
                self.backend.stream_send(single_settlement_request(settlement))))
        future = _Outcome()
        if self.thread is None:
            with self.start_lock:
                if self.thread is None and not self.exited:
                    thread = threading.Thread(target=self._run, name="spooled-settler", daemon=True)
                    thread.start()
                    self.thread = thread
        self.inbox.put((settlement, future))
        if self.exited:  # closed meanwhile: whatever the settler thread did not see fails here
            self._fail_leftovers()
        return future

    def close(self) -> None:
        with self.start_lock:
            thread = self.thread
            if thread is None:
                self.exited = True
                return
        self.inbox.put(_CLOSE)
        thread.join(timeout=10)

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple) and not item[1].done():
                item[1].set_exception(NetworkError("worker stopped", code="STREAM_CLOSED"))

    def _run(self) -> None:
        pending: list[tuple[Any, _Outcome]] = []
        in_flight = 0  # settle_batch messages sent, replies not yet read
        closing = False
        try:
            while True:
                item = self.inbox.get()
                while True:  # take everything that gathered
                    if item is _LANDED:
                        in_flight -= 1
                    elif item is _CLOSE:
                        closing = True
                    elif isinstance(item, list):  # an older server refused a batch: resend it singly
                        in_flight -= 1
                        pending[:0] = item
                    else:
                        pending.append(item)
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                while pending and self.batching and in_flight < SETTLE_BATCHES_IN_FLIGHT:
                    batch = pending[:MAX_SETTLE_BATCH]
                    del pending[:MAX_SETTLE_BATCH]
                    in_flight += 1
                    self._send(batch)
                if pending and not self.batching and not in_flight:
                    batch, pending = pending, []
                    self._send_singly(batch)
                if closing and not pending and not in_flight:
                    return  # every batch has its reply
        finally:
            self.exited = True
            self._fail_leftovers()

    def _send(self, batch: list[tuple[Any, _Outcome]]) -> None:
        try:
            sent = self.backend.stream_send_later(settle_batch_request([s for s, _ in batch]))
        except Exception as exc:
            self._finish(batch, exc)
            return
        sent.add_done_callback(lambda reply: self._landed(batch, reply))

    def _landed(self, batch: list[tuple[Any, _Outcome]], reply: Future[Any]) -> None:
        try:
            results = batch_results(reply.result(), len(batch))
        except Exception as exc:
            self._finish(batch, exc)
            return
        if results is None:  # an older server: this thread must not block on sends; the settler resends
            self.batching = False
            self.inbox.put(batch)
            return
        self._finish(batch, results)

    def _finish(self, batch: list[tuple[Any, _Outcome]], outcome: Any) -> None:
        self.inbox.put(_LANDED)
        if isinstance(outcome, BaseException):
            for _, future in batch:
                future.set_exception(outcome)
            return
        for (_, future), result in zip(batch, outcome, strict=True):
            future.set_result(result)

    def _send_singly(self, batch: list[tuple[Any, _Outcome]]) -> None:
        for settlement, future in batch:
            try:
                future.set_result(as_settlement_result(
                    self.backend.stream_send(single_settlement_request(settlement))))
            except Exception as exc:
                future.set_exception(exc)


class _GrpcBackend:
    """Claims and settlements over one ProcessJobs stream (batched replies); registry over WorkerService."""

    long_polls = False

    def __init__(self, client: SpooledClient, options: WorkerOptions) -> None:
        self.o = options
        self.grpc: SpooledGrpcClient = client.grpc
        self.stream: ProcessStream | None = None
        self.registered = False
        self._lock = threading.Lock()
        self.settler = _SyncSettler(self)

    def open(self) -> None:
        if self.o.register:
            fields = registration_fields(self.o)
            fields["metadata"] = {k: str(v) for k, v in fields["metadata"].items()}
            self.grpc.register(**fields)
            self.registered = True
        self._stream()

    def _stream(self) -> ProcessStream:
        with self._lock:
            if self.stream is None or self.stream.closed:
                self.stream = self.grpc.process_jobs()
            return self.stream

    def stream_send(self, request: Any) -> Any:
        return self._stream().send(request).result()

    def stream_send_later(self, request: Any) -> Future[Any]:
        return self._stream().send(request)

    def _send(self, request: Any) -> Any:
        response = self._stream().send(request).result()
        if response.WhichOneof("response") == "error":
            raise inband_error(response.error.code, response.error.message)
        return response

    def claim(self, limit: int, wait_secs: float) -> Future[list[ClaimedJob]]:
        """Sends a dequeue and returns at once: the jobs arrive with its reply (replies come back in order,
        so several claims can be on the wire together)."""
        from ..grpc import pb

        request = pb.ProcessRequest(
            dequeue=pb.DequeueRequest(
                queue_name=self.o.queue_name,
                worker_id=self.o.worker_id,
                batch_size=limit,
                lease_duration_secs=self.o.lease_duration_secs,
                batch_response=True,
            )
        )
        claimed: Future[list[ClaimedJob]] = Future()

        def landed(reply: Future[Any]) -> None:
            try:
                claimed.set_result(self._jobs(reply.result()))
            except BaseException as exc:
                claimed.set_exception(exc)

        self._stream().send(request).add_done_callback(landed)
        return claimed

    @staticmethod
    def _jobs(response: Any) -> list[ClaimedJob]:
        from ..grpc import from_struct

        if response.WhichOneof("response") == "error":
            raise inband_error(response.error.code, response.error.message)
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

    # Settlements go out through the settler (batched) and the handler's thread moves on; the reply is
    # read when it lands.

    def send_complete(self, job: ClaimedJob, result: Any) -> _Settling:
        from ..grpc import pb, to_struct

        request = pb.CompleteRequest(job_id=job.id, worker_id=self.o.worker_id, lease_id=job.lease_id)
        if result is not None:
            request.result.CopyFrom(to_struct(result))
        return self.settler.submit(pb.Settlement(complete=request))

    def finish_complete(self, job: ClaimedJob, result: Any, sent: _Settling) -> None:
        try:
            outcome = sent.result()
        except NetworkError:
            self.grpc.complete(job.id, self.o.worker_id, job.lease_id, result)  # the stream broke: unary
            return
        if outcome.WhichOneof("result") == "error":
            raise inband_error(outcome.error.code, outcome.error.message)

    def send_fail(self, job: ClaimedJob, error: str, retry: bool) -> _Settling:
        from ..grpc import pb

        request = pb.FailRequest(
            job_id=job.id, worker_id=self.o.worker_id, lease_id=job.lease_id, error=error, retry=retry
        )
        return self.settler.submit(pb.Settlement(fail=request))

    def finish_fail(self, job: ClaimedJob, error: str, retry: bool, sent: _Settling) -> bool | None:
        try:
            outcome = sent.result()
        except NetworkError:
            return bool(self.grpc.fail(job.id, self.o.worker_id, job.lease_id, error, retry=retry).will_retry)
        if outcome.WhichOneof("result") == "error":
            raise inband_error(outcome.error.code, outcome.error.message)
        return bool(outcome.fail.will_retry)

    def renew(self, job: ClaimedJob) -> None:
        from ..grpc import pb

        request = pb.RenewLeaseRequest(
            job_id=job.id,
            worker_id=self.o.worker_id,
            lease_id=job.lease_id,
            extension_secs=self.o.lease_duration_secs,
        )
        try:
            self._send(pb.ProcessRequest(renew_lease=request))
        except NetworkError:
            self.grpc.renew_lease(job.id, self.o.worker_id, job.lease_id, self.o.lease_duration_secs)

    def heartbeat(self, current_jobs: int, draining: bool) -> bool:
        if not self.registered:
            return False
        status = "draining" if draining else "healthy"
        return bool(
            self.grpc.heartbeat(self.o.worker_id, current_jobs=current_jobs, status=status).should_drain
        )

    def deregister(self) -> None:
        if self.registered:
            self.grpc.deregister(self.o.worker_id)
            self.registered = False

    def close(self) -> None:
        self.settler.close()
        with self._lock:
            if self.stream is not None:
                self.stream.close()
                self.stream = None


class _DaemonPool:
    """A fixed set of daemon threads. Unlike ThreadPoolExecutor's, they never keep the interpreter alive:
    a handler that ignores cancellation cannot stop a worker process from exiting after shutdown.

    Waking a thread costs a context switch and a fight for the GIL, so a batch of short jobs must not wake
    a thread per job: a thread that finishes a task takes the next one itself, and a sleeping thread is
    woken only when none is already on its way; each woken thread that finds more work waiting wakes the
    next. Blocking handlers still all get a thread of their own, one wake-up after another."""

    def __init__(self, size: int, name: str) -> None:
        self._lock = threading.Lock()
        self._work: deque[Callable[[], None] | None] = deque()
        self._idle: list[threading.Lock] = []  # sleeping threads' wake-up locks, most recent last
        self._waking = 0  # threads woken that have not looked at the work yet
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _wake_one(self) -> threading.Lock | None:
        """The wake-up lock of a sleeping thread to release, if one should wake (call with _lock held)."""
        if self._work and self._idle and not self._waking:
            self._waking += 1
            return self._idle.pop()
        return None

    def _loop(self) -> None:
        wakeup = threading.Lock()
        wakeup.acquire()
        woken = False
        while True:
            with self._lock:
                if woken:
                    self._waking -= 1
                    woken = False
                if not self._work:
                    self._idle.append(wakeup)
                    task: Callable[[], None] | None = None
                    sleeping = True
                else:
                    task = self._work.popleft()
                    sleeping = False
                wake = self._wake_one()
            if wake is not None:
                wake.release()
            if sleeping:
                wakeup.acquire()  # released by whoever pops it from _idle
                woken = True
                continue
            if task is None:
                return
            try:
                task()
            except Exception:  # a failure must not cost the pool a thread
                log.exception("worker task failed")

    def _put(self, task: Callable[[], None] | None) -> None:
        with self._lock:
            self._work.append(task)
            wake = self._wake_one()
        if wake is not None:
            wake.release()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._put(lambda: fn(*args))

    def shutdown(self) -> None:
        for _ in self._threads:
            self._put(None)


@dataclass
class _Running:
    job: ClaimedJob
    ctx: JobContext
    next_renewal: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    lost: bool = False
    settling: bool = False
    abandoned: bool = False
    handling: bool = True  # the handler has not returned yet


class SpooledWorker:
    """Claims jobs from one queue and runs ``handler(ctx)`` for each, up to ``concurrency`` at once.

    A handler's return value completes the job (it is stored as the job's result); an exception fails it
    (retried by the queue's policy; :class:`~spooled.NonRetryableError` dead-letters it at once over
    gRPC). Leases are renewed in the background at about half the lease. If a lease is lost anyway,
    ``ctx.cancelled`` turns true and the handler's outcome is dropped: the job is never settled twice.

    ``start()`` blocks until ``stop()``, SIGINT or SIGTERM: the worker then stops claiming, waits up to
    ``shutdown_timeout`` seconds for running handlers, hands back the rest (deregistering releases them
    without using a retry) and returns.
    """

    def __init__(
        self,
        client: SpooledClient,
        queue_name: str | None = None,
        *,
        concurrency: int = 5,
        transport: Transport = "rest",
        handler: Handler | None = None,
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
        self._backend: _Backend = (
            _GrpcBackend(client, self.options)
            if self.options.transport == "grpc"
            else _RestBackend(client, self.options)
        )
        self._running: dict[str, _Running] = {}
        self._handling = 0  # jobs whose handler has not returned (the rest of _running are settling)
        self._claims_waiting = False  # the claim loop waits for slots (see _wake_claims)
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._leases_kept = threading.Event()  # set once shutdown is over: the lease keeper ends
        self._force = False
        self._pool: _DaemonPool | None = None
        self._own_thread = threading.local()
        self._thread: threading.Thread | None = None
        self._stop_reason = ""

    @property
    def worker_id(self) -> str:
        return self.options.worker_id

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    @property
    def active_jobs(self) -> int:
        with self._cond:
            return len(self._running)

    def process(self, handler: Handler) -> Handler:
        """Register the job handler (usable as a decorator)."""
        self._handler = handler
        return handler

    @overload
    def on(self, event: str, listener: L) -> L: ...
    @overload
    def on(self, event: str, listener: None = None) -> Callable[[L], L]: ...

    def on(self, event: str, listener: L | None = None) -> L | Callable[[L], L]:
        """Listen to a lifecycle event (see ``spooled.worker.EVENTS``); usable as a decorator."""
        result: L | Callable[[L], L] = self.events.on(event, listener)
        return result

    def _emit(self, event: str, *args: Any) -> None:
        if not self.events.wants(event):
            return
        for listener, call_args in self.events.calls(event, args):
            try:
                listener(*call_args)
            except Exception:
                log.exception("worker event listener for %s failed", event)

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, *, block: bool = True) -> None:
        """Run the worker. Blocks until it stops unless ``block=False`` (then it runs in a thread)."""
        if self._handler is None:
            raise RuntimeError("no handler: decorate a function with @worker.process first")
        if self._thread is not None:
            raise RuntimeError("worker already started")
        previous = self._install_signals() if block else {}
        self._thread = threading.Thread(
            target=self._main, name=f"spooled-worker-{self.worker_id}", daemon=True
        )
        self._thread.start()
        if block:
            try:
                while not self._stopped.wait(0.2):
                    pass
            finally:
                self._restore_signals(previous)
            if self._failure is not None:
                raise self._failure

    run = start

    def stop(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Graceful stop: stop claiming, let running handlers finish (``shutdown_timeout``), release the
        rest, deregister. Safe from any thread and from signal handlers (``wait=False``)."""
        self._request_stop("stop() called")
        # From the worker's own threads (a handler or an event listener) waiting would deadlock.
        if wait and self._thread is not None and not getattr(self._own_thread, "active", False):
            self._stopped.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _request_stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            self._stop_reason = reason
            self._stopping.set()
            with self._cond:
                self._cond.notify_all()

    def _install_signals(self) -> dict[int, Any]:
        if (
            not self.options.install_signal_handlers
            or threading.current_thread() is not threading.main_thread()
        ):
            return {}
        previous: dict[int, Any] = {}

        def handle(signum: int, frame: FrameType | None) -> None:
            if self._stopping.is_set():
                self._force = True  # a second signal: stop waiting for handlers
                with self._cond:
                    self._cond.notify_all()
            self._request_stop(f"signal {signal.Signals(signum).name}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    _failure: BaseException | None = None

    def _main(self) -> None:
        self._own_thread.active = True
        self._pool = _DaemonPool(self.options.concurrency, "spooled-job")
        keeper = threading.Thread(target=self._keep_leases, name="spooled-heartbeat", daemon=True)
        try:
            self._backend.open()
            self._emit("started", self.worker_id)
            keeper.start()
            self._claim_loop()
        except BaseException as exc:
            self._failure = exc
            self._emit("error", exc)
        finally:
            self._stopping.set()
            self._emit("stopping", self._stop_reason)
            self._shutdown()
            self._leases_kept.set()
            if keeper.is_alive():
                keeper.join(timeout=5)
            self._stopped.set()
            self._emit("stopped")

    def _claim_loop(self) -> None:
        opts = self.options
        # Claims over one gRPC stream overlap cheaply (replies come back in order): two stay in flight, so
        # the next batch is on its way while this one runs. A REST long poll holds one.
        depth = 1 if self._backend.long_polls else 2
        claims: deque[tuple[Future[list[ClaimedJob]], int]] = deque()  # in flight, oldest first
        idle_backoff = 0.0
        error_backoff = 0.0

        def landed(_: Future[list[ClaimedJob]]) -> None:
            with self._cond:
                self._cond.notify_all()

        try:
            while not self._stopping.is_set():
                with self._cond:
                    n = 0
                    partial_since: float | None = None
                    while not self._stopping.is_set():
                        if claims and claims[0][0].done():
                            break
                        asked = sum(k for _, k in claims)
                        n = claim_size(opts.concurrency, self._handling, len(self._running), asked,
                                       opts.batch_size)
                        if len(claims) < depth and n:
                            # Handlers of a batch return one by one: give the rest a moment so the claim
                            # asks for a whole batch instead of two halves.
                            if n >= opts.batch_size or not self._handling:
                                break
                            now = time.monotonic()
                            partial_since = partial_since or now
                            if now - partial_since >= PARTIAL_CLAIM_WAIT_SECS:
                                break
                            self._cond.wait(PARTIAL_CLAIM_WAIT_SECS)
                            continue
                        self._claims_waiting = True
                        self._cond.wait()
                        self._claims_waiting = False
                if self._stopping.is_set():
                    return
                if not (claims and claims[0][0].done()):
                    claim = self._backend.claim(n, opts.claim_wait_secs)
                    claims.append((claim, n))
                    claim.add_done_callback(landed)
                    continue
                claim, _ = claims.popleft()
                try:
                    jobs = claim.result()
                    error_backoff = 0.0
                except SpooledError as exc:
                    self._emit("error", exc)
                    delay = exc.retry_after if isinstance(exc, RateLimitError) and exc.retry_after else None
                    error_backoff = min(max(error_backoff * 2, 0.5), 10.0)
                    self._stopping.wait(delay or error_backoff)
                    continue
                self._start_jobs(jobs)
                if jobs:
                    idle_backoff = 0.0
                elif not self._backend.long_polls:
                    # ProcessJobs answers at once; poll again with a growing pause, capped low for latency.
                    idle_backoff = min(max(idle_backoff * 2, 0.005), 0.25)
                    self._stopping.wait(idle_backoff)
        finally:
            # Stopping with claims on the wire: let them land; their jobs run or are released at shutdown.
            for claim, _ in claims:
                try:
                    jobs = claim.result(timeout=opts.claim_wait_secs + 5)
                except Exception:  # the stream broke or the reply never came: the leases expire
                    continue
                self._start_jobs(jobs)

    def _start_jobs(self, jobs: list[ClaimedJob]) -> None:
        renewal = time.monotonic() + self.options.heartbeat_interval
        started = [_Running(job=job, ctx=JobContext(job, self), next_renewal=renewal) for job in jobs]
        # Keyed by lease: a job re-claimed after its lease expired is a new attempt, the old one
        # must still be found (and fenced) by the lease keeper.
        with self._cond:
            for running in started:
                self._running[running.job.lease_id] = running
            self._handling += len(started)
        assert self._pool is not None
        for running in started:
            self._emit("job:claimed", running.job)
            self._pool.submit(self._execute, running)

    def _execute(self, running: _Running) -> None:
        self._own_thread.active = True
        job, ctx = running.job, running.ctx
        assert self._handler is not None and self._pool is not None
        self._emit("job:started", job)
        error: BaseException | None = None
        result: Any = None
        try:
            result = self._handler(ctx)
        except Exception as exc:
            error = exc
        finally:
            # The slot is free for the next claim now; the settlement below may still be on the wire.
            with self._cond:
                running.handling = False
                self._handling -= 1
                self._wake_claims()
        sent: _Settling | None = None
        try:
            with running.lock:
                if running.lost or running.abandoned:
                    return  # someone else owns the job now; settling would be refused anyway
                running.settling = True
            if error is None:
                sent = self._backend.send_complete(job, result)
            else:
                retry = not isinstance(error, NonRetryableError)
                sent = self._backend.send_fail(job, error_text(error), retry)
        except Exception as exc:  # e.g. an unencodable result: the lease runs out and the job is retried
            self._emit("error", exc)
        finally:
            if sent is None:
                self._done(running)
        if sent is not None:
            # This thread goes back to the pool; the reply is read where it lands (a batch's replies land
            # together on the settler's thread), unless the stream broke: the unary fallback then runs on a
            # pool thread.
            sent.add_done_callback(lambda landed: self._landed(running, result, error, landed))

    def _landed(self, running: _Running, result: Any, error: BaseException | None, sent: _Settling) -> None:
        if isinstance(sent.exception(), NetworkError):
            assert self._pool is not None
            self._pool.submit(self._settled, running, result, error, sent)
        else:
            self._settled(running, result, error, sent)

    def _done(self, running: _Running) -> None:
        with self._cond:
            self._running.pop(running.job.lease_id, None)
            self._wake_claims()

    def _wake_claims(self) -> None:
        """A slot or a held job was given back (call with ``_cond`` held). One wake-up per wait of the claim
        loop, not one per job: a batch finishing at once would otherwise wake it a hundred times. Shutdown
        waits on the same condition and is always woken."""
        if self._claims_waiting or self._stopping.is_set():
            self._claims_waiting = False
            self._cond.notify_all()

    def _settled(
        self, running: _Running, result: Any, error: BaseException | None, sent: _Settling
    ) -> None:
        self._own_thread.active = True  # a listener here may call stop(): it must not wait for itself
        job = running.job
        try:
            if error is None:
                self._backend.finish_complete(job, result, sent)
                self._emit("job:completed", job, result)
            else:
                will_retry = self._backend.finish_fail(
                    job, error_text(error), not isinstance(error, NonRetryableError), sent
                )
                self._emit("job:failed", job, error, will_retry)
        except SpooledError as exc:
            if already_finished(exc):
                if error is None:
                    self._emit("job:completed", job, result)
                else:
                    self._emit("job:failed", job, error, None)
            elif is_lease_lost(exc):
                running.lost = True
                running.ctx._cancel()
                self._emit("job:lease_lost", job, exc)
            else:
                self._emit("error", exc)
        finally:
            self._done(running)

    def _keep_leases(self) -> None:
        """Renews leases of running jobs; sends worker heartbeats (which may ask the worker to drain)."""
        self._own_thread.active = True
        next_worker_beat = time.monotonic() + self.options.worker_heartbeat_interval
        tick = min(1.0, self.options.heartbeat_interval / 4)
        while not self._leases_kept.wait(tick):
            now = time.monotonic()
            with self._cond:
                due = [r for r in self._running.values() if r.next_renewal <= now]
            for running in due:
                with running.lock:
                    if running.settling or running.lost or running.abandoned:
                        continue
                try:
                    self._backend.renew(running.job)
                    running.next_renewal = time.monotonic() + self.options.heartbeat_interval
                except SpooledError as exc:
                    if renewal_refused(exc):
                        with running.lock:
                            if running.settling:
                                continue
                            running.lost = True
                        running.ctx._cancel()
                        self._emit("job:lease_lost", running.job, exc)
                    else:
                        running.next_renewal = time.monotonic() + 1.0
                        self._emit("error", exc)
            if now >= next_worker_beat and not self._stopping.is_set():
                next_worker_beat = now + self.options.worker_heartbeat_interval
                try:
                    if self._backend.heartbeat(self.active_jobs, self._stopping.is_set()):
                        self._request_stop("server asked the worker to drain")
                except SpooledError as exc:
                    self._emit("error", exc)

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.options.shutdown_timeout
        with self._cond:
            while self._running and not self._force and time.monotonic() < deadline:
                self._cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            leftovers = list(self._running.values())
        for running in leftovers:
            with running.lock:
                if not running.settling:
                    running.abandoned = True
            if running.abandoned:
                running.ctx._cancel()
        try:
            # Deregistering hands every job still leased to this worker back to pending, retry count intact.
            self._backend.deregister()
            for running in leftovers:
                if running.abandoned:
                    self._emit("job:released", running.job)
        except SpooledError as exc:
            self._emit("error", exc)
        finally:
            self._backend.close()
            if self._pool is not None:
                self._pool.shutdown()
