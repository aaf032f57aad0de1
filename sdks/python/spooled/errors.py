"""The SDK's one error hierarchy (the same class names in every Spooled SDK).

Every error carries ``status_code`` (None when no HTTP response was received), the contract's stable
``code`` (e.g. ``"LEASE_EXPIRED"``), ``details`` (the body's ``details`` or extra keys) and ``request_id``
(the server's ``X-Request-Id``, for support tickets and logs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ConflictError",
    "NetworkError",
    "NonRetryableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "SpooledError",
    "TimeoutError",
    "ValidationError",
    "error_from_grpc",
    "error_from_response",
]


class SpooledError(Exception):
    """A call to Spooled failed."""

    default_code = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        details: Any = None,
        request_id: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or self.default_code
        self.details = details
        self.request_id = request_id
        self.body: Mapping[str, Any] = body or {}
        #: HTTP method of the failed request, when known (the retry policy reads it).
        self.method: str | None = None

    def __str__(self) -> str:
        where = f"{self.status_code} " if self.status_code is not None else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}{self.code}: {self.message}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class ValidationError(SpooledError):
    """The request broke a field rule (400) or had the wrong shape (422)."""

    default_code = "VALIDATION_ERROR"


class AuthenticationError(SpooledError):
    """The credential is missing, invalid, expired or revoked (401)."""

    default_code = "UNAUTHORIZED"


class AuthorizationError(SpooledError):
    """The credential may not do this: outside its queue scope, a control-plane route, a disabled
    feature (403)."""

    default_code = "ACCESS_DENIED"


class NotFoundError(SpooledError):
    """The resource does not exist, or belongs to another organization or scope (404)."""

    default_code = "NOT_FOUND"


class ConflictError(SpooledError):
    """The resource's state forbids this (409): a finished job, a taken slug, an expired lease
    (``code == "LEASE_EXPIRED"``)."""

    default_code = "CONFLICT"

    @property
    def lease_expired(self) -> bool:
        return self.code == "LEASE_EXPIRED"


class PayloadTooLargeError(SpooledError):
    """The payload is over the 1 MiB hard cap or the plan's cap (413)."""

    default_code = "PAYLOAD_TOO_LARGE"


class RateLimitError(SpooledError):
    """Too many requests, or a plan quota was reached (429). ``retry_after`` is in seconds when the
    server said when to come back (rate limits do; quotas do not)."""

    default_code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    @property
    def is_quota(self) -> bool:
        return self.code == "QUOTA_EXCEEDED"


class ServerError(SpooledError):
    """The server failed (5xx)."""

    default_code = "INTERNAL_ERROR"


class NetworkError(SpooledError):
    """No usable response: connection refused or reset, DNS failure, server unavailable over gRPC."""

    default_code = "NETWORK_ERROR"


class TimeoutError(SpooledError):  # the contract's name in every SDK, shadowing the builtin
    """The request did not finish within the client's timeout (or the server answered 408)."""

    default_code = "TIMEOUT"


class NonRetryableError(Exception):
    """Raise from a worker handler to fail the job without a retry.

    Over gRPC the job is dead-lettered at once (``FailRequest.retry = false``). REST has no such flag,
    so there the server's retry policy still applies; the message is recorded either way.
    """


_BY_STATUS: dict[int, type[SpooledError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    408: TimeoutError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds; HTTP dates are read as 'unknown')."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def error_from_response(
    status_code: int, content: bytes, headers: Mapping[str, str], *, fallback_request_id: str | None = None
) -> SpooledError:
    """Build the matching :class:`SpooledError` from an HTTP error response (contract error body)."""
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(content) if content else {}
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    cls = _BY_STATUS.get(status_code, ServerError if status_code >= 500 else SpooledError)
    message = str(
        body.get("message")
        or (content[:200].decode(errors="replace") if content else "")
        or f"HTTP {status_code}"
    )
    code = body.get("code") if isinstance(body.get("code"), str) else None
    # Quota and rate-limit bodies carry their facts as top-level keys next to code/message.
    details = body.get("details")
    if details is None:
        extra = {k: v for k, v in body.items() if k not in {"code", "message", "details", "error"}}
        details = extra or None
    request_id = headers.get("x-request-id") or fallback_request_id
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "code": code,
        "details": details,
        "request_id": request_id,
        "body": body,
    }
    if cls is RateLimitError:
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None and isinstance(body.get("retry_after_secs"), int | float):
            retry_after = float(body["retry_after_secs"])
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


# gRPC status name -> (error class, contract code). Names, not grpc enums, so this module needs no grpc.
_BY_GRPC: dict[str, tuple[type[SpooledError], str]] = {
    "INVALID_ARGUMENT": (ValidationError, "VALIDATION_ERROR"),
    "UNAUTHENTICATED": (AuthenticationError, "UNAUTHORIZED"),
    "PERMISSION_DENIED": (AuthorizationError, "ACCESS_DENIED"),
    "NOT_FOUND": (NotFoundError, "NOT_FOUND"),
    "ALREADY_EXISTS": (ConflictError, "CONFLICT"),
    "FAILED_PRECONDITION": (ConflictError, "CONFLICT"),
    "ABORTED": (ConflictError, "CONFLICT"),
    "RESOURCE_EXHAUSTED": (RateLimitError, "RATE_LIMIT_EXCEEDED"),
    "UNAVAILABLE": (NetworkError, "SERVICE_UNAVAILABLE"),
    "DEADLINE_EXCEEDED": (TimeoutError, "TIMEOUT"),
    "INTERNAL": (ServerError, "INTERNAL_ERROR"),
    "UNKNOWN": (ServerError, "INTERNAL_ERROR"),
    "UNIMPLEMENTED": (NotFoundError, "NOT_FOUND"),
}


def error_from_grpc(
    status_name: str, message: str, trailing: Mapping[str, str] | None = None
) -> SpooledError:
    """Map a gRPC status (by name, e.g. ``"FAILED_PRECONDITION"``) to the REST error classes."""
    cls, code = _BY_GRPC.get(status_name, (SpooledError, status_name))
    trailing = trailing or {}
    if status_name == "FAILED_PRECONDITION" and message == "Lease expired":
        code = "LEASE_EXPIRED"
    kwargs: dict[str, Any] = {"code": code, "details": {"grpc_status": status_name}}
    if cls is RateLimitError:
        if "limit reached" in message:
            kwargs["code"] = "QUOTA_EXCEEDED"
        return RateLimitError(message, retry_after=parse_retry_after(trailing.get("retry-after")), **kwargs)
    return cls(message, **kwargs)
