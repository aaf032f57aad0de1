"""Credentials: API keys (hash lookup with a short cache), JWT access/refresh tokens, and the Principal."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ..config import Settings
from ..db.database import Database
from .errors import AccessDenied, Unauthorized

KEY_CACHE_TTL_SECS = 30.0  # revoked keys stop working on every replica within this (contract: 60 s)
LAST_USED_EVERY_SECS = 300.0


def generate_api_key(kind: str) -> str:
    """`sp_live_` / `sp_test_` + 43 base64url characters (32 random bytes, unpadded)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"sp_{kind}_{raw}"


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def queue_allowed(queues: tuple[str, ...], queue_name: str) -> bool:
    if not queues or "*" in queues:
        return True
    return any(fnmatch.fnmatchcase(queue_name, pattern) for pattern in queues)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organization, the key, and the key's queue scope."""

    org_id: uuid.UUID
    key_id: uuid.UUID
    queues: tuple[str, ...]
    plan_tier: str
    rate_limit: int | None = None
    via_jwt: bool = False
    issued_at: int | None = None
    expires_at: int | None = None
    custom_limits: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def unrestricted(self) -> bool:
        return not self.queues or "*" in self.queues

    def can_access(self, queue_name: str) -> bool:
        return queue_allowed(self.queues, queue_name)

    def require_queue(self, queue_name: str) -> None:
        if not self.can_access(queue_name):
            raise AccessDenied(f"API key has no access to queue '{queue_name}'")

    def require_unrestricted(self) -> None:
        if not self.unrestricted:
            raise AccessDenied("This route needs an API key without a queue restriction")


@dataclass
class _CachedKey:
    principal: Principal | None
    expires_at_key: datetime | None
    fetched: float
    last_used_written: float


