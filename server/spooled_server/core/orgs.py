"""Organizations and their API keys: creation (public, admin, first start), key issuing, the tenant's own
organization routes (read, update, delete, members, usage, incoming-webhook token) and slug helpers."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ..db.database import Database
from ..db.queries import Q
from . import validation as v
from .auth import Principal, generate_api_key, hash_api_key
from .errors import Conflict, NotFound, ValidationFailed

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
RESERVED_SLUGS = frozenset(
    "admin api app auth dashboard docs help internal login logout metrics root settings signup status "
    "support system test www".split()
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
    validate_email(billing_email)


def validate_email(billing_email: Any) -> None:
    if billing_email is not None and (
        not isinstance(billing_email, str) or len(billing_email) > 254 or not EMAIL.match(billing_email)
    ):
        raise ValidationFailed("billing_email", "must be a valid email address", rule="format")


MAX_SETTINGS_BYTES = 64 * 1024
MASKED = "********"


def json_object(value: Any) -> dict[str, Any]:
    """A stored JSON object column (msgspec.Raw, dict or NULL) as a dict."""
    if value is None:
        return {}
    decoded = msgspec.json.decode(bytes(value)) if isinstance(value, msgspec.Raw) else value
    return dict(decoded) if isinstance(decoded, dict) else {}


def validate_settings(value: Any, field: str = "settings") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationFailed(field, "must be an object", rule="type")
    if len(msgspec.json.encode(value)) > MAX_SETTINGS_BYTES:
        raise ValidationFailed(field, "must be at most 64 KB serialized", rule="length")
    token = value.get("webhook_token")
    if token is not None and not isinstance(token, str):
        raise ValidationFailed(f"{field}.webhook_token", "must be a string or null", rule="type")
    secrets_ = value.get("ingest_secrets")
    if secrets_ is not None:
        if not isinstance(secrets_, dict):
            raise ValidationFailed(f"{field}.ingest_secrets", "must be an object", rule="type")
        for provider, secret in secrets_.items():
            if not isinstance(secret, str) or not secret:
                raise ValidationFailed(
                    f"{field}.ingest_secrets.{provider}", "must be a non-empty string", rule="type"
                )
    return value


def merge_settings(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` replaces the stored settings, but an omitted `webhook_token` or `ingest_secrets` is kept, and a
    secret sent back masked (as GET returns it) keeps its stored value."""
    merged = dict(new)
    if "webhook_token" not in merged and "webhook_token" in stored:
        merged["webhook_token"] = stored["webhook_token"]
    found = stored.get("ingest_secrets")
    stored_secrets: dict[str, Any] = found if isinstance(found, dict) else {}
    if "ingest_secrets" not in merged:
        if stored_secrets:
            merged["ingest_secrets"] = stored_secrets
    elif isinstance(merged["ingest_secrets"], dict):
        merged["ingest_secrets"] = {
            provider: stored_secrets.get(provider, secret) if secret == MASKED else secret
            for provider, secret in merged["ingest_secrets"].items()
        }
    return merged


@dataclass
class IssuedKey:
    id: uuid.UUID
    key: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    queues: list[str]


