"""The gRPC server inside `spooled-server serve`: started and stopped by the app's lifespan.

Every server process (granian worker) runs its own grpc.aio server on GRPC_PORT with SO_REUSEPORT, so the
kernel spreads connections over the processes as it does for the REST port.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..config import ConfigError
from ..core.context import Core
from ._generated import spooled_pb2 as pb
from ._generated import spooled_pb2_grpc as pb_grpc
from .runtime import Runtime
from .service import QueueService, WorkerService

log = logging.getLogger("spooled_server.grpc")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SERVICES = tuple(s.full_name for s in pb.DESCRIPTOR.services_by_name.values())
SESSION_DRAIN_SECS = 3.0
STOP_GRACE_SECS = 2.0
TASK_DRAIN_SECS = 5.0

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 1),
    # Workers keep streams open for hours: let them ping to keep NATs and proxies from dropping idle streams.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]


def bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def server_credentials(core: Core) -> grpc.ServerCredentials | None:
    s = core.settings
    if not s.grpc_tls_enabled:
        return None
    if not s.grpc_tls_cert_path or not s.grpc_tls_key_path:
        raise ConfigError("GRPC_TLS_ENABLED needs GRPC_TLS_CERT_PATH and GRPC_TLS_KEY_PATH")
    cert = Path(s.grpc_tls_cert_path).read_bytes()
    key = Path(s.grpc_tls_key_path).read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


class GrpcServer:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.runtime = Runtime(core)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        s = self.core.settings
        server = grpc.aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_QueueServiceServicer_to_server(QueueService(self.runtime), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_WorkerServiceServicer_to_server(WorkerService(self.runtime), server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = bind_address(s.host, s.grpc_port)
        credentials = server_credentials(self.core)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await server.start()
        self.server = server
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC listening on %s%s", address, " (TLS)" if credentials is not None else "")

    async def stop(self) -> None:
        """Stop claiming, release undelivered jobs, end streams with UNAVAILABLE, then stop the server."""
        if self.server is None:
            return
        await self.health.enter_graceful_shutdown()
        self.runtime.begin_shutdown()
        await self.runtime.wait_sessions(SESSION_DRAIN_SECS)
        # Streams still open now have a client that stopped reading: the stop cuts them off, and each one
        # releases its undelivered jobs on the way out.
        await self.server.stop(STOP_GRACE_SECS)
        await self.runtime.wait_sessions(SESSION_DRAIN_SECS)
        await self.runtime.drain(TASK_DRAIN_SECS)
        self.server = None


@contextlib.asynccontextmanager
async def grpc_lifespan(app: Any, core: Core) -> AsyncIterator[None]:
    """LIFESPAN_HOOKS entry: serve gRPC while the app runs (GRPC_ENABLED=false turns it off)."""
    if not core.settings.grpc_enabled:
        yield
        return
    server = GrpcServer(core)
    await server.start()
    try:
        yield
    finally:
        await server.stop()
