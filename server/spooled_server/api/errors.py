"""One place that turns every failure into the contract's error body `{code, message, details}`."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)

from ..core.errors import RateLimited, SpooledError

log = logging.getLogger("spooled_server.api")
_ENCODER = msgspec.json.Encoder()

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "ACCESS_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def error_response(
    status: int, code: str, message: str, details: Any = None, extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {"code": code, "message": message, "details": details}
    if extra:
        body.update(extra)
    return Response(content=_ENCODER.encode(body), status_code=status, media_type="application/json",
                    headers=headers)


def handle_spooled_error(_request: Request[Any, Any, Any], exc: SpooledError) -> Response[bytes]:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {
            "Retry-After": str(exc.retry_after),
            "X-RateLimit-Limit": str(exc.limit),
            "X-RateLimit-Remaining": str(exc.remaining),
            "X-RateLimit-Reset": str(exc.reset_at),
        }
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.extra, headers)


def handle_http_exception(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if isinstance(exc, NotFoundException):
        return error_response(404, "NOT_FOUND", "No route matches this path")
    if isinstance(exc, MethodNotAllowedException):
        return error_response(405, "METHOD_NOT_ALLOWED", "Method not allowed for this path",
                              headers=dict(exc.headers or {}))
    if isinstance(exc, ValidationException):
        return error_response(400, "BAD_REQUEST", "Invalid request parameters")
    if status == 413:
        return error_response(413, "PAYLOAD_TOO_LARGE", "Request body too large")
    code = _STATUS_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    message = exc.detail if status < 500 else "Internal server error"
    return error_response(status, code, message)


def handle_database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, (OSError, asyncpg.exceptions.CannotConnectNowError,
                        asyncpg.exceptions.ConnectionDoesNotExistError)):
        log.error("database unreachable: %s", exc)
        return error_response(503, "SERVICE_UNAVAILABLE", "The database is unreachable")
    log.exception("database error on %s %s", request.method, request.url.path)
    return error_response(500, "DATABASE_ERROR", "A database error occurred")


def handle_internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, asyncpg.exceptions.DataError):
        # Input PostgreSQL cannot store (a NUL character, a number out of range): the caller's fault.
        return error_response(400, "VALIDATION_ERROR", "body: contains a value that cannot be stored",
                              [{"field": "body", "message": "contains a value that cannot be stored",
                                "code": "invalid"}])
    if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        return handle_database_error(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "INTERNAL_ERROR", "Internal server error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    SpooledError: handle_spooled_error,
    HTTPException: handle_http_exception,
    Exception: handle_internal_error,
}
