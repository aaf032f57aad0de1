"""Outgoing webhooks (semantics.md §15): configuration, the durable outbox and the dispatcher that sends it.

Durability: a state change and its delivery rows commit in one transaction. The job statements in
db/sql/jobs.sql carry their own outbox CTE; Python code paths that raise an event (queue pause, worker
registration, schedule fires, workflow completion) call `enqueue_event(conn, …)` inside their transaction.

Delivery: every replica runs a `WebhookDispatcher`. It wakes when this replica committed something that
may have written deliveries (a bus event of an organization that has webhooks, a dead-letter, a completion
with a callback) and every 5 s; claims due rows with skip-locked semantics and a 60 s claim lease (a row
held by a crashed process comes due again); sends at most OUTGOING_WEBHOOK_MAX_CONCURRENT_DELIVERIES at a
time; books each attempt. Nothing on a request path waits for a delivery.

Target policy: in production only https, and only hosts whose every address is public, unless
WEBHOOK_ALLOW_PRIVATE_TARGETS. The check runs at create time and again inside the connection itself
(`_GuardedBackend`): the socket goes to the very address that was checked, so DNS cannot change the
answer between check and connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpcore
import httpx
import msgspec

from ..config import Settings
from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import BadRequest, Conflict, NotFound, ValidationFailed
from .jobs import ts

log = logging.getLogger(__name__)

EVENTS = (
    "job.created",
    "job.started",
    "job.completed",
    "job.failed",
    "job.cancelled",
    "job.deadlettered",
    "job.retried",
    "queue.paused",
    "queue.resumed",
    "worker.registered",
    "worker.deregistered",
    "schedule.triggered",
    "workflow.completed",
    "workflow.failed",
)
DELIVERY_STATUSES = ("pending", "success", "failed")
USER_AGENT = "Spooled-Webhooks/1"
DELIVERY_TIMEOUT_SECS = 10.0
CLAIM_LEASE_SECS = 60.0
POLL_INTERVAL_SECS = 5.0
BACKOFF_CAP_SECS = 3600.0
RESPONSE_BODY_LIMIT = 4096
AUTO_DISABLE_AFTER = 20
MANUAL_RETRY_MAX_ATTEMPTS = 10
RESOLVE_TIMEOUT_SECS = 5.0
STOP_GRACE_SECS = 5.0


# --- the outbox ------------------------------------------------------------------------------------------


async def enqueue_event(
    conn: asyncpg.Connection, org_id: uuid.UUID | str, event: str, data: dict[str, Any]
) -> int:
    """Write the deliveries of one event inside the caller's transaction; returns how many were written.

    Costs one index probe on a tiny table when the organization has no webhook for `event`. The dispatcher
    of this replica hears of the rows through the bus event the caller publishes after commit (or within 5 s).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    # JSON text, not a jsonb parameter: the helper must not depend on the connection's type codecs.
    status = await conn.execute(
        Q.insert_webhook_event, uuid.UUID(str(org_id)), event, msgspec.json.encode(data).decode()
    )
    return int(status.split()[-1])


def backoff_secs(attempts: int, base: float) -> float:
    """Delay after the `attempts`-th failed attempt: min(base x 4^(attempts-1), 3600)."""
    exponent = max(0, min(attempts - 1, 16))  # 4^16 x any sane base is far past the cap
    return float(min(base * 4.0**exponent, BACKOFF_CAP_SECS))


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256(secret, "<timestamp>.<raw body>")."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def delivery_headers(
    event: str, delivery_id: str, timestamp: int, attempt: int, secret: str | None, body: bytes
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Spooled-Event": event,
        "X-Spooled-Delivery": delivery_id,
        "X-Spooled-Timestamp": str(timestamp),
        "X-Spooled-Delivery-Attempt": str(attempt),
    }
    if secret:
        headers["X-Spooled-Signature"] = signature(secret, timestamp, body)
    return headers


# --- target policy ---------------------------------------------------------------------------------------


class TargetRejected(Exception):
    """The outgoing-URL policy forbids this target."""


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global excludes loopback, private, link-local (cloud metadata lives there), shared, reserved space.
    return ip.is_global and not ip.is_multicast


