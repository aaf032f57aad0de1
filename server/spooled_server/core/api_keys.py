"""API keys of the caller's organization (rest.md §4): list, create, read, update, soft revoke.

Keys are stored as SHA-256 hashes; the raw key exists only in the create response. Every change drops this
replica's key cache at once (other replicas refresh within the cache TTL).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .errors import NotFound, ValidationFailed
from .orgs import IssuedKey, insert_api_key

KEY_NAME = re.compile(r"^[A-Za-z0-9 _.()-]+$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.*-]+$")
MAX_QUEUES = 50


def validate_name(value: Any, *, pattern: bool = True) -> str:
    return v.text(value, "name", 1, 100, KEY_NAME if pattern else None)


def validate_queues(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValidationFailed("queues", "must be an array of strings", rule="type")
    if len(value) > MAX_QUEUES:
        raise ValidationFailed("queues", f"must have at most {MAX_QUEUES} entries", rule="length")
    for i, queue in enumerate(value):
        v.text(queue, f"queues[{i}]", 1, 255, QUEUE_PATTERN)
    return list(value)


def validate_rate_limit(value: Any) -> int | None:
    return v.opt_int_range(value, "rate_limit", 1, 10000)


def validate_expiry(value: Any) -> datetime | None:
    expires = v.opt_timestamp(value, "expires_at")
    if expires is not None and expires <= datetime.now(UTC):
        raise ValidationFailed("expires_at", "must be in the future", rule="range")
    return expires


def summary_to_wire(row: asyncpg.Record) -> dict[str, Any]:
    from .jobs import ts

    return {
        "id": str(row["id"]),
        "name": row["name"],
        "key_prefix": row["key_prefix"],
        "queues": list(row["queues"] or []),
        "rate_limit": row["rate_limit"],
        "is_active": bool(row["is_active"]),
        "created_at": ts(row["created_at"]),
        "last_used": ts(row["last_used"]),
        "expires_at": ts(row["expires_at"]),
    }


async def check_key_quota(core: Any, conn: asyncpg.Connection, principal: Principal) -> None:
    """The api_keys cap, checked under a per-organization lock so concurrent creates cannot overshoot."""
    await conn.execute(Q.quota_lock, f"{principal.org_id}:api_keys")
    current = int(await conn.fetchval(Q.count_active_api_keys, principal.org_id))
    await core.quotas.check_count(principal, "api_keys", "max_api_keys", current)


async def list_api_keys(core: Any, principal: Principal) -> list[dict[str, Any]]:
    principal.require_unrestricted()
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.list_api_keys, principal.org_id)
    return [summary_to_wire(r) for r in rows]


async def create_api_key(
    core: Any,
    principal: Principal,
    *,
    name: Any,
    queues: Any = None,
    rate_limit: Any = None,
    expires_at: Any = None,
) -> IssuedKey:
    principal.require_unrestricted()
    name = validate_name(name)
    queue_list = [] if queues is None else validate_queues(queues)
    limit = validate_rate_limit(rate_limit)
    expires = validate_expiry(expires_at)
    async with core.db.tenant(principal.org_id) as conn:
        await check_key_quota(core, conn, principal)
        return await insert_api_key(
            conn,
            principal.org_id,
            name,
            queue_list,
            core.settings.key_kind,
            rate_limit=limit,
            expires_at=expires,
        )


async def get_api_key(core: Any, principal: Principal, key_id: uuid.UUID) -> dict[str, Any]:
    principal.require_unrestricted()
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.get_api_key, key_id, principal.org_id)
    if row is None:
        raise NotFound()
    return summary_to_wire(row)


async def update_api_key(
    core: Any,
    principal: Principal,
    key_id: uuid.UUID,
    *,
    name: Any = None,
    queues: Any = None,
    rate_limit: Any = None,
    set_rate_limit: bool = False,
    is_active: Any = None,
) -> dict[str, Any]:
    """`None` keeps a field; `set_rate_limit` writes `rate_limit` even when it is null (no per-key limit)."""
    principal.require_unrestricted()
    if name is not None:
        name = validate_name(name)
    if queues is not None:
        queues = validate_queues(queues)
    limit = validate_rate_limit(rate_limit) if set_rate_limit else None
    if is_active is not None and not isinstance(is_active, bool):
        raise ValidationFailed("is_active", "must be a boolean", rule="type")
    async with core.db.tenant(principal.org_id) as conn:
        current = await conn.fetchrow(Q.get_api_key, key_id, principal.org_id)
        if current is None:
            raise NotFound()
        if is_active and not current["is_active"]:
            # Re-activating a key brings it back into the api_keys count.
            await check_key_quota(core, conn, principal)
        row = await conn.fetchrow(
            Q.update_api_key, key_id, principal.org_id, name, queues, set_rate_limit, limit, is_active
        )
        reactivated = bool(is_active) and not current["is_active"]
    # A rejected key is cached without its organization, so bringing one back clears the whole cache.
    core.auth.forget(None if reactivated else principal.org_id)
    return summary_to_wire(row)


async def revoke_api_key(core: Any, principal: Principal, key_id: uuid.UUID) -> None:
    principal.require_unrestricted()
    async with core.db.tenant(principal.org_id) as conn:
        revoked = await conn.fetchval(Q.revoke_api_key, key_id, principal.org_id)
    if revoked is None:
        raise NotFound()
    core.auth.forget(principal.org_id)
