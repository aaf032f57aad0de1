"""What every gRPC handler shares: the core, authentication, request rules, shutdown state, and the
background tasks that must outlive a cancelled call (releasing claimed jobs, finishing settlements)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

from ..core import jobs
from ..core import validation as v
from ..core.auth import Principal
from ..core.context import Core
from ..core.errors import BadRequest, NotFound, Unauthorized, ValidationFailed
from .status import JOB_NOT_FOUND, LEASE_REQUIRED

log = logging.getLogger("spooled_server.grpc")

T = TypeVar("T")

DEFAULT_LEASE_SECS = 300  # gRPC's default lease; REST defaults to WORKER_LEASE_DURATION_SECS (grpc.md §3)
MAX_QUEUE_NAME = 255
MAX_ERROR_BYTES = 4096
TRUNCATED = "... [truncated]"
MAX_CREDENTIAL_CHARS = 1024


def clamp(value: int, lo: int, hi: int) -> int:
    return lo if value < lo else hi if value > hi else value


def lease_secs(value: int) -> int:
    """`lease_duration_secs` / `extension_secs`: 0 means 300 s, anything else is clamped to 5..3600."""
    return DEFAULT_LEASE_SECS if value == 0 else clamp(value, 5, 3600)


def required(value: str, field: str, max_len: int = 255) -> str:
    if not value:
        raise ValidationFailed(field, "is required", rule="required")
    if len(value) > max_len:
        raise ValidationFailed(field, f"must be at most {max_len} characters", rule="length")
    return value


def queue_name(value: str) -> str:
    return v.queue_name(value, max_len=MAX_QUEUE_NAME)


def job_id(value: str) -> uuid.UUID:
    """A required job id. A malformed one names no job (NOT_FOUND, as a non-UUID path segment is in REST)."""
    if not value:
        raise ValidationFailed("job_id", "is required", rule="required")
    parsed = v.try_uuid(value)
    if parsed is None:
        raise NotFound(JOB_NOT_FOUND)
    return parsed


def lease_id(value: str) -> str:
    if not value:
        raise BadRequest(LEASE_REQUIRED)
    return value


def truncate_error(text: str) -> str:
    """`FailRequest.error` cut to 4096 bytes of UTF-8, ending in `... [truncated]` when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_ERROR_BYTES:
        return text
    keep = data[: MAX_ERROR_BYTES - len(TRUNCATED)].decode("utf-8", "ignore")
    return keep + TRUNCATED


def credential(metadata: Iterable[Any] | None) -> str:
    """The API key of a call: `x-api-key: <key>` or `authorization: Bearer <key>` metadata."""
    bearer = None
    for item in metadata or ():
        key, value = item[0], item[1]
        if isinstance(value, bytes):
            continue
        if key == "x-api-key" and value:
            return str(value).strip()
        if key == "authorization" and bearer is None:
            scheme, _, rest = str(value).partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                bearer = rest.strip()
    if bearer is None:
        raise Unauthorized("Missing credentials: send `x-api-key` or `authorization: Bearer` metadata")
    return bearer


class Runtime:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.closing = False
        self.sessions: set[Any] = set()  # open streams; each has wake() for shutdown
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.hard_payload_cap = core.settings.queue_max_payload_size_bytes

    # --- auth and limits ----------------------------------------------------------------------------------

    async def principal_for(self, key: str) -> Principal:
        if len(key) > MAX_CREDENTIAL_CHARS:
            raise Unauthorized()
        if key.startswith("eyJ"):
            raise Unauthorized("gRPC accepts API keys only; JWT access tokens are refused")
        return await self.core.auth.api_key(key)

    async def authenticate(self, metadata: Iterable[Any] | None) -> tuple[Principal, str]:
        key = credential(metadata)
        return await self.principal_for(key), key

    async def limit(self, principal: Principal) -> None:
        """The per-org (gRPC bucket) and per-key limits of one unary call."""
        limiter = self.core.rate_limits
        if limiter is not None:
            await limiter.limit_principal(principal, "grpc")

    def limit_message(self, principal: Principal) -> None:
        """The same limits for one stream message, counted in this process (no round trip per message)."""
        limiter = self.core.rate_limits
        if limiter is not None:
            limiter.check_principal(principal, "grpc")

    # --- work that must survive a cancelled call ------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def guarded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` to completion even if the calling RPC is cancelled meanwhile (a committed claim or
        settlement must not be lost half-way); the caller still sees its cancellation."""
        task = self.spawn(coro)
        return await asyncio.shield(task)

    async def claim(self, principal: Principal, queue: str, worker: str, limit: int, lease: int) -> list[Any]:
        """Claim jobs. If the call is cancelled while the claim runs, whatever it claimed is released."""
        task = self.spawn(jobs.claim_jobs(self.core, principal, queue, worker, limit, lease))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self.spawn(self._release_when_done(task, principal.org_id, worker))
            raise

    async def _release_when_done(self, task: Awaitable[list[Any]], org_id: uuid.UUID, worker: str) -> None:
        try:
            rows = await task
        except Exception:
            return
        await self.release(org_id, worker, [r["id"] for r in rows])

    def release_later(self, org_id: uuid.UUID, worker: str, ids: list[uuid.UUID]) -> None:
        if ids:
            self.spawn(self.release(org_id, worker, ids))

    async def release(self, org_id: uuid.UUID, worker: str, ids: list[uuid.UUID]) -> None:
        """Undelivered jobs back to pending now, instead of after their lease (transition 10)."""
        try:
            await jobs.release_jobs(self.core, org_id, worker, ids)
        except Exception:
            log.warning("could not release %d undelivered jobs of worker %s; their leases will expire",
                        len(ids), worker, exc_info=True)

    # --- shutdown -----------------------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        self.closing = True
        for session in list(self.sessions):
            session.wake()

    def open_session(self, session: Any) -> None:
        self.sessions.add(session)
        self._no_sessions.clear()

    def close_session(self, session: Any) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._no_sessions.set()

    async def wait_sessions(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_sessions.wait(), within)

    async def drain(self, within: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=within)