class TargetPolicy:
    """Which URLs a webhook may point at (semantics.md §15 "Target URLs")."""

    def __init__(self, settings: Settings) -> None:
        self.strict = settings.is_production
        self.allow_private = settings.webhook_allow_private_targets

    def url_problem(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            return "must be an http or https URL"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "must be an http or https URL"
        if self.strict and parts.scheme != "https":
            return "must use https in production"
        return None

    async def address(self, host: str, port: int) -> str:
        """The address to connect to for `host`; raises TargetRejected when the policy forbids it."""
        if not self.strict or self.allow_private:
            return host
        literal = host.strip("[]")
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            ip = None
        if ip is not None:
            if not _public(ip):
                raise TargetRejected(f"{ip} is not a public address")
            return literal
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT_SECS,
            )
        except (OSError, TimeoutError):
            raise TargetRejected(f"host {host} does not resolve") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise TargetRejected(f"host {host} does not resolve")
        for candidate in addresses:
            if not _public(candidate):
                raise TargetRejected(f"host {host} resolves to a non-public address")
        return str(addresses[0])

    async def check(self, url: str) -> None:
        problem = self.url_problem(url)
        if problem:
            raise TargetRejected(problem)
        parts = urlsplit(url)
        await self.address(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))

    async def validate(self, url: Any, field: str = "url") -> str:
        """Create/update-time check: a 400 naming the field."""
        v.http_url(url, field)
        try:
            await self.check(url)
        except TargetRejected as exc:
            raise ValidationFailed(field, str(exc), rule="format") from None
        return str(url)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allowed, resolved once, at connect time."""

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self._policy.address(host, port)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRejected("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: TargetPolicy, max_connections: int) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx 0.28 has no network_backend option: swap in a pool built with ours (versions are pinned).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=min(max_connections, 20),
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy),
        )


def make_client(policy: TargetPolicy, max_connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy, max_connections),
        timeout=httpx.Timeout(DELIVERY_TIMEOUT_SECS),
        follow_redirects=False,
        trust_env=False,
    )


@dataclass
class AttemptResult:
    ok: bool
    status_code: int | None
    response_body: str | None
    error: str | None
    elapsed_ms: int


async def post_signed(
    client: httpx.AsyncClient,
    policy: TargetPolicy,
    url: str,
    *,
    secret: str | None,
    event: str,
    delivery_id: str,
    attempt: int,
    body: bytes,
) -> AttemptResult:
    """One signed POST; never raises for anything the target does."""
    started = time.perf_counter()
    status: int | None = None
    text: str | None = None
    error: str | None = None
    try:
        problem = policy.url_problem(url)
        if problem:
            raise TargetRejected(problem)
        headers = delivery_headers(event, delivery_id, int(time.time()), attempt, secret, body)
        async with asyncio.timeout(DELIVERY_TIMEOUT_SECS):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                status = response.status_code
                received = bytearray()
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if len(received) >= RESPONSE_BODY_LIMIT:
                        break
                text = bytes(received[:RESPONSE_BODY_LIMIT]).decode("utf-8", errors="replace")
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except TargetRejected as exc:
        error = f"target not allowed: {exc}"
    except (TimeoutError, httpx.TimeoutException):
        error = f"timed out after {DELIVERY_TIMEOUT_SECS:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    elapsed = int((time.perf_counter() - started) * 1000)
    return AttemptResult(error is None, status, text, error, elapsed)


# --- the dispatcher --------------------------------------------------------------------------------------


class WebhookDispatcher:
    """Sends due outbox rows from this replica (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        settings = core.settings
        self.core = core
        self.policy = TargetPolicy(settings)
        self.max_in_flight = max(1, settings.outgoing_webhook_max_concurrent_deliveries)
        self.max_attempts = max(1, settings.outgoing_webhook_max_attempts)
        self.backoff_base = max(0.0, settings.webhook_backoff_base_secs)
        self.client = make_client(self.policy, self.max_in_flight)
        self._wake = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], uuid.UUID] = {}
        self._orgs: set[str] = set()
        self._orgs_loaded_at = -1e9
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None

    # wake-ups

    def wake(self) -> None:
        self._wake.set()

    def org_has_webhooks(self, org_id: uuid.UUID | str) -> None:
        """This replica just enabled a webhook of the org: its events wake the dispatcher from now on."""
        self._orgs.add(str(org_id))

    def _on_event(self, org_id: str, event_type: str, data: dict[str, Any]) -> None:
        # Dead-letters may carry a completion callback whatever the org's webhooks; they are rare.
        if org_id in self._orgs or (event_type == "JobFailed" and data.get("will_retry") is False):
            self._wake.set()

    def _wants(self, org_id: str, event_type: str) -> bool:
        return org_id in self._orgs or event_type == "JobFailed"

    # lifecycle

    async def start(self) -> None:
        self._unsubscribe = self.core.bus.subscribe(self._on_event, self._wants)
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=STOP_GRACE_SECS)
        unfinished = [t for t in self._in_flight if not t.done()]
        held = [self._in_flight[t] for t in unfinished]
        for task in unfinished:
            task.cancel()
        for task in unfinished:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if held:
            with contextlib.suppress(Exception):
                async with self.core.db.maintenance() as conn:
                    await conn.execute(Q.release_webhook_deliveries, held)
        await self.client.aclose()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_SECS)
            self._wake.clear()
            try:
                if time.monotonic() - self._orgs_loaded_at >= POLL_INTERVAL_SECS:
                    await self._load_orgs()
                await self._dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhook dispatch pass failed", exc_info=True)
                await asyncio.sleep(1.0)

    async def _load_orgs(self) -> None:
        async with self.core.db.maintenance(transaction=False) as conn:
            rows = await conn.fetch(Q.orgs_with_webhooks)
        self._orgs = {str(r["organization_id"]) for r in rows}
        self._orgs_loaded_at = time.monotonic()

    async def _dispatch_due(self) -> None:
        while True:
            room = self.max_in_flight - len(self._in_flight)
            if room <= 0:
                return  # a finishing delivery wakes the loop again
            async with self.core.db.maintenance() as conn:
                rows = await conn.fetch(Q.claim_webhook_deliveries, room, CLAIM_LEASE_SECS)
            for row in rows:
                task = asyncio.create_task(self._deliver(row), name=f"webhook-delivery-{row['id']}")
                self._in_flight[task] = row["id"]
                task.add_done_callback(self._finished)
            if len(rows) < room:
                return

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("webhook delivery crashed", exc_info=task.exception())
        self._wake.set()

    async def _deliver(self, row: asyncpg.Record) -> None:
        attempt = int(row["attempts"]) + 1
        result = await post_signed(
            self.client,
            self.policy,
            row["url"],
            secret=row["secret"],
            event=row["event"],
            delivery_id=str(row["id"]),
            attempt=attempt,
            body=bytes(row["payload"]),
        )
        if result.ok:
            outcome, delay = "success", 0.0
        elif attempt < self.max_attempts:
            outcome, delay = "retry", backoff_secs(attempt, self.backoff_base)
        else:
            outcome, delay = "failed", 0.0
        await self.record(row["id"], attempt, outcome, result, delay)
        if outcome == "retry" and delay < POLL_INTERVAL_SECS:
            asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def record(
        self,
        delivery_id: uuid.UUID,
        attempt: int,
        outcome: str,
        result: AttemptResult,
        delay: float,
        conn: asyncpg.Connection | None = None,
    ) -> bool:
        """Book one attempt; False when the row was no longer ours (deleted, or booked by someone else)."""
        args = (
            delivery_id,
            attempt,
            outcome,
            result.status_code,
            result.response_body,
            result.error,
            float(delay),
            AUTO_DISABLE_AFTER,
        )
        if conn is None:
            async with self.core.db.maintenance() as own:
                booked = await own.fetchrow(Q.record_webhook_attempt, *args)
        else:
            booked = await conn.fetchrow(Q.record_webhook_attempt, *args)
        if booked["webhook_enabled"] is False:
            self._orgs_loaded_at = -1e9  # a webhook was auto-disabled: refresh the org set on the next pass
            log.warning("webhook disabled after %d consecutive failed deliveries", AUTO_DISABLE_AFTER)
        return bool(booked["recorded"])


