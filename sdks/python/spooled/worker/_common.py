"""Pieces shared by the blocking and asyncio workers: options, the claimed-job record, events."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import _constants as c
from .._version import __version__
from ..errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SpooledError,
    ValidationError,
)

Transport = Literal["rest", "grpc"]

#: Lifecycle events a worker emits, with the arguments handlers receive.
EVENTS = (
    "started",  # (worker_id)
    "stopping",  # (reason)
    "stopped",  # ()
    "job:claimed",  # (job)
    "job:started",  # (job)
    "job:progress",  # (job, percent, message)
    "job:completed",  # (job, result)
    "job:failed",  # (job, error: BaseException, will_retry: bool | None)
    "job:lease_lost",  # (job, error)  the server gave the job to someone else; its result is dropped
    "job:released",  # (job)  handed back at shutdown without using a retry
    "error",  # (error: BaseException)  a worker-level failure (claim, heartbeat); the worker keeps going
)

MAX_ERROR_CHARS = 2048
_WORKER_ID_BAD = re.compile(r"[^A-Za-z0-9._-]")
log = logging.getLogger("spooled.worker")


@dataclass
class ClaimedJob:
    """A job this worker holds a lease on."""

    id: str
    queue_name: str
    payload: Any
    retry_count: int
    max_retries: int
    timeout_seconds: int
    lease_id: str
    lease_expires_at: dt.datetime | None = None

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry, ..."""
        return self.retry_count + 1


@dataclass
class WorkerOptions:
    queue_name: str
    concurrency: int = 5
    transport: Transport = "rest"
    worker_id: str = ""
    lease_duration_secs: int = 0
    heartbeat_interval: float = 0.0
    worker_heartbeat_interval: float = 10.0
    claim_wait_secs: float = c.DEFAULT_CLAIM_WAIT_SECS
    shutdown_timeout: float = c.DEFAULT_SHUTDOWN_TIMEOUT
    batch_size: int = 0
    register: bool = True
    hostname: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    install_signal_handlers: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.transport not in ("rest", "grpc"):
            raise ValueError("transport must be 'rest' or 'grpc'")
        if not self.worker_id:
            self.worker_id = default_worker_id()
        if not self.lease_duration_secs:
            self.lease_duration_secs = (
                c.DEFAULT_GRPC_LEASE_SECS if self.transport == "grpc" else c.DEFAULT_WORKER_LEASE_SECS
            )
        if not 5 <= self.lease_duration_secs <= 3600:
            raise ValueError("lease_duration_secs must be within 5..3600")
        if not self.heartbeat_interval:
            # Renew at about half the lease, so one lost renewal still leaves time for the next.
            self.heartbeat_interval = self.lease_duration_secs / 2
        self.claim_wait_secs = max(0.0, min(self.claim_wait_secs, c.MAX_CLAIM_WAIT_SECS))
        self.batch_size = max(1, min(self.batch_size or self.concurrency, 100))
        self.hostname = self.hostname or _hostname()


def default_worker_id() -> str:
    return _WORKER_ID_BAD.sub("-", f"{_hostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")[:128]


def _hostname() -> str:
    name = _WORKER_ID_BAD.sub("-", socket.gethostname() or "localhost").strip(".-")
    return name[:255] or "localhost"


def registration_fields(options: WorkerOptions) -> dict[str, Any]:
    return {
        "worker_id": options.worker_id,
        "queue_name": options.queue_name,
        "hostname": options.hostname,
        "worker_type": "python",
        "max_concurrency": min(options.concurrency, 100),
        "version": __version__,
        "metadata": dict(options.metadata),
    }


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def is_lease_lost(error: SpooledError) -> bool:
    """The job is no longer ours: lease expired or superseded, or the job is gone/not assigned to us."""
    if isinstance(error, ConflictError):
        return error.code == "LEASE_EXPIRED" or not already_finished(error)
    return isinstance(error, NotFoundError)


def renewal_refused(error: SpooledError) -> bool:
    """A lease renewal was refused for good: expired, superseded, or the job already finished (possibly
    by a later attempt of this very worker after a requeue). Either way this attempt must stop."""
    return isinstance(error, ConflictError | NotFoundError)


def already_finished(error: SpooledError) -> bool:
    """409 ``Job is already <status>``: a replayed settlement whose first attempt landed."""
    return isinstance(error, ConflictError) and error.code == "CONFLICT" and "already" in error.message


