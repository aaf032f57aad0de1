"""The outermost ASGI layer, around every HTTP request including unknown routes.

It echoes or mints `X-Request-Id`, checks `X-API-Version`, adds security headers and `X-API-Version: 1`,
enforces the 30 s request timeout (408), and records the request-duration metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import msgspec
import structlog

from .. import metrics
from ..logging import REQUEST_SCOPE

Scope = dict[str, Any]
Message = dict[str, Any]

REQUEST_TIMEOUT_SECS = 30.0
STREAMING_PREFIXES = ("/api/v1/events", "/api/v1/ws")
SLOW_REQUEST_SECS = 1.0
access_log = structlog.stdlib.get_logger("spooled_server.access")
_access_std = logging.getLogger("spooled_server.access")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# (method, route template, status) -> its API_ROUTE_DURATION series. Route templates are a closed set, and so
# are methods and statuses in practice; the cache stops growing at a fixed size in any case.
_route_durations: dict[tuple[str, str, int], Any] = {}
_ROUTE_CACHE_MAX = 4096


def _error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode({"code": code, "message": message, "details": None})


class RequestEnvelope:
    def __init__(self, app: Any, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        version = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:200]
            elif name == b"x-api-version":
                version = value.decode("latin-1").strip()
        if not request_id:
            request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        api = path.startswith("/api/v1")
        extra = [(b"x-request-id", request_id.encode("latin-1")), *_SECURITY_HEADERS]
        if self.hsts:
            extra.append(_HSTS)
        if api:
            extra.append((b"x-api-version", b"1"))
        started = time.perf_counter()
        status_holder = [500]
        response_started = [False]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started[0] = True
                status_holder[0] = message["status"]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        # Log lines made during the request carry its id: logging.add_request_context reads it from the scope.
        scope_token = REQUEST_SCOPE.set(scope)
        streaming = path.startswith(STREAMING_PREFIXES)
        try:
            if api and version and version.lstrip("-").isdigit() and int(version) != 1:
                await self._reject(send_with_headers, 400, "BAD_REQUEST", "Unsupported X-API-Version")
                return
            if streaming:
                # Event streams are never gzipped: the compressor would hold frames back.
                scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
                await self.app(scope, receive, send_with_headers)
                return
            try:
                # asyncio.timeout runs the app in this task (wait_for would start a second task per request).
                async with asyncio.timeout(REQUEST_TIMEOUT_SECS):
                    await self.app(scope, receive, send_with_headers)
            except TimeoutError:
                if not response_started[0]:
                    await self._reject(send_with_headers, 408, "REQUEST_TIMEOUT", "Request timed out")
        finally:
            elapsed = time.perf_counter() - started
            metrics.API_REQUESTS.inc()
            if not streaming:  # a 30-minute stream is not a slow request
                metrics.API_DURATION.observe(elapsed)
                route = scope.get("path_template") or "unmatched"
                key = (scope["method"], route, status_holder[0])
                child = _route_durations.get(key)
                if child is None:  # labels() validates and locks on every call: look each series up once
                    child = metrics.API_ROUTE_DURATION.labels(key[0], route, str(key[2]))
                    if len(_route_durations) < _ROUTE_CACHE_MAX:
                        _route_durations[key] = child
                child.observe(elapsed)
            self._log(scope, status_holder[0], elapsed, streaming)
            REQUEST_SCOPE.reset(scope_token)

    @staticmethod
    def _log(scope: Scope, status: int, elapsed: float, streaming: bool) -> None:
        """One JSON line per request: server errors and slow requests at warning/info, the rest at debug."""
        if status >= 500:
            level = logging.WARNING
        elif elapsed >= SLOW_REQUEST_SECS and not streaming:
            level = logging.INFO
        else:
            level = logging.DEBUG
        if not _access_std.isEnabledFor(level):
            return
        access_log.log(level, "request", method=scope["method"], path=scope["path"], status=status,
                       route=scope.get("path_template"), duration_ms=round(elapsed * 1000, 3))

    @staticmethod
    async def _reject(send: Any, status: int, code: str, message: str) -> None:
        body = _error_body(code, message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
