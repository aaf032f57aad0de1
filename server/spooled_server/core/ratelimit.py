"""Rate limits (semantics.md §13): per organization, per API key, per client IP, failed logins, admin routes.

The limiters speak to a `LimitBackend`. The in-process backend below serves deployments without Redis; a
cluster-wide (Redis) backend implements the same two operations and falls back to this one when Redis is
unreachable. `RateLimits.local` stays in-process for callers that cannot await (per gRPC stream message).
Every check raises `RateLimited` (429 `RATE_LIMIT_EXCEEDED` with `Retry-After` and `X-RateLimit-*`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..config import Settings
from .auth import Principal
from .errors import RateLimited
from .plans import Plans

LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_SECS = 60
KEY_WINDOW_SECS = 60
ADMIN_WINDOW_SECS = 60
_PRUNE_EVERY_SECS = 60.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds
    retry_after: int  # seconds, ≥ 1 when refused

    def raise_if_refused(self) -> None:
        if not self.allowed:
            raise RateLimited(self.retry_after, self.limit, self.remaining, self.reset_at)


class LimitBackend(Protocol):
    """Where counters live. Async so that a network-backed store (Redis) fits behind the same calls."""

    async def token_bucket(self, key: str, rate: float, burst: int) -> Decision:
        """Take one token from the bucket `key` (refilled at `rate` per second up to `burst`)."""
        ...

    async def fixed_window(self, key: str, limit: int, window_secs: int, cost: int = 1) -> Decision:
        """Add `cost` hits to the current window of `key`; `cost=0` only asks whether the window is full."""
        ...


class InMemoryBackend:
    """Per-process counters. Each replica enforces its own limits (no Redis), as the contract allows."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._buckets: dict[str, tuple[float, float, float, int]] = {}  # key -> (tokens, at, rate, burst)
        self._windows: dict[str, tuple[int, int, int]] = {}  # key -> (window start (unix), count, length)
        self._pruned = clock()

    # Sync twins: callers that cannot await (and the async methods below) use these directly.
    def take_token(self, key: str, rate: float, burst: int) -> Decision:
        now = self._clock()
        self._maybe_prune(now)
        capacity = max(1, burst)
        tokens, at, _, _ = self._buckets.get(key, (float(capacity), now, rate, capacity))
        tokens = min(float(capacity), tokens + (now - at) * rate)
        wall = self._wall()
        if tokens >= 1.0:
            tokens -= 1.0
            self._buckets[key] = (tokens, now, rate, capacity)
            full_in = (capacity - tokens) / rate if rate > 0 else 0.0
            return Decision(True, capacity, int(tokens), math.ceil(wall + full_in), 0)
        self._buckets[key] = (tokens, now, rate, capacity)
        wait = (1.0 - tokens) / rate if rate > 0 else 1.0
        retry = max(1, math.ceil(wait))
        return Decision(False, capacity, 0, math.ceil(wall + wait), retry)

    def hit_window(self, key: str, limit: int, window_secs: int, cost: int = 1) -> Decision:
        self._maybe_prune(self._clock())
        wall = self._wall()
        start = int(wall // window_secs) * window_secs
        reset = start + window_secs
        stored = self._windows.get(key)
        count = stored[1] if stored is not None and stored[0] == start else 0
        retry = max(1, math.ceil(reset - wall))
        if cost == 0:
            allowed = count < limit
            return Decision(allowed, limit, max(0, limit - count), reset, 0 if allowed else retry)
        if count + cost > limit:
            self._windows[key] = (start, count, window_secs)
            return Decision(False, limit, max(0, limit - count), reset, retry)
        count += cost
        self._windows[key] = (start, count, window_secs)
        return Decision(True, limit, limit - count, reset, 0)

    async def token_bucket(self, key: str, rate: float, burst: int) -> Decision:
        return self.take_token(key, rate, burst)

    async def fixed_window(self, key: str, limit: int, window_secs: int, cost: int = 1) -> Decision:
        return self.hit_window(key, limit, window_secs, cost)

    def _maybe_prune(self, now: float) -> None:
        """Forget full buckets and finished windows so one-off clients do not accumulate."""
        if now - self._pruned < _PRUNE_EVERY_SECS:
            return
        self._pruned = now
        for key, (tokens, at, rate, burst) in list(self._buckets.items()):
            if tokens + (now - at) * rate >= burst:
                del self._buckets[key]
        wall = self._wall()
        for key, (start, _, length) in list(self._windows.items()):
            if start + length <= wall:
                del self._windows[key]

    def __len__(self) -> int:
        return len(self._buckets) + len(self._windows)


class RateLimits:
    """Every limiter of §13, keyed as the contract says, over one backend."""

    def __init__(self, settings: Settings, plans: Plans, backend: LimitBackend | None = None) -> None:
        self.settings = settings
        self.plans = plans
        self.local = InMemoryBackend()
        self.backend: LimitBackend = backend or self.local

    # --- organizations and keys (every authenticated request) --------------------------------------------

    def _org_limits(self, principal: Principal) -> tuple[float, int]:
        limits = self.plans.limits(principal.plan_tier, principal.custom_limits)
        return float(limits.rate_limit_requests_per_second), int(limits.rate_limit_burst)

    async def limit_principal(self, principal: Principal, surface: str) -> None:
        """The organization's token bucket (one per surface: `rest`, `grpc`), then the key's 60 s window."""
        rate, burst = self._org_limits(principal)
        if rate > 0:
            (
                await self.backend.token_bucket(f"org:{surface}:{principal.org_id}", rate, burst)
            ).raise_if_refused()
        if principal.rate_limit:
            (
                await self.backend.fixed_window(
                    f"key:{principal.key_id}", int(principal.rate_limit), KEY_WINDOW_SECS
                )
            ).raise_if_refused()

    def check_principal(self, principal: Principal, surface: str) -> None:
        """The same limits for callers that cannot await; always counted in this process."""
        rate, burst = self._org_limits(principal)
        if rate > 0:
            self.local.take_token(f"org:{surface}:{principal.org_id}", rate, burst).raise_if_refused()
        if principal.rate_limit:
            self.local.hit_window(
                f"key:{principal.key_id}", int(principal.rate_limit), KEY_WINDOW_SECS
            ).raise_if_refused()

    # --- client IP ---------------------------------------------------------------------------------------

    async def limit_public(self, client_ip: str) -> None:
        """Public routes: RATE_LIMIT_REQUESTS_PER_SECOND / RATE_LIMIT_BURST_SIZE per client IP."""
        rate = float(self.settings.rate_limit_requests_per_second)
        if rate <= 0:
            return
        burst = self.settings.rate_limit_burst_size or int(rate)
        (await self.backend.token_bucket(f"ip:{client_ip}", rate, burst)).raise_if_refused()

    async def limit_admin(self, client_ip: str) -> None:
        per_minute = self.settings.admin_rate_limit_per_minute
        if per_minute <= 0:
            return
        (
            await self.backend.fixed_window(f"admin:{client_ip}", per_minute, ADMIN_WINDOW_SECS)
        ).raise_if_refused()

    # --- failed logins -----------------------------------------------------------------------------------

    @staticmethod
    def _login_key(submitted_key: str) -> str:
        return "login:" + hashlib.sha256(submitted_key.encode()).hexdigest()

    async def check_login(self, submitted_key: str) -> None:
        """Refuse a login while the submitted key has 5 failures in the current 60 s window."""
        decision = await self.backend.fixed_window(
            self._login_key(submitted_key), LOGIN_MAX_FAILURES, LOGIN_WINDOW_SECS, cost=0
        )
        decision.raise_if_refused()

    async def login_failed(self, submitted_key: str) -> None:
        await self.backend.fixed_window(self._login_key(submitted_key), LOGIN_MAX_FAILURES, LOGIN_WINDOW_SECS)


def client_ip(headers: Mapping[str, str], peer: str | None, settings: Settings) -> str:
    """The client address (semantics.md §13): the trusted header if configured; else CF-Connecting-IP or
    X-Real-IP; else X-Forwarded-For counted from the right by TRUSTED_PROXY_HOPS (0 = the socket peer)."""
    socket_peer = peer or "unknown"
    if settings.trusted_client_ip_header:
        value = headers.get(settings.trusted_client_ip_header.lower())
        return _first_address(value) or socket_peer
    for name in ("cf-connecting-ip", "x-real-ip"):
        found = _first_address(headers.get(name))
        if found:
            return found
    hops = settings.trusted_proxy_hops
    forwarded = headers.get("x-forwarded-for")
    if hops > 0 and forwarded:
        chain = [p.strip() for p in forwarded.split(",") if p.strip()] + [socket_peer]
        # The peer is the nearest proxy; each trusted hop appended the address it received from.
        index = len(chain) - 1 - hops
        return chain[max(0, index)]
    return socket_peer


def _first_address(value: str | None) -> str | None:
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    if not first:
        return None
    try:
        return str(ipaddress.ip_address(first))
    except ValueError:
        # Not an address (a proxy may send a host name or a port): still a stable per-client key.
        return first[:100]
