"""SpooledClient and AsyncSpooledClient: one resource object per API area."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ._retry import RetryPolicy
from ._transport import AsyncTransport, ClientConfig, SyncTransport
from .resources import _async as ra
from .resources import _sync as rs

if TYPE_CHECKING:
    from .grpc import AsyncSpooledGrpcClient, SpooledGrpcClient
    from .realtime import AsyncRealtimeClient, RealtimeClient


class SpooledClient:
    """Blocking client for the Spooled REST API.

    Arguments win over the environment: ``api_key`` (``SPOOLED_API_KEY``), ``base_url``
    (``SPOOLED_BASE_URL``, default ``http://localhost:8080``), ``grpc_address`` (``SPOOLED_GRPC_ADDRESS``,
    default ``localhost:50051``), ``admin_key`` (``SPOOLED_ADMIN_KEY``, for ``client.admin``). ``timeout``
    is per request in seconds; ``max_retries`` (or a full ``retry`` policy) bounds retries of safe
    requests. The client is thread-safe and holds a connection pool: reuse it, and close it (or use
    ``with``) when done.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        grpc_address: str | None = None,
        admin_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        grpc_secure: bool | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(
            api_key=api_key,
            base_url=base_url,
            grpc_address=grpc_address,
            admin_key=admin_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            retry=retry,
            headers=headers,
            grpc_secure=grpc_secure,
        )
        self._transport = SyncTransport(self.config, http_client)
        t = self._transport
        self.jobs = rs.Jobs(t)
        self.queues = rs.Queues(t)
        self.workers = rs.Workers(t)
        self.schedules = rs.Schedules(t)
        self.workflows = rs.Workflows(t)
        self.webhooks = rs.Webhooks(t)
        self.api_keys = rs.ApiKeys(t)
        self.organizations = rs.Organizations(t)
        self.auth = rs.Auth(t)
        self.admin = rs.Admin(t)
        self.dashboard = rs.Dashboard(t)
        self.health = rs.Health(t)
        self.metrics = rs.Metrics(t)
        self.ingest = rs.Ingest(t)
        self._grpc: SpooledGrpcClient | None = None

    @property
    def grpc(self) -> SpooledGrpcClient:
        """The gRPC client (QueueService, WorkerService) on ``grpc_address``, created on first use."""
        if self._grpc is None:
            from .grpc import SpooledGrpcClient

            self._grpc = SpooledGrpcClient(self.config)
        return self._grpc

    def realtime(self, type: Literal["sse", "websocket"] = "sse", **options: Any) -> RealtimeClient:
        """A realtime event client over SSE or WebSocket (call ``connect()`` to start it)."""
        from .realtime import RealtimeClient

        return RealtimeClient(self.config, transport=type, **options)

    def close(self) -> None:
        self._transport.close()
        if self._grpc is not None:
            self._grpc.close()

    def __enter__(self) -> SpooledClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncSpooledClient:
    """The asyncio twin of :class:`SpooledClient` (same arguments, same resources, awaitable methods)."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        grpc_address: str | None = None,
        admin_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        grpc_secure: bool | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(
            api_key=api_key,
            base_url=base_url,
            grpc_address=grpc_address,
            admin_key=admin_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            retry=retry,
            headers=headers,
            grpc_secure=grpc_secure,
        )
        self._transport = AsyncTransport(self.config, http_client)
        t = self._transport
        self.jobs = ra.AsyncJobs(t)
        self.queues = ra.AsyncQueues(t)
        self.workers = ra.AsyncWorkers(t)
        self.schedules = ra.AsyncSchedules(t)
        self.workflows = ra.AsyncWorkflows(t)
        self.webhooks = ra.AsyncWebhooks(t)
        self.api_keys = ra.AsyncApiKeys(t)
        self.organizations = ra.AsyncOrganizations(t)
        self.auth = ra.AsyncAuth(t)
        self.admin = ra.AsyncAdmin(t)
        self.dashboard = ra.AsyncDashboard(t)
        self.health = ra.AsyncHealth(t)
        self.metrics = ra.AsyncMetrics(t)
        self.ingest = ra.AsyncIngest(t)
        self._grpc: AsyncSpooledGrpcClient | None = None

    @property
    def grpc(self) -> AsyncSpooledGrpcClient:
        if self._grpc is None:
            from .grpc import AsyncSpooledGrpcClient

            self._grpc = AsyncSpooledGrpcClient(self.config)
        return self._grpc

    def realtime(self, type: Literal["sse", "websocket"] = "sse", **options: Any) -> AsyncRealtimeClient:
        from .realtime import AsyncRealtimeClient

        return AsyncRealtimeClient(self.config, transport=type, **options)

    async def aclose(self) -> None:
        await self._transport.close()
        if self._grpc is not None:
            await self._grpc.close()

    close = aclose

    async def __aenter__(self) -> AsyncSpooledClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
