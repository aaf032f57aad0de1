"""Domain errors to gRPC statuses (grpc.md §6) and to ProcessJobs in-band codes (grpc.md §5)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
import grpc

from ..core.errors import (
    AccessDenied,
    BadRequest,
    Conflict,
    FeatureDisabled,
    InvalidJson,
    LeaseExpired,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    ShapeInvalid,
    SpooledError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

log = logging.getLogger("spooled_server.grpc")

# Exact texts of the contract: the official Python SDK recognizes a lost lease by "Lease expired".
LEASE_EXPIRED = "Lease expired"
JOB_NOT_FOUND = "Job not found or not authorized"
LEASE_REQUIRED = "lease_id is required for job settlement"
SHUTTING_DOWN = "Server is shutting down"
INTERNAL = "Internal server error"


class Kind:
    """What an RPC does, where one domain error maps differently (a Conflict is NOT_FOUND when settling a
    job, ALREADY_EXISTS when registering a worker id, ABORTED elsewhere)."""

    DEFAULT = "default"
    SETTLE = "settle"
    REGISTER = "register"


@dataclass(frozen=True)
class Status:
    code: grpc.StatusCode
    message: str
    trailers: tuple[tuple[str, str], ...] = ()


def _payload_status(exc: PayloadTooLarge, hard_cap: int) -> Status:
    limit = exc.extra.get("limit")
    if limit is None or limit >= hard_cap:
        return Status(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
    # The plan's cap: a quota, worded the way the SDKs tell a quota from a rate limit.
    current = exc.extra.get("current")
    return Status(grpc.StatusCode.RESOURCE_EXHAUSTED, f"payload_size_bytes limit reached ({current}/{limit})")


def to_status(exc: BaseException, *, kind: str = Kind.DEFAULT, hard_payload_cap: int = 1_048_576) -> Status:
    if isinstance(exc, LeaseExpired):
        return Status(grpc.StatusCode.FAILED_PRECONDITION, LEASE_EXPIRED)
    if isinstance(exc, NotFound):
        return Status(grpc.StatusCode.NOT_FOUND, JOB_NOT_FOUND if kind == Kind.SETTLE else exc.message)
    if isinstance(exc, Conflict):
        if kind == Kind.SETTLE:
            return Status(grpc.StatusCode.NOT_FOUND, JOB_NOT_FOUND)
        if kind == Kind.REGISTER:
            return Status(grpc.StatusCode.ALREADY_EXISTS, exc.message)
        return Status(grpc.StatusCode.ABORTED, exc.message)
    if isinstance(exc, Unauthorized):
        return Status(grpc.StatusCode.UNAUTHENTICATED, exc.message)
    if isinstance(exc, (AccessDenied, FeatureDisabled)):
        return Status(grpc.StatusCode.PERMISSION_DENIED, exc.message)
    if isinstance(exc, PayloadTooLarge):
        return _payload_status(exc, hard_payload_cap)
    if isinstance(exc, (ValidationFailed, ShapeInvalid, InvalidJson, BadRequest, UnsupportedMediaType)):
        return Status(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
    if isinstance(exc, RateLimited):
        trailers = (("retry-after", str(exc.retry_after)),)
        return Status(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, trailers)
    if isinstance(exc, QuotaExceeded):
        return Status(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
    if isinstance(exc, ServiceUnavailable):
        return Status(grpc.StatusCode.UNAVAILABLE, exc.message)
    if isinstance(exc, SpooledError):
        return Status(grpc.StatusCode.INTERNAL, INTERNAL)
    if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        log.error("database error in a gRPC call: %r", exc)
    else:
        log.error("unexpected error in a gRPC call", exc_info=exc)
    return Status(grpc.StatusCode.INTERNAL, INTERNAL)


# gRPC status -> ProcessResponse.error.code
_IN_BAND = {
    grpc.StatusCode.FAILED_PRECONDITION: "LEASE_EXPIRED",
    grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    grpc.StatusCode.PERMISSION_DENIED: "PERMISSION_DENIED",
}


def in_band(exc: BaseException, *, hard_payload_cap: int = 1_048_576) -> tuple[str, str]:
    """The (code, message) of an in-band ProcessJobs error."""
    if isinstance(exc, RateLimited):
        return "RATE_LIMIT_EXCEEDED", f"{exc.message} (retry after {exc.retry_after} s)"
    status = to_status(exc, kind=Kind.SETTLE, hard_payload_cap=hard_payload_cap)
    return _IN_BAND.get(status.code, "INTERNAL"), status.message
