"""The web dashboard's static assets (rest.md §16 is its JSON; this serves the UI at `/dashboard`).

Files are read once from `spooled_server/dashboard/` and served from memory with an ETag, under a strict
Content-Security-Policy: the page talks only to this server, and loads nothing from anywhere else.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from litestar import Request, Response, get

from ..core.errors import NotFound

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@cache
def _asset(name: str) -> tuple[bytes, str, str] | None:
    path = (DASHBOARD_DIR / name).resolve()
    if path.parent != DASHBOARD_DIR or path.suffix not in CONTENT_TYPES or not path.is_file():
        return None
    body = path.read_bytes()
    return body, CONTENT_TYPES[path.suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    asset = _asset(name)
    if asset is None:
        raise NotFound()
    body, content_type, etag = asset
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Content-Security-Policy": CSP}
    if request.headers.get("if-none-match") == etag:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type=content_type, headers=headers)


@get("/dashboard", operation_id="dashboard_ui", include_in_schema=False)
async def dashboard_index(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _serve(request, "index.html")


@get("/dashboard/{name:str}", operation_id="dashboard_asset", include_in_schema=False)
async def dashboard_asset(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    return _serve(request, name)


ROUTES = [dashboard_index, dashboard_asset]
