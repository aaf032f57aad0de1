"""Rate limits (semantics.md §13): per organization (plan), per key (rate_limit), per client IP on public
routes, with the 429 body and headers. The in-process limiter and the client-IP rules are also checked
directly with a fake clock."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from spooled_server.config import Settings
from spooled_server.core.auth import Principal
from spooled_server.core.errors import RateLimited
from spooled_server.core.plans import Plans
from spooled_server.core.ratelimit import InMemoryBackend, RateLimits, client_ip

from ..support import ADMIN_KEY, ServerProcess, Tenant, TestDatabase, create_tenant, running_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- the in-process limiter, directly ------------------------------------------------------------


def test_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    backend = InMemoryBackend(clock=clock, wall=clock)
    decisions = [backend.take_token("org", 5.0, 10) for _ in range(11)]
    assert all(d.allowed for d in decisions[:10])
    refused = decisions[10]
    assert not refused.allowed
    assert (refused.limit, refused.remaining, refused.retry_after) == (10, 0, 1)
    assert refused.reset_at >= clock.now
    clock.now += 0.21  # one token at 5/s
    assert backend.take_token("org", 5.0, 10).allowed
    assert not backend.take_token("org", 5.0, 10).allowed
    assert backend.take_token("other", 5.0, 10).allowed  # buckets are per key
    clock.now += 100
    assert backend.take_token("org", 5.0, 10).remaining == 9  # refilled to the burst, not beyond


def test_fixed_window_counts_per_window() -> None:
    clock = FakeClock()
    clock.now = 6_000_000.0  # the start of a 60 s window
    backend = InMemoryBackend(clock=clock, wall=clock)
    assert [backend.hit_window("k", 3, 60).allowed for _ in range(4)] == [True, True, True, False]
    refused = backend.hit_window("k", 3, 60)
    assert (refused.limit, refused.remaining, refused.retry_after, refused.reset_at) == (3, 0, 60, 6_000_060)
    assert backend.hit_window("k", 3, 60, cost=0).allowed is False  # a peek
    clock.now += 60
    assert backend.hit_window("k", 3, 60, cost=0).allowed is True
    assert backend.hit_window("k", 3, 60).remaining == 2


def test_idle_entries_are_pruned() -> None:
    clock = FakeClock()
    backend = InMemoryBackend(clock=clock, wall=clock)
    for i in range(100):
        backend.take_token(f"ip-{i}", 100.0, 200)
        backend.hit_window(f"login-{i}", 5, 60)
    assert len(backend) == 200
    clock.now += 120
    backend.take_token("fresh", 100.0, 200)
    assert len(backend) == 1


async def test_limits_for_plans_and_keys() -> None:
    limiter = RateLimits(Settings(), Plans({}, 30, 30))
    org = uuid.uuid4()
    free = Principal(org_id=org, key_id=uuid.uuid4(), queues=(), plan_tier="free")
    allowed = 0
    with pytest.raises(RateLimited) as refused:
        for _ in range(50):
            await limiter.limit_principal(free, "rest")
            allowed += 1
    assert 10 <= allowed <= 12  # burst 10, plus what refills while the loop runs
    assert refused.value.limit == 10
    # gRPC has its own bucket of the same size.
    await limiter.limit_principal(free, "grpc")
    unlimited = Principal(org_id=uuid.uuid4(), key_id=uuid.uuid4(), queues=(), plan_tier="unlimited")
    for _ in range(500):
        limiter.check_principal(unlimited, "rest")
    keyed = Principal(
        org_id=uuid.uuid4(), key_id=uuid.uuid4(), queues=(), plan_tier="unlimited", rate_limit=2
    )
    limiter.check_principal(keyed, "rest")
    limiter.check_principal(keyed, "rest")
    with pytest.raises(RateLimited):
        limiter.check_principal(keyed, "rest")
    custom = Principal(
        org_id=uuid.uuid4(),
        key_id=uuid.uuid4(),
        queues=(),
        plan_tier="free",
        custom_limits={"rate_limit_requests_per_second": 0},
    )
    for _ in range(50):
        await limiter.limit_principal(custom, "rest")


def settings(**changes: object) -> Settings:
    return Settings().with_changes(**changes)


@pytest.mark.parametrize(
    ("config", "headers", "peer", "expected"),
    [
        ({}, {}, "192.0.2.1", "192.0.2.1"),
        ({}, {"x-forwarded-for": "203.0.113.9"}, "192.0.2.1", "192.0.2.1"),  # 0 hops: the peer
        ({}, {"cf-connecting-ip": "203.0.113.5", "x-real-ip": "203.0.113.6"}, "192.0.2.1", "203.0.113.5"),
        ({}, {"x-real-ip": " 203.0.113.6 "}, "192.0.2.1", "203.0.113.6"),
        ({"trusted_proxy_hops": 1}, {"x-forwarded-for": "203.0.113.9"}, "10.0.0.1", "203.0.113.9"),
        ({"trusted_proxy_hops": 1}, {"x-forwarded-for": "6.6.6.6, 203.0.113.9"}, "10.0.0.1", "203.0.113.9"),
        (
            {"trusted_proxy_hops": 2},
            {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.2"},
            "10.0.0.1",
            "203.0.113.9",
        ),
        ({"trusted_proxy_hops": 3}, {"x-forwarded-for": "203.0.113.9"}, "10.0.0.1", "203.0.113.9"),
        ({"trusted_proxy_hops": 1}, {}, "10.0.0.1", "10.0.0.1"),
        (
            {"trusted_client_ip_header": "X-Client-IP"},
            {"x-client-ip": "198.51.100.4", "x-real-ip": "6.6.6.6"},
            "10.0.0.1",
            "198.51.100.4",
        ),
        ({"trusted_client_ip_header": "X-Client-IP"}, {"x-real-ip": "6.6.6.6"}, "10.0.0.1", "10.0.0.1"),
        ({}, {"x-real-ip": "2001:db8::1"}, "10.0.0.1", "2001:db8::1"),
    ],
)
def test_client_ip_rules(
    config: dict[str, object], headers: dict[str, str], peer: str, expected: str
) -> None:
    assert client_ip(headers, peer, settings(**config)) == expected


# --- over HTTP --------------------------------------------------------------------------------


def burst_until_429(client: httpx.Client, path: str, max_requests: int) -> tuple[int, httpx.Response]:
    """Send requests until one is refused; returns how many succeeded first and the 429."""
    for i in range(max_requests):
        r = client.get(path)
        if r.status_code == 429:
            return i, r
        assert r.status_code == 200, r.text
    raise AssertionError(f"no 429 within {max_requests} requests")


def assert_rate_limited(r: httpx.Response, limit: int) -> None:
    assert r.status_code == 429
    body = r.json()
    assert body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["message"]
    assert body["limit"] == limit and body["remaining"] == 0
    assert body["retry_after_secs"] >= 1 and body["reset_at"] >= int(time.time()) - 1
    assert int(r.headers["Retry-After"]) == body["retry_after_secs"]
    assert r.headers["X-RateLimit-Limit"] == str(limit)
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["X-RateLimit-Reset"]) == body["reset_at"]


async def parallel_gets(server: ServerProcess, path: str, keys: list[str]) -> tuple[list[int], float]:
    """One GET per key, all at once; returns the statuses (in key order) and how long the burst took."""
    limits = httpx.Limits(max_connections=len(keys), max_keepalive_connections=len(keys))
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as c:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(c.get(path, headers={"Authorization": f"Bearer {k}"}) for k in keys)
        )
        elapsed = time.monotonic() - started
    for r in responses:
        if r.status_code == 429:
            assert_rate_limited(r, int(r.headers["X-RateLimit-Limit"]))
        else:
            assert r.status_code == 200, r.text
    return [r.status_code for r in responses], elapsed


async def test_free_plan_is_limited_per_organization(server: ServerProcess) -> None:
    free = create_tenant(server, "free")  # 5 requests/s, burst 10
    other_free = create_tenant(server, "free")
    statuses, elapsed = await parallel_gets(server, "/api/v1/organizations", [free.api_key] * 60)
    succeeded = statuses.count(200)
    # Never more than the burst plus what refilled during the burst; a 429 once the burst is spent.
    assert succeeded <= 10 + 5 * elapsed + 1, (succeeded, elapsed)
    assert succeeded >= 10
    if elapsed < 9:
        assert 429 in statuses
    async with other_free.async_client() as o:
        assert (await o.get("/api/v1/organizations")).status_code == 200  # another org has its own bucket
    async with free.async_client() as c:
        # Tokens come back at the plan rate.
        deadline = time.monotonic() + 5
        while (await c.get("/api/v1/organizations")).status_code == 429:
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.1)


async def test_jwt_requests_share_the_organization_bucket(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
        r = await c.post(
            "/api/v1/admin/organizations",
            headers={"X-Admin-Key": ADMIN_KEY, "X-Real-IP": "10.9.9.9"},
            json={
                "name": "Slow Refill",
                "slug": "rl-" + uuid.uuid4().hex[:10],
                "plan_tier": "free",
                "custom_limits": {"rate_limit_requests_per_second": 1, "rate_limit_burst": 10},
            },
        )
        assert r.status_code == 201, r.text
        key = r.json()["api_key"]["key"]
        access = (await c.post("/api/v1/auth/login", json={"api_key": key})).json()["access_token"]
    statuses, elapsed = await parallel_gets(server, "/api/v1/organizations", [key, access] * 15)
    # One bucket for the organization: separate buckets would let 20 through.
    assert statuses.count(200) <= 10 + elapsed + 1, (statuses.count(200), elapsed)
    assert 429 in statuses[1::2]  # JWT requests are refused too


def test_unlimited_plan_has_no_organization_limit(tenant: Tenant) -> None:
    with tenant.client() as c:
        statuses = {c.get("/api/v1/organizations").status_code for _ in range(60)}
    assert statuses == {200}


def test_key_rate_limit_is_a_per_minute_window(tenant: Tenant) -> None:
    with tenant.client() as c:
        created = c.post("/api/v1/api-keys", json={"name": "slow", "rate_limit": 3}).json()
    with tenant.client(key=created["key"]) as slow:
        # Fixed 60 s windows: within 7 requests one window must see its 4th.
        succeeded, refused = burst_until_429(slow, "/api/v1/organizations", 7)
    assert 3 <= succeeded <= 6
    assert_rate_limited(refused, 3)
    with tenant.client() as c:
        assert c.get("/api/v1/organizations").status_code == 200  # other keys of the org are unaffected


@pytest.fixture(scope="module")
def proxied_server(database: TestDatabase) -> ServerProcess:  # type: ignore[misc]
    with running_server(
        database.url, RATE_LIMIT_REQUESTS_PER_SECOND="1", RATE_LIMIT_BURST_SIZE="3", TRUSTED_PROXY_HOPS="1"
    ) as srv:
        yield srv


async def test_public_routes_are_limited_per_client_ip(proxied_server: ServerProcess) -> None:
    async def burst(path: str, forwarded_for: list[str], method: str = "POST") -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(forwarded_for))
        async with httpx.AsyncClient(base_url=proxied_server.base_url, limits=limits, timeout=60) as c:
            return list(
                await asyncio.gather(
                    *(
                        c.request(
                            method,
                            path,
                            json={"token": "nope"} if method == "POST" else None,
                            params={"slug": "abc"} if method == "GET" else None,
                            headers={"X-Forwarded-For": xff},
                        )
                        for xff in forwarded_for
                    )
                )
            )

    client = "203.0.113.10"
    responses = await burst("/api/v1/auth/validate", [client] * 10)  # 1 request/s, burst 3
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 3 and 429 in statuses, statuses
    assert_rate_limited(next(r for r in responses if r.status_code == 429), 3)
    # A forged leftmost entry does not change who the client is (one trusted hop): still one bucket.
    forged = await burst("/api/v1/auth/validate", [f"198.51.100.{i}, 203.0.113.30" for i in range(10)])
    assert 429 in [r.status_code for r in forged]
    # Other clients have their own buckets; X-Real-IP is trusted by default.
    async with httpx.AsyncClient(base_url=proxied_server.base_url, timeout=30) as c:
        for headers in ({"X-Forwarded-For": "203.0.113.11"}, {"X-Real-IP": "203.0.113.12"}):
            r = await c.post("/api/v1/auth/validate", json={"token": "x"}, headers=headers)
            assert r.status_code == 200, headers
    # Other public routes are limited the same way.
    slugs = await burst("/api/v1/organizations/check-slug", ["203.0.113.40"] * 10, method="GET")
    assert 429 in [r.status_code for r in slugs]


def test_authenticated_routes_are_not_limited_per_ip(proxied_server: ServerProcess) -> None:
    tenant = create_tenant(proxied_server)  # unlimited plan: no organization limit either
    headers = {"X-Forwarded-For": "203.0.113.20"}
    for _ in range(6):
        httpx.post(
            proxied_server.base_url + "/api/v1/auth/validate",
            json={"token": "x"},
            headers=headers,
            timeout=30,
        )
    with tenant.client(headers=headers) as c:
        assert {c.get("/api/v1/organizations").status_code for _ in range(10)} == {200}
