"""Retry policy: only safe requests are repeated, with bounded jittered backoff and Retry-After."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from spooled import AsyncSpooledClient, NotFoundError, RateLimitError, RetryPolicy, ServerError, SpooledClient
from spooled._retry import is_safe

BASE = "http://spooled.test"
JOB = {"id": "j1", "created": True}


def err(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps({"code": code, "message": code}).encode(), headers=headers
    )


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr("spooled._transport.time.sleep", recorded.append)
    return recorded


@respx.mock
def test_get_is_retried_until_the_limit_then_raises(sleeps: list[float]) -> None:
    route = respx.get(f"{BASE}/api/v1/jobs/stats").mock(return_value=err(503, "SERVICE_UNAVAILABLE"))
    with SpooledClient("k", base_url=BASE, max_retries=3) as client, pytest.raises(ServerError):
        client.jobs.stats()
    assert route.call_count == 4  # first attempt + 3 retries
    policy = RetryPolicy()
    assert len(sleeps) == 3
    assert all(0 <= s <= min(policy.max_backoff, policy.initial_backoff * 2**i) for i, s in enumerate(sleeps))


@respx.mock
def test_get_recovers_after_transient_failures(sleeps: list[float]) -> None:
    stats = {
        "pending": 1,
        "scheduled": 0,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "deadletter": 0,
        "cancelled": 0,
        "total": 1,
    }
    route = respx.get(f"{BASE}/api/v1/jobs/stats").mock(
        side_effect=[httpx.ConnectError("down"), err(502, "BAD_GATEWAY"), httpx.Response(200, json=stats)]
    )
    with SpooledClient("k", base_url=BASE) as client:
        assert client.jobs.stats().pending == 1
    assert route.call_count == 3 and len(sleeps) == 2


@respx.mock
def test_post_without_idempotency_key_is_never_retried(sleeps: list[float]) -> None:
    route = respx.post(f"{BASE}/api/v1/jobs").mock(return_value=err(503, "SERVICE_UNAVAILABLE"))
    with SpooledClient("k", base_url=BASE, max_retries=5) as client, pytest.raises(ServerError):
        client.jobs.create(queue_name="q", payload={})
    assert route.call_count == 1 and sleeps == []


@respx.mock
def test_post_with_idempotency_key_is_retried(sleeps: list[float]) -> None:
    route = respx.post(f"{BASE}/api/v1/jobs").mock(
        side_effect=[
            httpx.ReadTimeout("lost reply"),
            httpx.Response(200, json={"id": "j1", "created": False}),
        ]
    )
    with SpooledClient("k", base_url=BASE) as client:
        assert client.jobs.create(queue_name="q", payload={}, idempotency_key="k-1").id == "j1"
    assert route.call_count == 2
    sent = json.loads(route.calls[1].request.content)
    assert sent["idempotency_key"] == "k-1"


@respx.mock
def test_429_retry_after_is_honoured_even_for_unkeyed_post(sleeps: list[float]) -> None:
    route = respx.post(f"{BASE}/api/v1/jobs").mock(
        side_effect=[err(429, "RATE_LIMIT_EXCEEDED", {"Retry-After": "2"}), httpx.Response(201, json=JOB)]
    )
    with SpooledClient("k", base_url=BASE) as client:
        assert client.jobs.create(queue_name="q", payload={}).id == "j1"
    assert route.call_count == 2
    assert 2.0 <= sleeps[0] <= 2.1


@respx.mock
def test_quota_429_and_long_retry_after_are_not_retried(sleeps: list[float]) -> None:
    quota = respx.get(f"{BASE}/api/v1/jobs/stats").mock(return_value=err(429, "QUOTA_EXCEEDED"))
    with SpooledClient("k", base_url=BASE) as client, pytest.raises(RateLimitError) as info:
        client.jobs.stats()
    assert quota.call_count == 1 and info.value.is_quota
    long = respx.get(f"{BASE}/api/v1/jobs/j9").mock(
        return_value=err(429, "RATE_LIMIT_EXCEEDED", {"Retry-After": "600"})
    )
    with SpooledClient("k", base_url=BASE) as client, pytest.raises(RateLimitError) as info2:
        client.jobs.get("j9")
    assert long.call_count == 1 and info2.value.retry_after == 600.0 and sleeps == []


@respx.mock
def test_client_errors_are_not_retried_and_max_retries_zero_disables(sleeps: list[float]) -> None:
    bad = respx.get(f"{BASE}/api/v1/jobs/x").mock(return_value=err(404, "NOT_FOUND"))
    down = respx.get(f"{BASE}/api/v1/jobs/y").mock(return_value=err(500, "INTERNAL_ERROR"))
    with SpooledClient("k", base_url=BASE, max_retries=3) as client, pytest.raises(NotFoundError):
        client.jobs.get("x")
    with SpooledClient("k", base_url=BASE, max_retries=0) as client, pytest.raises(ServerError):
        client.jobs.get("y")
    assert bad.call_count == 1 and down.call_count == 1 and sleeps == []


@respx.mock
async def test_async_client_retries_safe_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("spooled._transport.asyncio.sleep", no_sleep)
    route = respx.get(f"{BASE}/api/v1/jobs/stats").mock(return_value=err(503, "SERVICE_UNAVAILABLE"))
    async with AsyncSpooledClient("k", base_url=BASE, max_retries=2) as client:
        with pytest.raises(ServerError):
            await client.jobs.stats()
    assert route.call_count == 3 and len(waits) == 2


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_retries=10, initial_backoff=0.5, max_backoff=4.0)
    samples = [policy.backoff(n) for n in range(10) for _ in range(50)]
    assert max(samples) <= 4.0 and min(samples) >= 0.0
    assert len({round(s, 6) for s in samples}) > 100  # jitter: not a fixed ladder


def test_safety_rule() -> None:
    assert is_safe("GET", has_idempotency_key=False)
    assert is_safe("PUT", has_idempotency_key=False)
    assert is_safe("DELETE", has_idempotency_key=False)
    assert not is_safe("POST", has_idempotency_key=False)
    assert is_safe("POST", has_idempotency_key=True)