def dispatcher(core: Core) -> WebhookDispatcher:
    found = core.webhooks
    if found is None:
        raise RuntimeError("the webhook dispatcher is not running")
    return found  # type: ignore[no-any-return]


# --- configuration (rest.md §13) ---------------------------------------------------------------------------


def webhook_to_wire(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "organization_id": str(r["organization_id"]),
        "name": r["name"],
        "url": r["url"],
        "events": list(r["events"]),
        "enabled": r["enabled"],
        "failure_count": r["failure_count"],
        "last_triggered_at": ts(r["last_triggered_at"]),
        "last_status": r["last_status"],
        "created_at": ts(r["created_at"]),
        "updated_at": ts(r["updated_at"]),
    }


def delivery_to_wire(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "webhook_id": str(r["webhook_id"]),
        "event": r["event"],
        "payload": r["payload"],
        "status": r["status"],
        "status_code": r["status_code"],
        "response_body": r["response_body"],
        "error": r["error"],
        "attempts": r["attempts"],
        "next_attempt_at": ts(r["next_attempt_at"]) if r["status"] == "pending" else None,
        "created_at": ts(r["created_at"]),
        "delivered_at": ts(r["delivered_at"]),
    }


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValidationFailed("events", "must contain at least one event", rule="length")
    seen: list[str] = []
    for name in value:
        if name not in EVENTS:
            raise ValidationFailed("events", f"unknown event '{name}'", rule="enum")
        if name not in seen:
            seen.append(name)
    return seen