class Authenticator:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._cache: dict[str, _CachedKey] = {}
        self._bg: set[asyncio.Task[None]] = set()

    def forget(self, org_id: uuid.UUID | None = None) -> None:
        """Drop cached keys (all, or one organization's) after a key or plan change on this replica."""
        if org_id is None:
            self._cache.clear()
            return
        for h, entry in list(self._cache.items()):
            # Rejected keys carry no organization: drop them too, a key may just have been re-activated.
            if entry.principal is None or entry.principal.org_id == org_id:
                del self._cache[h]

    async def _load_key(self, key_hash: str) -> tuple[Principal | None, datetime | None]:
        async with self.db.maintenance(transaction=False) as conn:
            row = await conn.fetchrow(
                "SELECT k.id, k.organization_id, k.queues, k.rate_limit, k.is_active, k.expires_at,"
                " o.plan_tier, o.custom_limits"
                " FROM api_keys k JOIN organizations o ON o.id = k.organization_id"
                " WHERE k.key_hash = $1",
                key_hash,
            )
        if row is None or not row["is_active"] or row["plan_tier"] == "deleted":
            return None, None
        principal = Principal(
            org_id=row["organization_id"],
            key_id=row["id"],
            queues=tuple(row["queues"] or ()),
            plan_tier=row["plan_tier"],
            rate_limit=row["rate_limit"],
            custom_limits=_raw_to_dict(row["custom_limits"]),
        )
        return principal, row["expires_at"]

    async def api_key(self, key: str) -> Principal:
        key_hash = hash_api_key(key)
        now = time.monotonic()
        entry = self._cache.get(key_hash)
        if entry is None or now - entry.fetched > KEY_CACHE_TTL_SECS:
            principal, expires = await self._load_key(key_hash)
            entry = _CachedKey(principal, expires, now, entry.last_used_written if entry else 0.0)
            self._cache[key_hash] = entry
        if entry.principal is None:
            raise Unauthorized()
        if entry.expires_at_key is not None and entry.expires_at_key <= datetime.now(UTC):
            raise Unauthorized()
        if now - entry.last_used_written > LAST_USED_EVERY_SECS:
            entry.last_used_written = now
            self._spawn(self._touch(entry.principal.key_id))
        return entry.principal

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _touch(self, key_id: uuid.UUID) -> None:
        try:
            async with self.db.maintenance(transaction=False) as conn:
                await conn.execute("UPDATE api_keys SET last_used = now() WHERE id = $1", key_id)
        except Exception:  # best effort: never fails a request
            pass

    # --- JWT -------------------------------------------------------------------------------------------

    def issue_tokens(self, principal: Principal) -> dict[str, Any]:
        sid = str(uuid.uuid4())
        access_ttl = self.settings.jwt_expiration_hours * 3600
        refresh_ttl = access_ttl * 24
        access = self._sign(principal, sid, "access", access_ttl)
        refresh = self._sign(principal, sid, "refresh", refresh_ttl)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": access_ttl,
            "refresh_expires_in": refresh_ttl,
        }

    def _sign(self, principal: Principal, sid: str, token_type: str, ttl: int) -> str:
        now = int(time.time())
        claims = {
            "sub": str(principal.org_id),
            "org_id": str(principal.org_id),
            "api_key_id": str(principal.key_id),
            "queues": list(principal.queues),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
            "sid": sid,
            "token_type": token_type,
        }
        return jwt.encode(claims, self.settings.jwt_secret, algorithm="HS256")

    def access_ttl(self) -> int:
        return self.settings.jwt_expiration_hours * 3600

    def decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.settings.jwt_secret,
                algorithms=["HS256"],
                options={"require": ["exp", "iat", "sub", "sid", "token_type", "api_key_id"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid or expired token") from exc
        return claims

    async def session_revoked(self, sid: str) -> bool:
        async with self.db.maintenance(transaction=False) as conn:
            found = await conn.fetchval("SELECT 1 FROM revoked_sessions WHERE sid = $1", uuid.UUID(sid))
        return found is not None

    async def principal_from_claims(self, claims: dict[str, Any]) -> Principal:
        """A fresh read of the key behind a token: active, not expired, current queues."""
        try:
            key_id = uuid.UUID(str(claims["api_key_id"]))
            sid = str(uuid.UUID(str(claims["sid"])))
        except (KeyError, ValueError) as exc:
            raise Unauthorized("Invalid token") from exc
        if await self.session_revoked(sid):
            raise Unauthorized("Token has been revoked")
        async with self.db.maintenance(transaction=False) as conn:
            row = await conn.fetchrow(
                "SELECT k.id, k.organization_id, k.queues, k.rate_limit, k.is_active, k.expires_at,"
                " o.plan_tier, o.custom_limits"
                " FROM api_keys k JOIN organizations o ON o.id = k.organization_id WHERE k.id = $1",
                key_id,
            )
        if row is None or not row["is_active"] or row["plan_tier"] == "deleted":
            raise Unauthorized("Invalid token")
        if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
            raise Unauthorized("Invalid token")
        if str(row["organization_id"]) != str(claims.get("org_id", claims.get("sub"))):
            raise Unauthorized("Invalid token")
        return Principal(
            org_id=row["organization_id"],
            key_id=row["id"],
            queues=tuple(row["queues"] or ()),
            plan_tier=row["plan_tier"],
            rate_limit=row["rate_limit"],
            via_jwt=True,
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            custom_limits=_raw_to_dict(row["custom_limits"]),
        )

    async def access_token(self, token: str) -> Principal:
        claims = self.decode(token)
        if claims.get("token_type") != "access":
            raise Unauthorized("Invalid token")
        return await self.principal_from_claims(claims)

    async def credential(self, credential: str) -> Principal:
        """A Bearer credential: a JWT access token when it starts with `eyJ`, else an API key."""
        if credential.startswith("eyJ"):
            return await self.access_token(credential)
        return await self.api_key(credential)

    async def revoke_session(self, sid: str, org_id: uuid.UUID, until: int) -> None:
        expires = datetime.fromtimestamp(until, UTC) + timedelta(seconds=60)
        async with self.db.maintenance(transaction=False) as conn:
            await conn.execute(
                "INSERT INTO revoked_sessions (sid, organization_id, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (sid) DO UPDATE SET expires_at = GREATEST(revoked_sessions.expires_at,"
                " EXCLUDED.expires_at)",
                uuid.UUID(sid),
                org_id,
                expires,
            )


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(a.encode()).digest(), hashlib.sha256(b.encode()).digest())


def _raw_to_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    import msgspec

    decoded = msgspec.json.decode(bytes(value)) if isinstance(value, msgspec.Raw) else value
    return decoded if isinstance(decoded, dict) else None
