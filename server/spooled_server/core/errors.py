"""Domain errors. `core/` raises these; each edge (REST, gRPC) maps them to its own status codes.

Every error carries the contract's stable `code`; the REST status and the gRPC status are decided at the edge.
"""

from __future__ import annotations

from typing import Any


class SpooledError(Exception):
    """Base of every error a user can cause."""

    status = 500
    code = "INTERNAL_ERROR"
    default_message = "Internal server error"

    def __init__(
        self, message: str | None = None, *, details: Any = None, extra: dict[str, Any] | None = None
    ):
        self.message = message or self.default_message
        self.details = details
        self.extra = extra or {}
        super().__init__(self.message)


class ValidationFailed(SpooledError):
    """A field breaks a rule (range, pattern, length)."""

    status = 400
    code = "VALIDATION_ERROR"
    default_message = "Validation failed"

    def __init__(self, field: str, reason: str, *, rule: str = "invalid") -> None:
        super().__init__(f"{field}: {reason}", details=[{"field": field, "message": reason, "code": rule}])
        self.field = field


class ShapeInvalid(SpooledError):
    """The body has the wrong shape: a missing required field or a wrong JSON type (422)."""

    status = 422
    code = "VALIDATION_ERROR"

    def __init__(self, field: str, reason: str, *, rule: str) -> None:
        super().__init__(f"{field}: {reason}", details=[{"field": field, "message": reason, "code": rule}])


class InvalidJson(SpooledError):
    status = 400
    code = "INVALID_JSON"
    default_message = "Request body is not valid JSON"


class BadRequest(SpooledError):
    status = 400
    code = "BAD_REQUEST"
    default_message = "Bad request"


class Unauthorized(SpooledError):
    status = 401
    code = "UNAUTHORIZED"
    default_message = "Invalid or missing credentials"


class AccessDenied(SpooledError):
    status = 403
    code = "ACCESS_DENIED"
    default_message = "Access denied"


class FeatureDisabled(SpooledError):
    status = 403
    code = "FEATURE_DISABLED"
    default_message = "This feature is not available on the current plan"


class NotFound(SpooledError):
    status = 404
    code = "NOT_FOUND"
    default_message = "Resource not found"


class Conflict(SpooledError):
    status = 409
    code = "CONFLICT"
    default_message = "Conflict"


class LeaseExpired(SpooledError):
    status = 409
    code = "LEASE_EXPIRED"
    default_message = "Lease expired"


class PayloadTooLarge(SpooledError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    default_message = "Payload too large"


class UnsupportedMediaType(SpooledError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "Content-Type must be application/json"


class QuotaExceeded(SpooledError):
    status = 429
    code = "QUOTA_EXCEEDED"
    default_message = "Quota exceeded"


class RateLimited(SpooledError):
    status = 429
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "Rate limit exceeded"

    def __init__(self, retry_after: int, limit: int, remaining: int, reset_at: int) -> None:
        super().__init__(
            "Rate limit exceeded, retry later",
            extra={"retry_after_secs": retry_after, "limit": limit, "remaining": remaining,
                   "reset_at": reset_at},
        )
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining
        self.reset_at = reset_at


class ServiceUnavailable(SpooledError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    default_message = "Service unavailable"