def inband_error(code: str, message: str) -> SpooledError:
    """The SDK error for a ProcessJobs in-band ``error`` reply (grpc.md §5)."""
    classes: dict[str, type[SpooledError]] = {
        "LEASE_EXPIRED": ConflictError,
        "NOT_FOUND": NotFoundError,
        "INVALID_ARGUMENT": ValidationError,
        "INVALID_REQUEST": ValidationError,
        "UNAUTHENTICATED": AuthenticationError,
        "PERMISSION_DENIED": AuthorizationError,
        "RATE_LIMIT_EXCEEDED": RateLimitError,
        "INTERNAL": ServerError,
    }
    cls = classes.get(code, SpooledError)
    return cls(message or code, code=code)


def parse_time(value: Any) -> dt.datetime | None:
    return value if isinstance(value, dt.datetime) else None


Listener = Callable[..., Any]


class EventEmitter:
    """``on(event, fn)``; a failing listener is logged, never allowed to break the worker."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener | None = None) -> Any:
        if event not in EVENTS and event != "*":
            raise ValueError(f"unknown worker event {event!r}; one of {', '.join(EVENTS)}")

        def register(fn: Listener) -> Listener:
            self._listeners.setdefault(event, []).append(fn)
            return fn

        return register(listener) if listener is not None else register

    def off(self, event: str, listener: Listener) -> None:
        if listener in self._listeners.get(event, []):
            self._listeners[event].remove(listener)
            if not self._listeners[event]:
                del self._listeners[event]

    def wants(self, event: str) -> bool:
        """Whether ``event`` has a listener: a worker skips building an event nobody hears (per job)."""
        return event in self._listeners or "*" in self._listeners

    def calls(self, event: str, args: tuple[Any, ...]) -> list[tuple[Listener, tuple[Any, ...]]]:
        """Listeners to call for ``event`` with their arguments (``"*"`` listeners get the name first)."""
        specific = [(fn, args) for fn in self._listeners.get(event, [])]
        return specific + [(fn, (event, *args)) for fn in self._listeners.get("*", [])]


MAX_SETTLE_BATCH = 1000  # settlements per settle_batch message (the server's limit)
SETTLE_BATCHES_IN_FLIGHT = 2  # settle_batch messages on the wire at once (the server applies them in order)


def single_settlement_request(settlement: Any) -> Any:
    """The one-message form of a ``Settlement`` (servers without ``settle_batch``)."""
    from ..grpc import pb

    if settlement.WhichOneof("settlement") == "complete":
        return pb.ProcessRequest(complete=settlement.complete)
    return pb.ProcessRequest(fail=settlement.fail)


def as_settlement_result(response: Any) -> Any:
    """A single complete/fail reply as the ``SettlementResult`` a batch would have held."""
    from ..grpc import pb

    which = response.WhichOneof("response")
    if which == "complete":
        return pb.SettlementResult(complete=response.complete)
    if which == "fail":
        return pb.SettlementResult(fail=response.fail)
    if which == "error":
        return pb.SettlementResult(error=response.error)
    return pb.SettlementResult(error=pb.ErrorResponse(code="INTERNAL", message=f"unexpected reply {which}"))


def settle_batch_request(settlements: list[Any]) -> Any:
    from ..grpc import pb

    return pb.ProcessRequest(settle_batch=pb.SettleBatchRequest(settlements=settlements))


def batch_results(response: Any, count: int) -> list[Any] | None:
    """The ``SettlementResult`` of each of ``count`` settlements from the reply to a ``settle_batch``; None
    when the server predates ``settle_batch`` (it sees an empty request and answers INVALID_REQUEST)."""
    which = response.WhichOneof("response")
    if which == "error" and response.error.code == "INVALID_REQUEST":
        return None
    if which == "settle_batch":
        results = list(response.settle_batch.results)
        if len(results) != count:
            raise ServerError(f"settle_batch answered {len(results)} results for {count} settlements",
                              code="INTERNAL")
        return results
    return [as_settlement_result(response)] * count  # the whole message was refused (a rate limit)


def claim_size(concurrency: int, handling: int, held: int, asked: int, batch_size: int) -> int:
    """How many jobs the claim loop asks for now; 0 means not now.

    Slots are counted by handlers still running (``handling``) plus jobs already asked for: a job whose
    handler has returned only waits for the server to confirm its settlement, so its slot is free at once
    and the next claim travels together with that settlement. Jobs held while their settlement is on the
    wire (``held`` counts every job the worker holds) are capped at one more concurrency's worth, so slow
    confirmations cannot pile up claims. The loop claims when nothing runs, or when at least half a batch
    of slots is free: claiming each single freed slot would cost a round trip per job under load."""
    busy = handling + asked
    free = min(concurrency - busy, 2 * concurrency - held - asked)
    if free <= 0:
        return 0
    if busy == 0 or free >= max(1, min(batch_size, concurrency) // 2):
        return min(free, batch_size)
    return 0
