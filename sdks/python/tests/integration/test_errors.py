"""Each error class, produced by a real server (5xx comes from the unit tests: a healthy server has none)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from spooled import (
    AsyncSpooledClient,
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NetworkError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    SpooledClient,
    TimeoutError,
    ValidationError,
)


def test_validation_400_and_422(client: SpooledClient) -> None:
    with pytest.raises(ValidationError) as rule:
        client.jobs.create(queue_name="q", payload={}, priority=101)
    assert (rule.value.status_code, rule.value.code) == (400, "VALIDATION_ERROR")
    assert rule.value.details[0]["field"] == "priority" and rule.value.request_id
    with pytest.raises(ValidationError) as shape:
        client.jobs.create({"queue_name": "q", "payload": {}, "priority": "high"})
    assert shape.value.status_code == 422


def test_client_side_validation_before_sending(client: SpooledClient) -> None:
    with pytest.raises(ValidationError) as info:
        client.jobs.create(payload={})  # no queue_name
    assert info.value.status_code is None and "queue_name" in info.value.message


def test_authentication_401(tenant: Any) -> None:
    with (
        SpooledClient("sp_test_wrong", base_url=tenant.server.base_url) as bad,
        pytest.raises(AuthenticationError) as info,
    ):
        bad.jobs.stats()
    assert info.value.status_code == 401


def test_authorization_403(client: SpooledClient, tenant: Any) -> None:
    key = client.api_keys.create(name="scoped", queues=["mine"]).key
    with (
        SpooledClient(key, base_url=tenant.server.base_url) as scoped,
        pytest.raises(AuthorizationError) as info,
    ):
        scoped.jobs.claim("theirs", "w")
    assert (info.value.status_code, info.value.code) == (403, "ACCESS_DENIED")


def test_not_found_404_and_conflict_409(client: SpooledClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("6b3c4a9e-3f59-4a6c-9a47-0d6d3e7f2a11")
    assert missing.value.code == "NOT_FOUND"
    job_id = client.jobs.create(queue_name="q", payload={}).id
    with pytest.raises(ConflictError) as conflict:
        client.jobs.retry(job_id)  # only failed or dead-lettered jobs
    assert conflict.value.status_code == 409


def test_payload_too_large_413(client: SpooledClient) -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        client.jobs.create(queue_name="q", payload={"blob": "x" * (1024 * 1024 + 10)})
    assert info.value.status_code == 413


def test_rate_limit_429_with_retry_after(client: SpooledClient, tenant: Any) -> None:
    key = client.api_keys.create(name="slow", rate_limit=1).key
    with SpooledClient(key, base_url=tenant.server.base_url, max_retries=0) as limited:
        limited.jobs.stats()
        with pytest.raises(RateLimitError) as info:
            limited.jobs.stats()
    assert info.value.status_code == 429 and info.value.code == "RATE_LIMIT_EXCEEDED"
    assert info.value.retry_after is not None and info.value.retry_after > 0


def test_network_error_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SpooledClient("k", base_url=f"http://127.0.0.1:{port}", max_retries=1) as dead:
        with pytest.raises(NetworkError):
            dead.health.get()


def test_timeout_error_on_a_slow_request(client: SpooledClient, tenant: Any) -> None:
    with SpooledClient(
        tenant.api_key, base_url=tenant.server.base_url, timeout=0.3, max_retries=0
    ) as impatient:
        with pytest.raises(TimeoutError):
            impatient.jobs.claim("nothing-here", "w", wait_secs=3)


async def test_async_errors(aclient: AsyncSpooledClient) -> None:
    with pytest.raises(NotFoundError):
        await aclient.jobs.get("6b3c4a9e-3f59-4a6c-9a47-0d6d3e7f2a11")
    with pytest.raises(ValidationError):
        await aclient.jobs.create(queue_name="bad name!", payload={})
