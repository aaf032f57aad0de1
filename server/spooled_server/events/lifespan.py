"""Lifespan hook: starts the cross-replica fan-out and the realtime hub, and stops them in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from ..core.context import Core
from ..db.database import asyncpg_dsn
from .fanout import make_fanout
from .realtime import RealtimeHub

log = logging.getLogger(__name__)

HOUSEKEEPING_SECS = 5.0


@contextlib.asynccontextmanager
async def lifespan(app: Any, core: Core) -> AsyncIterator[None]:
    fanout = make_fanout(core.settings, core.bus, asyncpg_dsn(core.db.database_url))
    await fanout.start()
    hub = RealtimeHub(core.bus, fanout)
    app.state.realtime = hub
    if fanout.backend == "redis" and getattr(core, "cache_health", None) is None:
        core.cache_health = fanout.health
    log.info("realtime fan-out: %s", fanout.backend)

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECS)
            hub.housekeeping()

    task = asyncio.create_task(housekeeping(), name="realtime-housekeeping")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        hub.close()
        await fanout.stop()