def _secret(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return v.text(value, "secret", 1, 255)


async def _check_quota(core: Core, conn: asyncpg.Connection, principal: Principal) -> None:
    await conn.execute(Q.lock_webhook_quota, principal.org_id)
    current = int(await conn.fetchval(Q.count_enabled_webhooks, principal.org_id))
    await core.quotas.check_count(principal, "webhooks", "max_webhooks", current)


async def list_webhooks(core: Core, principal: Principal) -> list[dict[str, Any]]:
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.list_webhooks, principal.org_id)
    return [webhook_to_wire(r) for r in rows]


async def create_webhook(
    core: Core, principal: Principal, *, name: Any, url: Any, events: Any, secret: Any, enabled: bool
) -> dict[str, Any]:
    v.text(name, "name", 1, 255)
    chosen = _events(events)
    key = _secret(secret)
    target = await dispatcher(core).policy.validate(url)
    async with core.db.tenant(principal.org_id) as conn:
        if enabled:
            await _check_quota(core, conn, principal)
        row = await conn.fetchrow(
            Q.insert_webhook, uuid.uuid4(), principal.org_id, name, target, chosen, key, enabled
        )
    if enabled:
        dispatcher(core).org_has_webhooks(principal.org_id)
    return webhook_to_wire(row)


async def get_webhook(core: Core, principal: Principal, webhook_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.get_webhook, webhook_id, principal.org_id)
    if row is None:
        raise NotFound()
    return webhook_to_wire(row)


_UNSET: Any = msgspec.UNSET


async def update_webhook(
    core: Core,
    principal: Principal,
    webhook_id: uuid.UUID,
    *,
    name: Any = _UNSET,
    url: Any = _UNSET,
    events: Any = _UNSET,
    secret: Any = _UNSET,
    enabled: Any = _UNSET,
) -> dict[str, Any]:
    """PUT semantics: omitted fields keep their value; `secret: null` clears the secret."""
    new_name = None if name is _UNSET or name is None else v.text(name, "name", 1, 255)
    new_events = None if events is _UNSET or events is None else _events(events)
    new_url = None
    if url is not _UNSET and url is not None:
        new_url = await dispatcher(core).policy.validate(url)
    replace_secret = secret is not _UNSET
    new_secret = _secret(secret) if replace_secret else None
    new_enabled = None if enabled is _UNSET or enabled is None else bool(enabled)
    async with core.db.tenant(principal.org_id) as conn:
        current = await conn.fetchrow(Q.lock_webhook, webhook_id, principal.org_id)
        if current is None:
            raise NotFound()
        if new_enabled and not current["enabled"]:
            await _check_quota(core, conn, principal)
        row = await conn.fetchrow(
            Q.update_webhook,
            webhook_id,
            principal.org_id,
            new_name,
            new_url,
            new_events,
            replace_secret,
            new_secret,
            new_enabled,
        )
        if not row["enabled"]:
            await conn.execute(Q.drop_pending_deliveries, webhook_id, principal.org_id)
    if row["enabled"]:
        dispatcher(core).org_has_webhooks(principal.org_id)
    return webhook_to_wire(row)


