"""Incoming webhooks turned into jobs (rest.md §14): custom, GitHub, Stripe and Shopify adapters.

A request names its organization in the path and proves itself with the org's webhook token or a provider
HMAC over the exact raw body (compared in constant time). The org lookup is the one cross-organization read
(maintenance role, by primary key); everything after runs in a tenant transaction. Provider event ids become
idempotency keys, so a redelivery returns the existing job. Every request that reaches a known org leaves an
audit row; only accepted ones are listed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import (
    BadRequest,
    Conflict,
    InvalidJson,
    NotFound,
    PayloadTooLarge,
    SpooledError,
    Unauthorized,
    ValidationFailed,
)
from .jobs import _after_create, ts

PROVIDERS = ("custom", "github", "stripe", "shopify")
MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
STRIPE_TOLERANCE_SECS = 300
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.-]{0,100}$")
AUDIT_STATUSES = ("created", "duplicate")
_GENERIC_401 = "Invalid webhook credentials"
_NO_KEY = uuid.UUID(int=0)  # ingest acts for the org, not for an API key


class _LostRace(Exception):
    """A concurrent redelivery inserted the job first: roll back this request's quota charge."""


@dataclass
class Gate:
    """An ingest request that reached a known organization."""

    org_id: uuid.UUID
    provider: str
    principal: Principal
    settings: dict[str, Any]
    event_type: str = ""
    queue: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def _decode_settings(value: Any) -> dict[str, Any]:
    if isinstance(value, msgspec.Raw):
        value = msgspec.json.decode(bytes(value))
    return value if isinstance(value, dict) else {}


async def open_gate(core: Core, org_id_text: str, provider: str, headers: Mapping[str, str]) -> Gate:
    """https in production (400), then the organization (404). Headers are lower-cased names."""
    if core.settings.is_production and headers.get("x-forwarded-proto", "").lower() != "https":
        raise BadRequest("Incoming webhooks require https")
    org_id = v.try_uuid(org_id_text)
    if org_id is None:
        raise NotFound()
    async with core.db.maintenance(transaction=False) as conn:
        org = await conn.fetchrow(Q.ingest_org, org_id)
    if org is None:
        raise NotFound()
    custom_limits = org["custom_limits"]
    principal = Principal(
        org_id=org["id"],
        key_id=_NO_KEY,
        queues=(),
        plan_tier=org["plan_tier"],
        custom_limits=_decode_settings(custom_limits) if custom_limits is not None else None,
    )
    return Gate(org["id"], provider, principal, _decode_settings(org["settings"]), headers=headers)


async def _audit(
    core: Core,
    gate: Gate,
    status: str,
    job_id: uuid.UUID | None = None,
    error: str | None = None,
    conn: asyncpg.Connection | None = None,
) -> None:
    args = (gate.org_id, gate.provider, gate.event_type or "", gate.queue, job_id, status, error)
    if conn is not None:
        await conn.execute(Q.insert_ingest_audit, *args)
        return
    async with core.db.tenant(gate.org_id) as own:
        await own.execute(Q.insert_ingest_audit, *args)


@asynccontextmanager
async def audited(core: Core, gate: Gate) -> AsyncIterator[None]:
    """Any refusal inside leaves a `rejected` audit row (with its error code) before it propagates."""
    try:
        yield
    except SpooledError as exc:
        await _audit(core, gate, "rejected", error=exc.code)
        raise


# --- credentials ------------------------------------------------------------------------------------------


def _equal(a: str | bytes, b: str | bytes) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _token(gate: Gate) -> str | None:
    token = gate.settings.get("webhook_token")
    return token if isinstance(token, str) and token else None


def _provider_secret(gate: Gate) -> str | None:
    secrets = gate.settings.get("ingest_secrets")
    if isinstance(secrets, dict):
        own = secrets.get(gate.provider)
        if isinstance(own, str) and own:
            return own
    return _token(gate)


def _check_token_header(gate: Gate, required: bool) -> None:
    given = gate.headers.get("x-webhook-token")
    if given is None and not required:
        return
    expected = _token(gate)
    if given is None or expected is None or not _equal(given, expected):
        raise Unauthorized(_GENERIC_401)


def verify_custom(gate: Gate) -> None:
    _check_token_header(gate, required=True)


def verify_github(gate: Gate, body: bytes) -> None:
    _check_token_header(gate, required=False)
    secret = _provider_secret(gate)
    given = gate.headers.get("x-hub-signature-256", "")
    if secret is None or not given.startswith("sha256="):
        raise Unauthorized(_GENERIC_401)
    if not _equal(given[len("sha256=") :].lower(), _hmac(secret, body).hex()):
        raise Unauthorized(_GENERIC_401)


def verify_stripe(gate: Gate, body: bytes, now: float | None = None) -> None:
    _check_token_header(gate, required=False)
    secret = _provider_secret(gate)
    timestamp: int | None = None
    candidates: list[str] = []
    for part in gate.headers.get("stripe-signature", "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.lower())
    if secret is None or timestamp is None or not candidates:
        raise Unauthorized(_GENERIC_401)
    if abs((time.time() if now is None else now) - timestamp) > STRIPE_TOLERANCE_SECS:
        raise Unauthorized(_GENERIC_401)
    expected = _hmac(secret, str(timestamp).encode() + b"." + body).hex()
    matched = False
    for candidate in candidates:  # every candidate is compared: no early exit that times the match
        matched |= _equal(candidate, expected)
    if not matched:
        raise Unauthorized(_GENERIC_401)


def verify_shopify(gate: Gate, body: bytes) -> None:
    _check_token_header(gate, required=False)
    secret = _provider_secret(gate)
    given = gate.headers.get("x-shopify-hmac-sha256", "").strip()
    if secret is None or not given:
        raise Unauthorized(_GENERIC_401)
    if not _equal(given, base64.b64encode(_hmac(secret, body)).decode()):
        raise Unauthorized(_GENERIC_401)


# --- bodies and queues ------------------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise InvalidJson(
            "Request body is empty",
            details=[{"field": "body", "message": "empty body", "code": "empty_body"}],
        )
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise InvalidJson(
            details=[{"field": "body", "message": "malformed JSON", "code": "invalid_json"}]
        ) from None


