"""REST: the dashboard's JSON overview (rest.md §16)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, get

from .. import __version__
from ..core.jobs import ts
from ..core.usage import dashboard_numbers
from .health import STARTED
from .http import authenticate, core_of, json_response


async def _cache_status(core: Any) -> str:
    if not core.settings.redis_url:
        return "disabled"
    probe = getattr(core, "cache_health", None)
    if probe is None:
        return "unhealthy"
    try:
        return "healthy" if await probe() else "unhealthy"
    except Exception:
        return "unhealthy"


@get("/api/v1/dashboard", operation_id="get_dashboard")
async def get_dashboard(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    core = core_of(request)
    scope = None if principal.unrestricted else principal.queues
    async with core.db.tenant(principal.org_id) as conn:
        numbers = await dashboard_numbers(conn, principal.org_id, scope)
    database_ok = await core.db.ping()
    system = {
        "version": __version__,
        "uptime_seconds": int(time.time() - STARTED),
        "started_at": ts(datetime.fromtimestamp(STARTED, UTC)),
        "database_status": "healthy" if database_ok else "unhealthy",
        "cache_status": await _cache_status(core),
        "environment": core.settings.environment,
    }
    return json_response({"system": system, **numbers})


ROUTES = [get_dashboard]
