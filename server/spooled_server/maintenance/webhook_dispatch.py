"""Lifespan hook: this replica's outgoing-webhook dispatcher, and the retention of webhook rows.

Every replica runs a dispatcher (deliveries are claimed with skip-locked semantics, so replicas share the
work); the retention of finished deliveries and ingest audit rows is a leader-only loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..core.context import Core
from ..core.plans import TIERS
from ..core.webhooks import WebhookDispatcher
from ..db.queries import Q


async def delete_old_webhook_rows(core: Core) -> int:
    """Finished deliveries and ingest audit rows older than the plan's history retention (semantics §19)."""
    plans = [core.plans.limits(t) for t in TIERS]
    async with core.db.maintenance() as conn:
        deleted = await conn.fetchval(
            Q.delete_old_webhook_rows, [p.tier for p in plans], [p.history_retention_days for p in plans]
        )
    return int(deleted or 0)


@asynccontextmanager
async def lifespan(app: Any, core: Core) -> AsyncIterator[None]:
    dispatcher = WebhookDispatcher(core)
    core.webhooks = dispatcher
    maintenance = getattr(core, "maintenance", None)
    if maintenance is not None:

        async def webhook_retention() -> int:
            return await delete_old_webhook_rows(core)

        maintenance.add_loop("webhook-retention", core.settings.stale_worker_interval_secs, webhook_retention)
    await dispatcher.start()
    try:
        yield
    finally:
        await dispatcher.stop()
        core.webhooks = None