def choose_queue(gate: Gate, derived: str, override: str | None) -> str:
    """`?queue=` wins over the derived name; either must be a valid queue name."""
    if override is not None:
        gate.queue = override
        return v.queue_name(override, "queue")
    gate.queue = derived
    return v.queue_name(derived, "queue_name")


def _header(gate: Gate, name: str) -> str:
    value = gate.headers.get(name, "").strip()
    if not value:
        raise ValidationFailed(name, "header is required", rule="required")
    return value


def github_event(gate: Gate) -> str:
    gate.event_type = _header(gate, "x-github-event")
    return gate.event_type


def shopify_topic(gate: Gate) -> str:
    gate.event_type = _header(gate, "x-shopify-topic")
    return gate.event_type


def stripe_event(gate: Gate, event: Any) -> tuple[str, str]:
    """The Stripe event's `(id, type)`."""
    if not isinstance(event, dict):
        raise ValidationFailed("body", "must be a Stripe event object", rule="type")
    event_type, event_id = event.get("type"), event.get("id")
    if not isinstance(event_type, str) or not event_type:
        raise ValidationFailed("type", "is required", rule="required")
    gate.event_type = event_type
    if not isinstance(event_id, str) or not event_id:
        raise ValidationFailed("id", "is required", rule="required")
    return event_id, event_type


# --- creating the job -------------------------------------------------------------------------------------


async def accept(
    core: Core,
    gate: Gate,
    *,
    queue: str,
    payload: msgspec.Raw,
    idempotency_key: str | None,
    priority: int = 0,
) -> dict[str, Any]:
    """Create the job (or find the one of a redelivery) and its audit row, in one tenant transaction."""
    if len(bytes(payload)) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"Payload exceeds {MAX_PAYLOAD_BYTES} bytes",
            extra={
                "current": len(bytes(payload)),
                "limit": MAX_PAYLOAD_BYTES,
                "plan": core.quotas.limits(gate.principal).tier,
                "upgrade_to": None,
            },
        )
    if idempotency_key is not None:
        v.text(idempotency_key, "idempotency_key", 1, 255)
    tags = {"source": gate.provider, "event_type": gate.event_type or None}
    job_id = uuid.uuid4()
    s = core.settings
    try:
        async with core.db.tenant(gate.org_id) as conn:
            if idempotency_key is not None:
                existing = await conn.fetchrow(Q.find_job_by_idempotency_key, gate.org_id, idempotency_key)
                if existing is not None:
                    await _audit(core, gate, "duplicate", existing["id"], conn=conn)
                    return _response(existing["id"], False, existing["queue_name"], existing["status"])
            # Charged to jobs_per_day and active_jobs only: no queue cap, no plan payload cap (rest.md §14).
            await core.quotas.reserve_jobs(conn, gate.principal, 1)
            row = await conn.fetchrow(
                Q.insert_job,
                gate.org_id,
                queue,
                job_id,
                payload,
                None,
                priority,
                None,
                tags,
                None,
                None,
                None,
                None,
                None,
                idempotency_key,
                None,
                s.queue_default_max_retries,
                s.queue_default_timeout_secs,
            )
            if row is None:
                raise _LostRace
            await _audit(core, gate, "created", job_id, conn=conn)
    except _LostRace:
        row = None
    except asyncpg.DataError:
        raise ValidationFailed(
            "payload", "holds a value PostgreSQL cannot store (e.g. a \\u0000 escape)", rule="invalid"
        ) from None
    if row is None:
        # A concurrent redelivery won the insert; its row is visible to a new transaction.
        async with core.db.tenant(gate.org_id) as conn:
            existing = await conn.fetchrow(Q.find_job_by_idempotency_key, gate.org_id, idempotency_key)
            if existing is None:  # pragma: no cover - the winner rolled back; the provider retries
                raise Conflict("A job with this idempotency key is being created; retry the request")
            await _audit(core, gate, "duplicate", existing["id"], conn=conn)
        return _response(existing["id"], False, existing["queue_name"], existing["status"])
    _after_create(core, gate.org_id, queue, [(job_id, row["status"], row["priority"])])
    return _response(job_id, True, queue, row["status"])


async def ignore(core: Core, gate: Gate) -> dict[str, Any]:
    """A request that needs no job (GitHub `ping`): 200 with `job_id: null`."""
    await _audit(core, gate, "ignored")
    return {"job_id": None, "created": False, "queue_name": gate.queue, "status": None}


def _response(job_id: uuid.UUID, created: bool, queue: str, status: str) -> dict[str, Any]:
    return {"job_id": str(job_id), "created": created, "queue_name": queue, "status": status}


# --- the audit list ----------------------------------------------------------------------------------------


async def list_audit(
    core: Core,
    principal: Principal,
    *,
    status: str | None,
    since: datetime | None,
    queue: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    if status not in AUDIT_STATUSES:
        status = None
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.list_ingest_audit, principal.org_id, status, since, queue, limit, offset)
    return [
        {
            "id": str(r["id"]),
            "provider": r["provider"],
            "event_type": r["event_type"],
            "matched_queue": r["matched_queue"],
            "job_id": None if r["job_id"] is None else str(r["job_id"]),
            "status": r["status"],
            "created_at": ts(r["created_at"]),
        }
        for r in rows
    ]