async def insert_api_key(
    conn: asyncpg.Connection,
    org_id: uuid.UUID,
    name: str,
    queues: list[str],
    kind: str,
    rate_limit: int | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    key = generate_api_key(kind)
    key_id = uuid.uuid4()
    created = await conn.fetchval(
        Q.insert_api_key,
        key_id,
        org_id,
        name,
        hash_api_key(key),
        key[:12],
        queues,
        rate_limit,
        expires_at,
    )
    return IssuedKey(key_id, key, name, created, expires_at, queues)


async def create_organization(
    db: Database,
    *,
    name: str,
    slug: str,
    billing_email: str | None,
    plan_tier: str,
    key_kind: str,
    settings: dict[str, Any] | None = None,
    custom_limits: dict[str, Any] | None = None,
) -> tuple[asyncpg.Record, IssuedKey]:
    """Create an organization with a fresh webhook token and its unrestricted "Initial Admin Key"."""
    validate_org_fields(name, slug, billing_email)
    org_id = uuid.uuid4()
    org_settings = dict(settings or {})
    if not org_settings.get("webhook_token"):
        org_settings["webhook_token"] = new_webhook_token()
    async with db.maintenance() as conn:
        try:
            org = await conn.fetchrow(
                Q.insert_organization,
                org_id,
                name,
                slug,
                plan_tier,
                billing_email,
                org_settings,
                custom_limits,
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
    from .plans import wire_tier

    org_settings = json_object(org["settings"])
    if scoped:
        org_settings["webhook_token"] = None
    secrets_ = org_settings.get("ingest_secrets")
    if isinstance(secrets_, dict):
        org_settings["ingest_secrets"] = dict.fromkeys(secrets_, MASKED)
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
    return {
        "id": str(key.id),
        "key": key.key,
        "name": key.name,
        "created_at": _ts(key.created_at),
        "expires_at": _ts(key.expires_at),
        "queues": key.queues,
    }


# --- slugs (public) ---------------------------------------------------------------------------------------

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
SLUG_SUFFIX_LEN = 7  # "-" + 6 hex characters


def slugify(text: str) -> str:
    """A valid slug shape derived from free text (may still be taken or reserved)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = _NOT_SLUG.sub("-", ascii_text).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"org-{slug}".strip("-")
    slug = slug[: 50 - SLUG_SUFFIX_LEN].rstrip("-")
    if len(slug) < 3:
        slug = f"{slug}-org"
    return slug


async def _unused_slug(conn: asyncpg.Connection, base: str) -> str:
    candidate = base
    for _ in range(20):
        if slug_problem(candidate) is None and not await conn.fetchval(Q.slug_taken, candidate):
            return candidate
        candidate = f"{base}-{secrets.token_hex(3)}"
    raise Conflict("Could not find a free slug; try another name")


async def check_slug(db: Database, raw: str | None) -> dict[str, Any]:
    slug = (raw or "").strip().lower()
    async with db.maintenance(transaction=False) as conn:
        problem = slug_problem(slug)
        if problem is not None:
            suggestion = await _unused_slug(conn, slugify(slug)) if slug else None
            return {
                "available": False,
                "valid": False,
                "error": problem,
                "suggestion": suggestion,
                "slug": slug,
            }
        if await conn.fetchval(Q.slug_taken, slug):
            return {
                "available": False,
                "valid": True,
                "error": "Slug is already taken",
                "suggestion": await _unused_slug(conn, slugify(slug)),
                "slug": slug,
            }
    return {"available": True, "valid": True, "error": None, "suggestion": None, "slug": slug}


async def generate_slug(db: Database, name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValidationFailed("name", "must be 1..200 characters", rule="length")
    async with db.maintenance(transaction=False) as conn:
        return await _unused_slug(conn, slugify(name.strip()))


# --- the caller's own organization (tenant routes) ---------------------------------------------------------


def own_org(principal: Principal, org_id: uuid.UUID | None) -> uuid.UUID:
    """Routes with an org id in the path answer only for the caller's organization (anything else is 404)."""
    if org_id is not None and org_id != principal.org_id:
        raise NotFound()
    return principal.org_id


async def _load(conn: asyncpg.Connection, org_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    org = await conn.fetchrow(Q.lock_organization if lock else Q.get_organization, org_id)
    if org is None:
        raise NotFound()
    return org


async def list_organizations(db: Database, principal: Principal) -> list[dict[str, Any]]:
    from .plans import wire_tier

    async with db.tenant(principal.org_id) as conn:
        org = await conn.fetchrow(Q.get_organization, principal.org_id)
    if org is None:
        return []
    return [
        {
            "id": str(org["id"]),
            "name": org["name"],
            "slug": org["slug"],
            "plan_tier": wire_tier(org["plan_tier"]),
            "created_at": _ts(org["created_at"]),
        }
    ]


async def get_organization(db: Database, principal: Principal, org_id: uuid.UUID) -> dict[str, Any]:
    own_org(principal, org_id)
    async with db.tenant(principal.org_id) as conn:
        org = await _load(conn, principal.org_id)
    return organization_to_wire(org, scoped=not principal.unrestricted)


async def update_organization(
    db: Database,
    principal: Principal,
    org_id: uuid.UUID,
    *,
    name: Any = None,
    billing_email: Any = None,
    settings: Any = None,
) -> dict[str, Any]:
    """PUT /organizations/{id}: `None` means "not given" for every field."""
    own_org(principal, org_id)
    principal.require_unrestricted()
    if name is not None:
        v.text(name, "name", 3, 100)
    validate_email(billing_email)
    new_settings = None if settings is None else validate_settings(settings)
    async with db.tenant(principal.org_id) as conn:
        stored = await _load(conn, principal.org_id, lock=True)
        merged = (
            None if new_settings is None else merge_settings(json_object(stored["settings"]), new_settings)
        )
        try:
            org = await conn.fetchrow(
                Q.update_organization,
                principal.org_id,
                name,
                merged,
                billing_email is not None,
                billing_email,
                None,
                False,
                None,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("An organization with this billing email already exists") from None
    return organization_to_wire(org)


async def active_schedules(conn: asyncpg.Connection, org_id: uuid.UUID) -> int:
    from .usage import optional_tables

    if not (await optional_tables(conn)).schedules:
        return 0
    return int(await conn.fetchval(Q.active_schedule_count, org_id))


async def delete_organization(db: Database, principal: Principal, org_id: uuid.UUID) -> None:
    """DELETE /organizations/{id}: refused (409) while anything is still running or scheduled."""
    own_org(principal, org_id)
    principal.require_unrestricted()
    async with db.tenant(principal.org_id) as conn:
        await _load(conn, principal.org_id, lock=True)
        blockers = await conn.fetchrow(Q.delete_blockers, principal.org_id)
        schedules = await active_schedules(conn, principal.org_id)
        reasons = []
        if blockers["active_jobs"]:
            reasons.append(f"{blockers['active_jobs']} pending, scheduled or processing jobs")
        if blockers["live_workers"]:
            reasons.append(f"{blockers['live_workers']} active workers")
        if schedules:
            reasons.append(f"{schedules} active schedules")
        if reasons:
            raise Conflict("Organization still has " + ", ".join(reasons))
        await hard_delete(conn, principal.org_id)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def hard_delete(conn: asyncpg.Connection, org_id: uuid.UUID) -> bool:
    """Remove an organization and every row of it, in the caller's transaction.

    Tables are found in the catalog (any table with `organization_id`), so features added later are swept
    too. A table whose rows are still referenced by another one is retried after the others."""
    pending = [r["table_name"] for r in await conn.fetch(Q.tenant_tables)]
    while pending:
        blocked: list[str] = []
        last_error: Exception | None = None
        for table in pending:
            await conn.execute("SAVEPOINT org_sweep")
            try:
                await conn.execute(f"DELETE FROM {_quote_ident(table)} WHERE organization_id = $1", org_id)
            except asyncpg.ForeignKeyViolationError as exc:
                await conn.execute("ROLLBACK TO SAVEPOINT org_sweep")
                blocked.append(table)
                last_error = exc
            else:
                await conn.execute("RELEASE SAVEPOINT org_sweep")
        if len(blocked) == len(pending):
            assert last_error is not None
            raise last_error
        pending = blocked
    return await conn.fetchval(Q.delete_organization, org_id) is not None


async def list_members(db: Database, principal: Principal, org_id: uuid.UUID) -> list[dict[str, Any]]:
    own_org(principal, org_id)
    principal.require_unrestricted()
    async with db.tenant(principal.org_id) as conn:
        org = await _load(conn, principal.org_id)
        keys = await conn.fetch(Q.list_members, principal.org_id)
    email = org["billing_email"] or ""
    return [
        {
            "id": str(k["id"]),
            "user_id": str(k["id"]),
            "email": email,
            "name": k["name"],
            "role": "owner" if (not k["queues"] or "*" in k["queues"]) else "member",
            "joined_at": _ts(k["created_at"]),
            "invited_by": None,
        }
        for k in keys
    ]


# --- incoming-webhook token ---------------------------------------------------------------------------------


def webhook_url(base_url: str, org_id: uuid.UUID) -> str:
    return f"{base_url.rstrip('/')}/api/v1/webhooks/{org_id}/custom"


async def webhook_token(
    db: Database,
    principal: Principal,
    org_id: uuid.UUID | None,
    base_url: str,
    *,
    action: str = "get",
) -> dict[str, Any]:
    """Read (`get`), replace (`regenerate`) or remove (`clear`) the token of custom ingest."""
    org = own_org(principal, org_id)
    principal.require_unrestricted()
    async with db.tenant(org) as conn:
        if action == "get":
            row = await conn.fetchrow(Q.webhook_token, org)
        else:
            row = await conn.fetchrow(
                Q.set_webhook_token, org, new_webhook_token() if action == "regenerate" else None
            )
    if row is None:
        raise NotFound()
    return {"webhook_token": row["webhook_token"], "webhook_url": webhook_url(base_url, org)}


# --- usage ------------------------------------------------------------------------------------------------


async def organization_usage(
    core: Any, principal: Principal, org_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """UsageInfo of the caller's organization, against its current plan and custom limits."""
    from .usage import usage_counts, usage_info

    org = own_org(principal, org_id)
    principal.require_unrestricted()
    await core.quotas.flush()  # this replica's buffered job counts; others flush within a second
    async with core.db.tenant(org) as conn:
        row = await _load(conn, org)
        counts = await usage_counts(conn, org)
    limits = core.plans.limits(row["plan_tier"], json_object(row["custom_limits"]) or None)
    return usage_info(limits, counts, stored_tier=row["plan_tier"], admin=False)
