"""Health, readiness, liveness, Prometheus metrics and the OpenAPI document (rest.md §1)."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from litestar import Request, Response, get
from litestar.openapi.plugins import ScalarRenderPlugin
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__, metrics
from .http import core_of, json_response

STARTED = time.time()


async def health_body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    core = core_of(request)
    database = await core.db.ping()
    cache_ok = True
    cache = getattr(core, "cache_health", None)
    if cache is not None:
        cache_ok = bool(await cache())
    return {
        "status": "healthy" if database else "degraded",
        "database": database,
        "cache": cache_ok,
        "version": __version__,
        "uptime_seconds": int(time.time() - STARTED),
    }


@get("/health", operation_id="health", include_in_schema=False)
async def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(await health_body(request))


@get("/health/live", operation_id="liveness", include_in_schema=False)
async def liveness() -> Response[bytes]:
    return Response(content=b"", status_code=200, media_type="text/plain")


@get("/health/ready", operation_id="readiness", include_in_schema=False)
async def readiness(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await health_body(request)
    return json_response(body, 200 if body["database"] else 503)


@get(["/metrics", "/api/v1/metrics", "/api/v1/metrics/prometheus"], operation_id="metrics",
     include_in_schema=False)
async def prometheus_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    core = core_of(request)
    metrics.DB_CONNECTIONS.set(core.db.pool_in_use())
    return Response(content=generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def spec_path() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "openapi" / "openapi.yaml", here.parents[1] / "openapi.yaml"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("openapi.yaml not found")


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(spec_path().read_text(encoding="utf-8"))
    return data


@get("/openapi.json", operation_id="openapi_document", include_in_schema=False)
async def openapi_document() -> Response[bytes]:
    return json_response(load_spec())


class SpecScalarPlugin(ScalarRenderPlugin):
    """Litestar's built-in Scalar UI, pointed at the hand-written contract instead of a generated schema."""

    @staticmethod
    def get_openapi_json_route(request: Request[Any, Any, Any]) -> str:
        return "/openapi.json"


@get("/docs", operation_id="api_docs", include_in_schema=False)
async def api_docs(request: Request[Any, Any, Any]) -> Response[bytes]:
    html = SpecScalarPlugin(path="/docs").render(request, load_spec())
    return Response(content=html, media_type="text/html")


ROUTES = [health, liveness, readiness, prometheus_metrics, openapi_document, api_docs]
