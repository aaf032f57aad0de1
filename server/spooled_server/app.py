"""The Litestar application. `create_app(settings)` builds it; its lifespan owns the database pools, the
wake-up channel, the background loops and (when enabled) the gRPC server."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig

from .api import route_modules
from .api.envelope import RequestEnvelope
from .api.errors import EXCEPTION_HANDLERS
from .config import Settings
from .core.auth import Authenticator
from .core.context import Core
from .core.plans import Plans
from .core.quotas import Quotas
from .core.ratelimit import RateLimits
from .db.database import Database, connect_owner
from .db.hot import install as install_hot
from .db.migrate import migrate
from .events.bus import EventBus
from .events.wakeups import Wakeups
from .hooks import LIFESPAN_HOOKS
from .logging import configure_logging
from .maintenance.runner import Maintenance

log = logging.getLogger("spooled_server")



def _load_hook(spec: str) -> Any:
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def build_core(settings: Settings) -> Core:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (the CLI starts the embedded PostgreSQL and sets it)")
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    plans = Plans(dict(os.environ) | settings.plan_overrides, settings.retention_job_days,
                  settings.retention_history_days)
    return Core(
        settings=settings,
        db=db,
        auth=Authenticator(db, settings),
        plans=plans,
        quotas=Quotas(db, plans, settings.queue_max_payload_size_bytes),
        wakeups=Wakeups(),
        bus=EventBus(),
        rate_limits=RateLimits(settings, plans),
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        assert settings is not None
        owner = await connect_owner(settings.database_url or "")
        try:
            applied = await migrate(owner)
            await install_hot(owner)
        finally:
            await owner.close()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        core = build_core(settings)
        app.state.core = core
        await core.wakeups.start(core.db.database_url)
        core.quotas.start()
        maintenance = Maintenance(core)
        app.state.maintenance = maintenance
        core.maintenance = maintenance  # type: ignore[attr-defined]
        async with contextlib.AsyncExitStack() as stack:
            for spec in LIFESPAN_HOOKS:
                await stack.enter_async_context(_load_hook(spec)(app, core))
            maintenance.start()
            log.info("spooled server ready (environment=%s)", settings.environment)
            try:
                yield
            finally:
                await maintenance.stop()
        await core.quotas.stop()
        await core.wakeups.stop()
        await core.db.dispose()

    cors = None
    if settings.is_production:
        if settings.cors_allowed_origins:
            cors = CORSConfig(allow_origins=list(settings.cors_allowed_origins), allow_credentials=True)
    else:
        cors = CORSConfig(allow_origins=["*"])

    route_handlers: list[Any] = []
    for module in route_modules():
        route_handlers.extend(module.ROUTES)

    return Litestar(
        route_handlers=route_handlers,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=cors,
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024),
        openapi_config=None,
        request_max_body_size=8 * 1024 * 1024,
        debug=False,
        logging_config=None,  # logging.py owns logging (JSON lines); Litestar's default would replace it
    )


def create_asgi(settings: Settings | None = None) -> Any:
    """What granian serves: the app inside the request envelope (request ids, timeouts, metrics)."""
    settings = settings or Settings.from_env()
    return RequestEnvelope(create_app(settings), hsts=settings.enable_hsts)