async def delete_webhook(core: Core, principal: Principal, webhook_id: uuid.UUID) -> None:
    async with core.db.tenant(principal.org_id) as conn:
        gone = await conn.fetchval(Q.delete_webhook, webhook_id, principal.org_id)
    if gone is None:
        raise NotFound()


async def test_webhook(core: Core, principal: Principal, webhook_id: uuid.UUID) -> dict[str, Any]:
    """One synchronous signed POST of a `webhook.test` event; nothing is stored."""
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.get_webhook, webhook_id, principal.org_id)
    if row is None:
        raise NotFound()
    from ..events.bus import now_iso

    body = msgspec.json.encode(
        {
            "event": "webhook.test",
            "webhook_id": str(row["id"]),
            "organization_id": str(row["organization_id"]),
            "timestamp": now_iso(),
            "test": True,
            "message": "This is a test delivery from Spooled.",
        }
    )
    d = dispatcher(core)
    result = await post_signed(
        d.client,
        d.policy,
        row["url"],
        secret=row["secret"],
        event="webhook.test",
        delivery_id=str(uuid.uuid4()),
        attempt=1,
        body=body,
    )
    return {
        "success": result.ok,
        "status_code": result.status_code,
        "response_time_ms": result.elapsed_ms,
        "error": result.error,
    }


async def list_deliveries(
    core: Core, principal: Principal, webhook_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    if status not in DELIVERY_STATUSES:
        status = None  # like the job list: an unknown filter value is ignored
    async with core.db.tenant(principal.org_id) as conn:
        if await conn.fetchrow(Q.get_webhook, webhook_id, principal.org_id) is None:
            raise NotFound()
        rows = await conn.fetch(
            Q.list_webhook_deliveries, webhook_id, principal.org_id, status, limit, offset
        )
    return [delivery_to_wire(r) for r in rows]


async def retry_delivery(
    core: Core, principal: Principal, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> dict[str, Any]:
    """One immediate attempt of a delivery, on this request."""
    d = dispatcher(core)
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.lock_webhook_delivery, delivery_id, webhook_id, principal.org_id)
        if row is None:
            raise NotFound()
        if row["status"] == "success":
            raise BadRequest("Delivery already succeeded")
        if row["attempts"] > MANUAL_RETRY_MAX_ATTEMPTS:
            raise BadRequest(f"Delivery has more than {MANUAL_RETRY_MAX_ATTEMPTS} attempts")
        if row["claimed"]:
            raise Conflict("Delivery is being attempted right now")
        await conn.execute(Q.hold_webhook_delivery, delivery_id, CLAIM_LEASE_SECS)
    attempt = int(row["attempts"]) + 1
    result = await post_signed(
        d.client,
        d.policy,
        row["url"],
        secret=row["secret"],
        event=row["event"],
        delivery_id=str(delivery_id),
        attempt=attempt,
        body=bytes(row["payload"]),
    )
    if result.ok:
        outcome, delay = "success", 0.0
    elif row["status"] == "failed":
        outcome, delay = "still_failed", 0.0
    elif attempt < d.max_attempts:
        outcome, delay = "retry", backoff_secs(attempt, d.backoff_base)
    else:
        outcome, delay = "failed", 0.0
    async with core.db.tenant(principal.org_id) as conn:
        await d.record(delivery_id, attempt, outcome, result, delay, conn=conn)
    status = {"success": "success", "retry": "pending"}.get(outcome, "failed")
    message = "Delivery succeeded" if result.ok else f"Delivery failed: {result.error}"
    return {"success": result.ok, "message": message, "delivery_id": str(delivery_id), "status": status}
