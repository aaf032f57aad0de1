"""Error mapping: every contract status and gRPC status becomes the documented SDK class."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from spooled import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NetworkError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    SpooledClient,
    SpooledError,
    TimeoutError,
    ValidationError,
)
from spooled.errors import error_from_grpc, error_from_response

BASE = "http://spooled.test"


def body(code: str, message: str = "m", **extra: object) -> bytes:
    return json.dumps({"code": code, "message": message, **extra}).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "VALIDATION_ERROR", ValidationError),
        (422, "VALIDATION_ERROR", ValidationError),
        (401, "UNAUTHORIZED", AuthenticationError),
        (403, "ACCESS_DENIED", AuthorizationError),
        (403, "FEATURE_DISABLED", AuthorizationError),
        (404, "NOT_FOUND", NotFoundError),
        (408, "REQUEST_TIMEOUT", TimeoutError),
        (409, "CONFLICT", ConflictError),
        (409, "LEASE_EXPIRED", ConflictError),
        (413, "PAYLOAD_TOO_LARGE", PayloadTooLargeError),
        (429, "RATE_LIMIT_EXCEEDED", RateLimitError),
        (500, "INTERNAL_ERROR", ServerError),
        (503, "SERVICE_UNAVAILABLE", ServerError),
    ],
)
def test_status_maps_to_class_with_code_and_request_id(
    status: int, code: str, cls: type[SpooledError]
) -> None:
    error = error_from_response(status, body(code, details=[{"field": "x"}]), {"x-request-id": "rid-1"})
    assert type(error) is cls
    assert (error.status_code, error.code, error.request_id) == (status, code, "rid-1")
    assert error.details == [{"field": "x"}]
    assert isinstance(error, SpooledError)


def test_quota_keys_become_details_and_rate_limit_reads_retry_after() -> None:
    quota = error_from_response(429, body("QUOTA_EXCEEDED", resource="jobs_per_day", limit=10), {})
    assert isinstance(quota, RateLimitError) and quota.is_quota and quota.retry_after is None
    assert quota.details == {"resource": "jobs_per_day", "limit": 10}
    limited = error_from_response(429, body("RATE_LIMIT_EXCEEDED", retry_after_secs=3), {"retry-after": "7"})
    assert isinstance(limited, RateLimitError) and limited.retry_after == 7.0 and not limited.is_quota
    from_body = error_from_response(429, body("RATE_LIMIT_EXCEEDED", retry_after_secs=3), {})
    assert isinstance(from_body, RateLimitError) and from_body.retry_after == 3.0


def test_non_json_error_body_still_maps() -> None:
    error = error_from_response(502, b"<html>bad gateway</html>", {})
    assert isinstance(error, ServerError) and "bad gateway" in error.message


@pytest.mark.parametrize(
    ("name", "message", "cls", "code"),
    [
        ("FAILED_PRECONDITION", "Lease expired", ConflictError, "LEASE_EXPIRED"),
        ("ABORTED", "x", ConflictError, "CONFLICT"),
        ("UNAUTHENTICATED", "x", AuthenticationError, "UNAUTHORIZED"),
        ("PERMISSION_DENIED", "x", AuthorizationError, "ACCESS_DENIED"),
        ("INVALID_ARGUMENT", "x", ValidationError, "VALIDATION_ERROR"),
        ("NOT_FOUND", "x", NotFoundError, "NOT_FOUND"),
        ("RESOURCE_EXHAUSTED", "jobs_per_day limit reached (5/5)", RateLimitError, "QUOTA_EXCEEDED"),
        ("UNAVAILABLE", "x", NetworkError, "SERVICE_UNAVAILABLE"),
        ("DEADLINE_EXCEEDED", "x", TimeoutError, "TIMEOUT"),
        ("INTERNAL", "x", ServerError, "INTERNAL_ERROR"),
    ],
)
def test_grpc_status_mapping(name: str, message: str, cls: type[SpooledError], code: str) -> None:
    error = error_from_grpc(name, message)
    assert type(error) is cls and error.code == code


def test_grpc_rate_limit_reads_retry_after_trailer() -> None:
    error = error_from_grpc("RESOURCE_EXHAUSTED", "slow down", {"retry-after": "2"})
    assert isinstance(error, RateLimitError) and error.retry_after == 2.0 and not error.is_quota


@respx.mock
def test_client_raises_mapped_errors_from_http() -> None:
    respx.get(f"{BASE}/api/v1/jobs/j1").mock(
        return_value=httpx.Response(
            404, content=body("NOT_FOUND", "Resource not found"), headers={"X-Request-Id": "r-404"}
        )
    )
    with SpooledClient("k", base_url=BASE, max_retries=0) as client, pytest.raises(NotFoundError) as info:
        client.jobs.get("j1")
    assert info.value.request_id == "r-404" and info.value.method == "GET"


@respx.mock
def test_transport_failures_become_network_and_timeout_errors() -> None:
    respx.get(f"{BASE}/api/v1/jobs/a").mock(side_effect=httpx.ConnectError("refused"))
    respx.get(f"{BASE}/api/v1/jobs/b").mock(side_effect=httpx.ReadTimeout("slow"))
    with SpooledClient("k", base_url=BASE, max_retries=0) as client:
        with pytest.raises(NetworkError):
            client.jobs.get("a")
        with pytest.raises(TimeoutError):
            client.jobs.get("b")
