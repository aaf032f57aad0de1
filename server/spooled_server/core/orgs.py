"""Organizations and their API keys: creation (public, admin, first start) and key issuing."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..db.database import Database
from . import validation as v
from .auth import generate_api_key, hash_api_key
from .errors import Conflict, ValidationFailed

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
RESERVED_SLUGS = frozenset(
    "admin api app auth dashboard docs help internal login logout metrics root settings signup status support "
    "system test www".split()
)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def new_webhook_token() -> str:
    return "whk_" + secrets.token_urlsafe(32)


def slug_problem(slug: str) -> str | None:
    if not 3 <= len(slug) <= 50:
        return "Slug must be 3-50 characters"
    if not SLUG.match(slug):
        return "Slug must start with a letter and contain only lowercase letters, digits and single hyphens"
    if slug in RESERVED_SLUGS:
        return "Slug is reserved"
    return None


def validate_org_fields(name: Any, slug: Any, billing_email: Any) -> None:
    v.text(name, "name", 3, 100)
    if not isinstance(slug, str):
        raise ValidationFailed("slug", "must be a string", rule="type")
    problem = slug_problem(slug)
    if problem:
        raise ValidationFailed("slug", problem, rule="pattern")
    if billing_email is not None and (not isinstance(billing_email, str) or not EMAIL.match(billing_email)):
        raise ValidationFailed("billing_email", "must be a valid email address", rule="format")


@dataclass
class IssuedKey:
    id: uuid.UUID
    key: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    queues: list[str]


async def insert_api_key(
    conn: asyncpg.Connection, org_id: uuid.UUID, name: str, queues: list[str], kind: str,
    rate_limit: int | None = None, expires_at: datetime | None = None,
) -> IssuedKey:
    key = generate_api_key(kind)
    key_id = uuid.uuid4()
    created = await conn.fetchval(
        "INSERT INTO api_keys (id, organization_id, name, key_hash, key_prefix, queues, rate_limit, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at",
        key_id, org_id, name, hash_api_key(key), key[:12], queues, rate_limit, expires_at,
    )
    return IssuedKey(key_id, key, name, created, expires_at, queues)


async def create_organization(
    db: Database, *, name: str, slug: str, billing_email: str | None, plan_tier: str, key_kind: str,
    settings: dict[str, Any] | None = None, custom_limits: dict[str, Any] | None = None,
) -> tuple[asyncpg.Record, IssuedKey]:
    """Create an organization with a fresh webhook token and its unrestricted "Initial Admin Key"."""
    validate_org_fields(name, slug, billing_email)
    org_id = uuid.uuid4()
    org_settings = dict(settings or {})
    org_settings.setdefault("webhook_token", new_webhook_token())
    async with db.maintenance() as conn:
        try:
            org = await conn.fetchrow(
                "INSERT INTO organizations (id, name, slug, plan_tier, billing_email, settings, custom_limits)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                org_id, name, slug, plan_tier, billing_email, org_settings, custom_limits,
            )
        except asyncpg.UniqueViolationError as exc:
            if "slug" in (exc.constraint_name or ""):
                raise Conflict("Slug is already taken") from None
            raise Conflict("An organization with this billing email already exists") from None
        key = await insert_api_key(conn, org_id, "Initial Admin Key", ["*"], key_kind)
    return org, key


def _ts(value: Any) -> str | None:
    from .jobs import ts

    return ts(value)


def organization_to_wire(org: asyncpg.Record, *, admin: bool = False, scoped: bool = False) -> dict[str, Any]:
    """The Organization shape (rest.md §3). Tenant routes show `enterprise` for `unlimited`."""
    import msgspec

    from .plans import wire_tier

    settings_raw = org["settings"]
    org_settings: dict[str, Any] = (
        msgspec.json.decode(bytes(settings_raw)) if isinstance(settings_raw, msgspec.Raw) else dict(settings_raw or {})
    )
    if scoped:
        org_settings["webhook_token"] = None
    secrets_ = org_settings.get("ingest_secrets")
    if isinstance(secrets_, dict):
        org_settings["ingest_secrets"] = dict.fromkeys(secrets_, "********")
    return {
        "id": str(org["id"]),
        "name": org["name"],
        "slug": org["slug"],
        "plan_tier": org["plan_tier"] if admin else wire_tier(org["plan_tier"]),
        "billing_email": org["billing_email"],
        "settings": org_settings,
        "custom_limits": org["custom_limits"],
        "stripe_customer_id": None,
        "stripe_subscription_id": None,
        "stripe_subscription_status": None,
        "stripe_current_period_end": None,
        "stripe_cancel_at_period_end": None,
        "created_at": _ts(org["created_at"]),
        "updated_at": _ts(org["updated_at"]),
    }


def issued_key_to_wire(key: IssuedKey) -> dict[str, Any]:
    return {"id": str(key.id), "key": key.key, "name": key.name, "created_at": _ts(key.created_at),
            "expires_at": _ts(key.expires_at), "queues": key.queues}
